"""Scoring tic-tac-toe policies: exactly, by enumerating every opponent reply, or by sampling games.

A deterministic policy meets at most a few thousand positions, so its exact win/draw/loss rates
against the random and the minimax opponent (which picks uniformly among optimal moves) take
milliseconds: the policy is asked once, in one batch, for every position where the agent is to
move, then the game tree is averaged over the opponent's choices.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence

import numpy as np

from textgym.envs.text_tictactoe import board_after
from textgym.envs.tictactoe import TicTacToeEnv, flip, legal_moves, observation, optimal_moves, winner

#: A batched policy: observations (M, 18) and action masks (M, 9) -> cells (M,).
BatchPolicy = Callable[[np.ndarray, np.ndarray], np.ndarray]


@functools.cache
def agent_positions() -> tuple[tuple[int, ...], ...]:
    """Every non-final board (from the agent's side) where the agent is to move, either seat."""
    positions = []
    for board in itertools.product((-1, 0, 1), repeat=9):
        mine, theirs = board.count(1), board.count(-1)
        if mine in (theirs, theirs - 1) and winner(board) == 0 and 0 in board:
            positions.append(board)
    return tuple(positions)


def policy_table(policy: BatchPolicy) -> dict[tuple[int, ...], int]:
    """The policy's move in every agent position, from one batched call."""
    boards = agent_positions()
    obs = np.stack([observation(b) for b in boards])  # (M, 18)
    masks = (obs[:, :9] + obs[:, 9:] == 0).astype(np.int8)  # (M, 9)
    moves = np.asarray(policy(obs, masks)).reshape(-1)
    return dict(zip(boards, moves.tolist(), strict=True))


def exact_outcomes(policy: BatchPolicy, opponent: str) -> dict[str, dict[str, float]]:
    """Exact win/draw/loss probabilities of a deterministic policy (an illegal move loses).

    Args:
        policy: Batched, deterministic (e.g. greedy over the masked logits).
        opponent: ``"random"`` or ``"minimax"``.

    Returns:
        ``{"agent_first": {...}, "opponent_first": {...}, "mean": {...}}``, each with
        ``win``, ``draw`` and ``loss``.

    Example:
        >>> center_first = lambda obs, mask: np.where(mask[:, 4] == 1, 4, mask.argmax(1))
        >>> exact_outcomes(center_first, "minimax")["mean"]["win"]
        0.0
    """
    if opponent not in ("random", "minimax"):
        raise ValueError(f"exact evaluation knows the 'random' and 'minimax' opponents, got {opponent!r}")
    table = policy_table(policy)

    @functools.cache
    def agent_turn(board: tuple[int, ...]) -> np.ndarray:
        move = table[board]
        if board[move] != 0:
            return np.array([0.0, 0.0, 1.0])
        after = board[:move] + (1,) + board[move + 1:]
        if winner(after) == 1:
            return np.array([1.0, 0.0, 0.0])
        return np.array([0.0, 1.0, 0.0]) if 0 not in after else opponent_turn(after)

    @functools.cache
    def opponent_turn(board: tuple[int, ...]) -> np.ndarray:
        theirs = flip(board)
        moves = optimal_moves(theirs) if opponent == "minimax" else legal_moves(theirs)
        total = np.zeros(3)
        for move in moves:
            after = board[:move] + (-1,) + board[move + 1:]
            if winner(after) == -1:
                total += (0.0, 0.0, 1.0)
            else:
                total += (0.0, 1.0, 0.0) if 0 not in after else agent_turn(after)
        return total / len(moves)

    empty = (0,) * 9
    first, second = agent_turn(empty), opponent_turn(empty)
    as_dict = lambda p: dict(zip(("win", "draw", "loss"), map(float, p), strict=True))  # noqa: E731
    return {"agent_first": as_dict(first), "opponent_first": as_dict(second), "mean": as_dict((first + second) / 2)}


def sampled_outcomes(policy: BatchPolicy, opponent: str = "mix", games: int = 1000, seed: int = 0) -> dict[str, float]:
    """Win/draw/loss rates over ``games`` played in :class:`TicTacToeEnv` (any policy, any opponent)."""
    env = TicTacToeEnv(opponent=opponent, first="random")
    counts = {"win": 0, "draw": 0, "loss": 0}
    for game in range(games):
        obs, info = env.reset(seed=seed + game)
        terminated = False
        while not terminated:
            move = int(np.asarray(policy(obs[None], info["action_mask"][None])).reshape(-1)[0])
            obs, _, terminated, _, info = env.step(move)
        counts[info["result"]] += 1
    return {k: v / games for k, v in counts.items()}


#: A batched policy over games so far: (move history from the first mover on, agent moved first?) -> cell.
HistoryPolicy = Callable[[list[tuple[tuple[int, ...], bool]]], Sequence[int]]


def exact_outcomes_with_history(policy: HistoryPolicy, opponent: str) -> dict[str, dict[str, float]]:
    """Exact win/draw/loss probabilities of a deterministic policy that sees the whole game, not only the board.

    A language model playing ``textgym/TextTicTacToe-v0`` reads the transcript: the same board reached
    by different moves is a different context. So the game tree is walked from the empty board, one
    depth at a time, asking the policy once per depth for every game still running (about 2,000 games
    in all against the random opponent).

    Args:
        policy: Batched and deterministic (e.g. greedy); an occupied cell, or -1 (not a move), loses.
        opponent: ``"random"`` or ``"minimax"``.

    Returns:
        ``{"agent_first": {...}, "opponent_first": {...}, "mean": {...}}``, each with ``win``, ``draw``, ``loss``.

    Example:
        >>> first_empty = lambda games: [[m for m in range(9) if m not in moves][0] for moves, _ in games]
        >>> exact_outcomes_with_history(first_empty, "minimax")["mean"]["win"]
        0.0
    """
    if opponent not in ("random", "minimax"):
        raise ValueError(f"exact evaluation knows the 'random' and 'minimax' opponents, got {opponent!r}")
    result = {}
    for agent_first in (True, False):
        totals = np.zeros(3)  # win, draw, loss
        frontier = [((), 1.0)] if agent_first else _opponent_replies((), (0,) * 9, 1.0, opponent, totals)
        while frontier:
            cells = policy([(moves, agent_first) for moves, _ in frontier])
            next_frontier = []
            for (moves, prob), cell in zip(frontier, cells, strict=True):
                board = _board(moves, agent_first)
                if cell < 0 or board[cell] != 0:
                    totals[2] += prob
                    continue
                after = board[:cell] + (1,) + board[cell + 1:]
                if winner(after) == 1 or 0 not in after:
                    totals[0 if winner(after) == 1 else 1] += prob
                    continue
                next_frontier += _opponent_replies((*moves, cell), after, prob, opponent, totals)
            frontier = next_frontier
        result["agent_first" if agent_first else "opponent_first"] = totals
    as_dict = lambda p: dict(zip(("win", "draw", "loss"), map(float, p), strict=True))  # noqa: E731
    return {"agent_first": as_dict(result["agent_first"]), "opponent_first": as_dict(result["opponent_first"]),
            "mean": as_dict((result["agent_first"] + result["opponent_first"]) / 2)}


def mistakes_with_history(policy: HistoryPolicy, opponent: str,
                          corrections: bool = True) -> list[tuple[tuple[int, ...], bool, float]]:
    """Where a deterministic policy plays a move that is not optimal, in the games it plays against ``opponent``.

    A move is a mistake when it lowers the position's game-theoretic value (a draw thrown into a loss, a
    win into a draw or a loss: :func:`textgym.envs.tictactoe.optimal_moves`). The game tree is walked
    as :func:`exact_outcomes_with_history` walks it, so only positions the policy's own games reach
    are listed, each once. A policy that learns to correct a mistake will then play on from the
    optimal moves, where its play is so far unseen; with ``corrections`` the walk follows those
    moves too and lists the mistakes there (the reason a corrected move can look no better to the
    learner: it loses later anyway).

    Args:
        policy: Batched and deterministic (e.g. greedy); an occupied cell, or -1 (not a move), is a mistake.
        opponent: ``"random"`` or ``"minimax"``.
        corrections: Also walk on from the optimal moves at each mistake (each with an equal share of
            the mistake's probability).

    Returns:
        ``(moves, agent_first, probability)`` per mistake: the game so far (cells 0-8 from the first
        mover on), the seat, and the probability that a game in that seat reaches the position. The
        histories are what ``TicTacToeTurns(restart_share=...)`` restarts games from.

    Example:
        >>> first_empty = lambda games: [[m for m in range(9) if m not in moves][0] for moves, _ in games]
        >>> mistakes_with_history(first_empty, "minimax")[0]  # 1 after 0, centre, 1, 2: the block is 6
        ((0, 4, 1, 2), True, 1.0)
    """
    if opponent not in ("random", "minimax"):
        raise ValueError(f"exact evaluation knows the 'random' and 'minimax' opponents, got {opponent!r}")
    found = []
    for agent_first in (True, False):
        ended = np.zeros(3)  # the walk's finished games (not needed here)
        frontier = [((), 1.0)] if agent_first else _opponent_replies((), (0,) * 9, 1.0, opponent, ended)
        while frontier:
            cells = policy([(moves, agent_first) for moves, _ in frontier])
            next_frontier = []
            for (moves, prob), cell in zip(frontier, cells, strict=True):
                board = _board(moves, agent_first)
                best = optimal_moves(board)
                played = [(cell, prob)] if 0 <= cell < 9 and board[cell] == 0 else []
                if cell not in best:
                    found.append((moves, agent_first, prob))
                    played += [(move, prob / len(best)) for move in best] if corrections else []
                for move, share in played:
                    after = board[:move] + (1,) + board[move + 1:]
                    if winner(after) == 0 and 0 in after:
                        next_frontier += _opponent_replies((*moves, move), after, share, opponent, ended)
            frontier = next_frontier
    return found


def _board(moves: tuple[int, ...], agent_first: bool) -> tuple[int, ...]:
    """The board (agent +1) after ``moves``, played alternately from whoever moved first."""
    return tuple(board_after(moves, agent_first))


def _opponent_replies(moves: tuple[int, ...], board: tuple[int, ...], prob: float, opponent: str,
                      totals: np.ndarray) -> list[tuple[tuple[int, ...], float]]:
    """The games after each of the opponent's answers; answers that end the game go to ``totals``."""
    theirs = flip(board)
    options = optimal_moves(theirs) if opponent == "minimax" else legal_moves(theirs)
    running = []
    for cell in options:
        after = board[:cell] + (-1,) + board[cell + 1:]
        share = prob / len(options)
        if winner(after) == -1:
            totals[2] += share
        elif 0 not in after:
            totals[1] += share
        else:
            running.append(((*moves, cell), share))
    return running


def text_policy(model, tokenizer, legal_only: bool = False, batch_size: int = 512) -> HistoryPolicy:
    """The greedy move of a language model reading the game's transcript (``textgym/TextTicTacToe-v0``).

    Args:
        model: A causal LM over the transcripts' tokens.
        tokenizer: Its tokenizer.
        legal_only: Choose among the empty cells (the environment's ``illegal="mask"``); otherwise the
            most likely token of the whole vocabulary, and anything but an empty cell loses.
        batch_size: Games scored per forward.
    """
    import torch

    from textgym.envs.text_tictactoe import transcript
    from textgym.models import model_device
    from textgym.models.kv import keep_last, left_pad_np, positions_from_mask

    cells = [tokenizer(str(cell + 1), add_special_tokens=False)["input_ids"][0] for cell in range(9)]

    @torch.no_grad()
    def policy(games: list[tuple[tuple[int, ...], bool]]) -> list[int]:
        moves = []
        for start in range(0, len(games), batch_size):
            chunk = games[start:start + batch_size]
            contexts = [tokenizer(transcript(m, first).strip())["input_ids"] for m, first in chunk]
            ids, mask = (torch.from_numpy(a).to(model_device(model)) for a in left_pad_np(contexts, 0))
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask),
                           logits_to_keep=keep_last(1, ids.shape[1], ids.device)).logits[:, -1].float().cpu()  # (n, V)
            for row, (history, first) in enumerate(chunk):
                board = _board(history, first)
                if legal_only:
                    token = max((cells[c] for c in range(9) if board[c] == 0), key=lambda t: logits[row, t])
                else:
                    token = int(logits[row].argmax())
                moves.append(cells.index(token) if token in cells else -1)
        return moves

    return policy
