"""Scoring tic-tac-toe policies: exactly, by enumerating every opponent reply, or by sampling games.

A deterministic policy meets at most a few thousand positions, so its exact win/draw/loss rates
against the random and the minimax opponent (which picks uniformly among optimal moves) take
milliseconds: the policy is asked once, in one batch, for every position where the agent is to
move, then the game tree is averaged over the opponent's choices.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import numpy as np

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
