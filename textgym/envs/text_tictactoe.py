"""Tic-tac-toe written as text: a language model plays by writing its moves, token by token.

``textgym/TextTicTacToe-v0`` is the text-generation environment with conversation rules
(:class:`TicTacToeTurns`): the context is the game's transcript, the agent's turn is one token (the
cell it plays, ``1``-``9``), and the environment answers with the opponent's move and the new board.
The same opponents as ``textgym/TicTacToe-v0`` (random, minimax, mix, or a callable), the same
rewards at the game's end (win 1, draw 0, loss -1), plus the KL shaping on the agent's tokens only.

The transcript, the agent always X (whoever starts) and the opponent O::

    board . . . / . . . / . . . move 5 O 1 board O . . / . X . / . . . move 9 O 3 board O . O / . X . / . . X move

``gym.make("textgym/TextTicTacToe-v0", opponent="minimax", first="agent", illegal="mask")`` sets
the rules; every other keyword is the text environment's (``model``, ``tokenizer``, ``kl_coef``, ...).
Cells are numbered 1-9 row by row (``textgym.envs.tictactoe`` numbers them 0-8). An occupied cell or
anything but a cell number loses the game (``illegal="loss"``), or is never offered
(``illegal="mask"``: ``info["action_mask"]`` allows the empty cells only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from textgym.envs.tictactoe import OPPONENTS, SYMMETRIES, legal_moves, optimal_moves, winner
from textgym.envs.turns import Reply, Turns

#: Every word of the transcripts: the vocabulary of the kit's tic-tac-toe language model.
WORDS = ["board", "move", "/", "X", "O", ".", *[str(cell) for cell in range(1, 10)]]


def board_text(board: Sequence[int]) -> str:
    """A board from the agent's side (+1 its marks) as text: ``X . O / . X . / . . O``.

    >>> board_text((1, 0, -1, 0, 1, 0, 0, 0, -1))
    'X . O / . X . / . . O'
    """
    marks = {1: "X", -1: "O", 0: "."}
    return " / ".join(" ".join(marks[board[3 * r + c]] for c in range(3)) for r in range(3))


def turn_text(board: Sequence[int], opponent_cell: int | None) -> str:
    """What the environment writes: the opponent's move (0-8, or None), the board, and the cue ``move``."""
    move = f"O {opponent_cell + 1} " if opponent_cell is not None else ""
    return f" {move}board {board_text(board)} move"


def transcript(moves: Sequence[int], agent_first: bool) -> str:
    """The text of a game so far, from its moves (0-8, in order), as the environment writes it.

    The agent's moves are its cell numbers; each of the opponent's is followed by the board, unless
    it ends the game (the environment writes nothing then).

    >>> transcript([4, 0], agent_first=True)
    ' board . . . / . . . / . . . move 5 O 1 board O . . / . X . / . . . move'
    """
    board, mover = [0] * 9, 1 if agent_first else -1
    text = turn_text(board, None) if agent_first else ""
    for cell in moves:
        board[cell] = mover
        if mover == 1:
            text += f" {cell + 1}"
        elif winner(board) == 0 and 0 in board:
            text += turn_text(board, cell)
        mover = -mover
    return text


@dataclass
class _Game:
    board: list[int]
    rng: np.random.Generator
    opponent: Any


