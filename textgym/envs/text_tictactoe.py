"""Tic-tac-toe written as text: a language model plays by writing its moves, token by token.

``textgym/TextTicTacToe-v0`` is the text-generation environment with conversation rules
(:class:`TicTacToeTurns`): the context is the game's transcript, the agent's turn is one token (the
cell it plays, ``1``-``9``), and the environment answers with the opponent's move and the new board.
The same opponents as ``textgym/TicTacToe-v0`` (random, minimax, mix, or a callable), the same
rewards at the game's end (win 1, draw 0, loss -1), plus the KL shaping on the agent's tokens only.

The transcript, the agent always X (whoever starts) and the opponent O::

    board . . . / . . . / . . . move 5 O 1 board O . . / . X . / . . . move 9 O 3 board O . O / . X . / . . X move

``gym.make("textgym/TextTicTacToe-v0", opponent="minimax", first="agent", illegal="mask")`` sets
the rules; every other keyword is the text environment's (``model``, ``tokenizer``, ``kl_coef``, ...):
the task :mod:`textgym.tasks.tictactoe` registers the id and builds the environment.
Cells are numbered 1-9 row by row (``textgym.envs.tictactoe`` numbers them 0-8). An occupied cell or
anything but a cell number loses the game (``illegal="loss"``), or is never offered
(``illegal="mask"``: ``info["action_mask"]`` allows the empty cells only).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from textgym.envs.tictactoe import OPPONENTS, SYMMETRIES, legal_moves, optimal_moves, winner
from textgym.envs.turns import Reply, Turns

#: Every word of the transcripts: the vocabulary of the kit's tic-tac-toe language model.
WORDS = ["board", "move", "/", "X", "O", ".", *[str(cell) for cell in range(1, 10)]]
#: The cells (0-8) of the three openings up to symmetry: the centre, the corners, the edges.
OPENING_CLASSES = ((4,), (0, 2, 6, 8), (1, 3, 5, 7))
#: The most random moves by each side an exploring start may play (``random_moves``).
MAX_RANDOM_MOVES = 2
#: Tokens of an opponent's turn as the environment writes it (`` O 5 board . . . / . O . / . . . move``).
TURN_TOKENS = 15
#: The most tokens a game writes after its prompt: the agent's 5 cells and 4 of the opponent's turns.
GAME_TOKENS = 5 + 4 * TURN_TOKENS
#: The longest restart (``restart_share``): the opponent's 4 moves and the agent's 3, 63 tokens of prompt.
MAX_RESTART_MOVES = 7


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


def board_after(moves: Sequence[int], agent_first: bool) -> list[int]:
    """The board (agent +1) after ``moves`` (cells 0-8), played in turn from whoever moved first.

    >>> board_after([4, 0], agent_first=True)
    [-1, 0, 0, 0, 1, 0, 0, 0, 0]
    """
    board, mark = [0] * 9, 1 if agent_first else -1
    for cell in moves:
        board[cell], mark = mark, -mark
    return board


def _restart_fields(history: Any) -> tuple[tuple[int, ...], bool]:
    """``(moves, agent_first)`` of a restart ``(moves, agent_first, ...)``, with their types checked (no coercion).

    >>> _restart_fields(([0, 4], True, 0.5))
    ((0, 4), True)
    """
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence) or len(history) < 2:
        raise ValueError(f"restart {history!r} must be (moves, agent_first, ...), e.g. ((0, 4), True)")
    moves, agent_first = history[0], history[1]
    if isinstance(moves, (str, bytes)) or not isinstance(moves, Sequence | np.ndarray) or not all(
            isinstance(cell, int | np.integer) and not isinstance(cell, bool | np.bool_) for cell in moves):
        raise ValueError(f"restart {history!r}: the moves must be a sequence of whole cell numbers 0-8, "
                         f"e.g. (4, 5), got {moves!r}")
    if not isinstance(agent_first, bool | np.bool_):
        raise ValueError(f"restart {history!r}: agent_first must be True or False, got {agent_first!r}")
    return tuple(int(cell) for cell in moves), bool(agent_first)


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
        random_moves: Exploring starts: each game begins after a uniformly drawn 0 to ``random_moves``
            random moves by each side (then the opponent's move when it is first), written into the
            transcript as the game so far: state, not the agent's actions. At most 2; the window
            grows to hold them (:func:`textgym.tasks.tictactoe.make_env`).
        opening: The opponent's first move on an empty board: by its own rule (``"cell"``), or
            ``"class"``: the centre, a corner or an edge, a third of the games each (the three
            openings up to symmetry, where a uniform cell gives the centre 1 game in 9).
        restart_share: The share of games that begin at one of ``restarts`` (drawn uniformly), when
            there are any: a curriculum of chosen positions, e.g. those where the policy erred
            (:func:`textgym.eval.tictactoe.mistakes_with_history`), refreshed as training goes on
            (by setting :attr:`restarts`). The game so far is the prompt (state, not the agent's actions);
            the window grows to hold it (:func:`textgym.tasks.tictactoe.make_env`).
        restarts: Game histories to restart from, ``(moves, agent_first)``: see :attr:`restarts`.
    """

    max_turn_tokens = 1

    def __init__(self, opponent: str | Any = "mix", first: str = "random", illegal: str = "loss",
                 random_moves: int = 0, opening: str = "cell", restart_share: float = 0.0,
                 restarts: Iterable[tuple[Sequence[int], bool]] = ()) -> None:
        if not callable(opponent) and opponent not in OPPONENTS:
            raise ValueError(f"unknown opponent {opponent!r}; use one of {OPPONENTS} or a callable f(board) -> cell")
        for name, value, allowed in (("first", first, ("agent", "opponent", "random")),
                                     ("illegal", illegal, ("loss", "mask")), ("opening", opening, ("cell", "class"))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if not 0 <= random_moves <= MAX_RANDOM_MOVES:
            raise ValueError(f"random_moves must be 0 to {MAX_RANDOM_MOVES} (random moves by each side before the "
                             f"agent's first), got {random_moves}")
        if not 0.0 <= restart_share <= 1.0:
            raise ValueError(f"restart_share must be a share of games, 0 to 1, got {restart_share}")
        self.opponent, self.first, self.illegal = opponent, first, illegal
        self.random_moves, self.opening, self.restart_share = random_moves, opening, restart_share
        self.restarts = restarts

    @property
    def restarts(self) -> list[tuple[tuple[int, ...], bool]]:
        """The game histories that ``restart_share`` of the games begin at, drawn uniformly.

        Set it to any iterable of ``(moves, agent_first, ...)``: the cells (0-8) played so far from
        the first mover on, whose move it is decided by ``agent_first`` (the rows of
        :func:`textgym.eval.tictactoe.mistakes_with_history` fit as they are). Training can set it
        again between updates, e.g. to the positions where its greedy policy errs now; a history
        listed twice is drawn twice as often.
        """
        return list(self._restarts)

    @restarts.setter
    def restarts(self, histories: Iterable[Sequence[Any]]) -> None:
        checked = []
        for history in histories:
            moves, agent_first = _restart_fields(history)
            if (len(set(moves)) != len(moves) or not all(0 <= c < 9 for c in moves) or len(moves) > MAX_RESTART_MOVES
                    or len(moves) % 2 != (0 if agent_first else 1) or winner(board_after(moves, agent_first)) != 0):
                raise ValueError(f"restart {moves} (agent first: {agent_first}) is not a game in progress with the "
                                 f"agent to move: distinct cells 0-8, at most {MAX_RESTART_MOVES} of them, an even "
                                 "number when the agent moved first and odd otherwise, and no line of three")
            checked.append((moves, agent_first))
        self._restarts = checked

    def begin(self, prompt: str, rng: np.random.Generator) -> tuple[_Game, Reply]:
        """A new game: the random moves of an exploring start, if any, then the opponent's first move when it starts."""
        if self.restart_share and self._restarts and rng.random() < self.restart_share:
            return self._restart(rng)
        agent_first = self.first == "agent" or (self.first == "random" and rng.random() < 0.5)
        game = _Game([0] * 9, rng, self._game_opponent(rng))
        count = int(rng.integers(self.random_moves + 1)) if self.random_moves else 0
        while True:
            game.board, moves, mover = [0] * 9, [], 1 if agent_first else -1
            for _ in range(2 * count):  # each side's random moves, in turn: no line of 3 before the 5th move
                cell = int(rng.choice(legal_moves(game.board)))
                game.board[cell], mover = mover, -mover
                moves.append(cell)
            if not agent_first:
                moves.append(self._opponent_move(game))
            if winner(game.board) == 0 and 0 in game.board:
                break  # else the opponent's move ended the game: draw the start again
        return game, Reply(transcript(moves, agent_first), allowed=self._allowed(game))

    def _restart(self, rng: np.random.Generator) -> tuple[_Game, Reply]:
        """A game that begins at one of the restarts, drawn uniformly."""
        moves, agent_first = self._restarts[int(rng.integers(len(self._restarts)))]
        game = _Game(board_after(moves, agent_first), rng, self._game_opponent(rng))
        return game, Reply(transcript(moves, agent_first), allowed=self._allowed(game))

    def _game_opponent(self, rng: np.random.Generator) -> Any:
        """This game's opponent: ``mix`` draws random or minimax."""
        if self.opponent == "mix":
            return "random" if rng.random() < 0.5 else "minimax"
        return self.opponent

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
        if self.opening == "class" and not any(theirs):
            kind = OPENING_CLASSES[int(game.rng.random() * 3)]
            cell = kind[int(game.rng.random() * len(kind))]
        elif callable(game.opponent):
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