class TicTacToeTurns(Turns):
    """The rules of text tic-tac-toe (module docstring).

    Args:
        opponent: ``"random"``, ``"minimax"`` (uniform among optimal moves), ``"mix"`` (50/50 per
            game) or a callable ``f(board) -> cell`` that sees the board from its own side (+1 its marks).
        first: ``"agent"``, ``"opponent"`` or ``"random"`` (50/50 per game).
        illegal: ``"loss"`` (an occupied cell or a word that is not a cell loses) or ``"mask"``
            (only empty cells are offered).
    """

    max_turn_tokens = 1

    def __init__(self, opponent: str | Any = "mix", first: str = "random", illegal: str = "loss") -> None:
        if not callable(opponent) and opponent not in OPPONENTS:
            raise ValueError(f"unknown opponent {opponent!r}; use one of {OPPONENTS} or a callable f(board) -> cell")
        for name, value, allowed in (("first", first, ("agent", "opponent", "random")),
                                     ("illegal", illegal, ("loss", "mask"))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        self.opponent, self.first, self.illegal = opponent, first, illegal

    def begin(self, prompt: str, rng: np.random.Generator) -> tuple[_Game, Reply]:
        """A new game; the opponent's first move when it starts."""
        agent_first = self.first == "agent" or (self.first == "random" and rng.random() < 0.5)
        opponent = self.opponent
        if opponent == "mix":
            opponent = "random" if rng.random() < 0.5 else "minimax"
        game = _Game([0] * 9, rng, opponent)
        cell = None if agent_first else self._opponent_move(game)
        return game, Reply(turn_text(game.board, cell), allowed=self._allowed(game))

    def reply(self, state: _Game, text: str) -> Reply:
        """Play the agent's cell, then the opponent's answer; the game's result when it ends."""
        cell = int(text) - 1 if text.strip() in WORDS[-9:] else None
        if cell is None or state.board[cell] != 0:
            return Reply(reward=-1.0, done=True)  # not a move, or an occupied cell: lost
        state.board[cell] = 1
        if winner(state.board) == 1:
            return Reply(reward=1.0, done=True)
        if 0 not in state.board:
            return Reply(reward=0.0, done=True)
        answer = self._opponent_move(state)
        if winner(state.board) == -1:
            return Reply(reward=-1.0, done=True)
        if 0 not in state.board:
            return Reply(reward=0.0, done=True)
        return Reply(turn_text(state.board, answer), allowed=self._allowed(state))

    def symmetries(self, tokenizer: Any):
        """The board's 7 rotations and reflections other than the identity, as maps of token ids (:class:`Turns`).

        A symmetry renumbers every move (the agent's and the opponent's cell words) and rearranges
        the 9 marks after every ``board``; the transcript keeps its length and layout.
        """
        ids = tokenizer.convert_tokens_to_ids
        cells, board, slash, vocab = (np.array([ids(str(cell)) for cell in range(1, 10)]), ids("board"), ids("/"),
                                      len(tokenizer))
        marks = np.array([1, 2, 3, 5, 6, 7, 9, 10, 11])  # offsets of the 9 marks after "board" ("/" between rows)
        maps = []
        for perm in SYMMETRIES[1:]:  # new_board[i] = board[perm[i]]: old cell perm[i] is new cell i
            token_map = np.arange(vocab)
            token_map[cells[list(perm)]] = cells
            maps.append((token_map, np.argsort(perm)))  # np.argsort(perm)[c]: where old cell c goes

        def transform(seq: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
            seq = np.asarray(seq)
            starts = [i for i in np.flatnonzero(seq[:-11] == board)  # the environment's boards, not an agent's word
                      if seq[i + 4] == seq[i + 8] == slash]
            out = []
            for token_map, where in maps:
                new = token_map[seq]
                for start in starts:
                    new[start + marks[where]] = seq[start + marks]
                out.append((new, token_map))
            return out

        return transform

    def _opponent_move(self, game: _Game) -> int:
        theirs = tuple(-x for x in game.board)
        if callable(game.opponent):
            cell = int(game.opponent(theirs))
            if theirs[cell] != 0:
                raise ValueError(f"the opponent callable chose cell {cell}, which is not empty")
        else:
            cells = optimal_moves(theirs) if game.opponent == "minimax" else legal_moves(theirs)
            cell = cells[int(game.rng.random() * len(cells))]
        game.board[cell] = -1
        return cell

    def _allowed(self, game: _Game) -> list[str] | None:
        return [str(cell + 1) for cell in legal_moves(game.board)] if self.illegal == "mask" else None


def make_env(opponent: str | Any = "mix", first: str = "random", illegal: str = "loss", **kwargs: Any):
    """The entry point of ``gym.make("textgym/TextTicTacToe-v0", opponent=..., first=..., illegal=...)``.

    The rules' options (:class:`TicTacToeTurns`) sit next to the text environment's own (``model``,
    ``kl_coef``, ...).
    """
    from textgym.envs.text_generation import TextGenerationEnv

    kwargs.setdefault("turns", TicTacToeTurns(opponent, first, illegal))
    return TextGenerationEnv(task=kwargs.pop("task", "tictactoe"), **kwargs)


def make_vector_env(num_envs: int = 1, opponent: str | Any = "mix", first: str = "random", illegal: str = "loss",
                    **kwargs: Any):
    """The vector form of :func:`make_env` (``gym.make_vec(..., vectorization_mode="vector_entry_point")``)."""
    from textgym.envs.text_generation_vector import TextGenerationVectorEnv

    kwargs.setdefault("turns", TicTacToeTurns(opponent, first, illegal))
    return TextGenerationVectorEnv(num_envs=num_envs, task=kwargs.pop("task", "tictactoe"), **kwargs)


def random_transcripts(games: int, seed: int = 0) -> list[str]:
    """Whole games of random legal play, as the environment writes them (the kit LM's pretraining text).

    Every game ends on the agent's last move: the environment writes nothing after the game is over.

    >>> all(text.split()[-1] in WORDS[-9:] for text in random_transcripts(20, seed=0))
    True
    """
    rng, texts = np.random.default_rng(seed), []
    for _ in range(games):
        moves, board, agent_first = [], [0] * 9, bool(rng.random() < 0.5)
        mover = 1 if agent_first else -1
        while winner(board) == 0 and 0 in board:
            cell = int(rng.choice(legal_moves(board)))
            board[cell] = mover
            moves.append(cell)
            mover = -mover
        texts.append(transcript(moves, agent_first).strip())
    return texts
