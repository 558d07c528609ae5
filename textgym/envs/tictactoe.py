"""Tic-tac-toe against a built-in opponent: the RL vocabulary on a 3x3 board.

Agent = a player, environment = the board and the opponent, action = a cell, reward = the result.
The same agent code that learns this game learns to write text in :mod:`textgym.envs.text_generation`.

Cells are numbered row by row::

     0 | 1 | 2
    ---+---+---
     3 | 4 | 5
    ---+---+---
     6 | 7 | 8

Boards are 9-tuples seen from one player's side: +1 its marks, -1 the other's, 0 empty. Every
random draw (who starts, which opponent, the opponent's moves) is one uniform number from the
environment's ``np_random``, taken in a fixed order, so the batched form can replay the same games.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
OPPONENTS = ("random", "minimax", "mix")
Opponent = Callable[[np.ndarray, np.ndarray], int]


def _symmetries() -> tuple[tuple[int, ...], ...]:
    """The 8 symmetries of the square as cell permutations: new_board[i] = board[perm[i]]."""
    rotate = (6, 3, 0, 7, 4, 1, 8, 5, 2)
    mirror = (2, 1, 0, 5, 4, 3, 8, 7, 6)
    perms, current = [], tuple(range(9))
    for _ in range(4):
        perms += [current, tuple(current[m] for m in mirror)]
        current = tuple(current[r] for r in rotate)
    return tuple(perms)


#: Cell permutations of the 8 board symmetries (rotations and reflections).
SYMMETRIES = _symmetries()


def winner(board: Sequence[int]) -> int:
    """+1 or -1 if that side has three in a line, else 0."""
    for a, b, c in LINES:
        if board[a] != 0 and board[a] == board[b] == board[c]:
            return int(board[a])
    return 0


def legal_moves(board: Sequence[int]) -> list[int]:
    """The empty cells."""
    return [i for i in range(9) if board[i] == 0]


def flip(board: Sequence[int]) -> tuple[int, ...]:
    """The same board seen from the other side."""
    return tuple(-x for x in board)


@functools.cache
def solve(board: tuple[int, ...]) -> int:
    """The game value for the side to move (whose marks are +1) under perfect play: 1, 0 or -1.

    >>> solve((0,) * 9)
    0
    >>> solve((1, 1, 0, -1, -1, 0, 0, 0, 0))
    1
    """
    if winner(board) != 0:  # the previous mover (marks -1) completed a line
        return -1
    moves = legal_moves(board)
    if not moves:
        return 0
    return max(-solve(flip(_play(board, m))) for m in moves)


def optimal_moves(board: tuple[int, ...]) -> list[int]:
    """Every move that keeps the best value for the side to move (marks +1).

    >>> optimal_moves((1, 1, 0, -1, -1, 0, 0, 0, 0))
    [2]
    """
    moves = legal_moves(board)
    values = [-solve(flip(_play(board, m))) for m in moves]
    best = max(values)
    return [m for m, v in zip(moves, values, strict=True) if v == best]


def _play(board: tuple[int, ...], cell: int, mark: int = 1) -> tuple[int, ...]:
    return board[:cell] + (mark,) + board[cell + 1:]


def observation(board: Sequence[int]) -> np.ndarray:
    """The 18-float observation of a board: [my marks (9), opponent's marks (9)]."""
    b = np.asarray(board)
    return np.concatenate([b == 1, b == -1]).astype(np.float32)


def _pick(candidates: list[int], u: float) -> int:
    return candidates[int(u * len(candidates))]


POW3 = tuple(3 ** (8 - i) for i in range(9))  # board code: sum((board[i] + 1) * POW3[i]); cell 0 most significant
EMPTY_CODE = sum(POW3)
LINES_THROUGH = tuple(tuple(line for line in LINES if cell in line) for cell in range(9))


@functools.cache
def board_tables() -> dict[str, np.ndarray]:
    """Tables indexed by board code (3^9 rows), for the side whose marks are +1.

    ``obs`` (float32, 18): the observation; ``legal`` and ``optimal`` (bool, 9): its legal and
    minimax-optimal moves. The other side's code is ``3^9 - 1 - code``.
    """
    boards = np.array(list(itertools.product((-1, 0, 1), repeat=9)), dtype=np.int8)  # (3^9, 9)
    legal = boards == 0
    optimal = legal.copy()
    lines = np.abs(boards[:, np.array(LINES)].sum(-1)) == 3  # (3^9, 8)
    for code in np.flatnonzero(legal.any(1) & ~lines.any(1)):
        optimal[code] = False
        optimal[code, optimal_moves(tuple(int(x) for x in boards[code]))] = True
    obs = np.concatenate([boards == 1, boards == -1], axis=1).astype(np.float32)
    for table in (obs, legal, optimal):
        table.flags.writeable = False
    return {"obs": obs, "legal": legal, "optimal": optimal}


class TicTacToeEnv(gym.Env):
    """Tic-tac-toe for one agent against a built-in opponent.

    ## Description
    The agent and the opponent take turns placing their marks; three in a row wins. Who starts is
    ``first``; the opponent is chosen per reset (``opponent``). The board numbering is in the
    module docstring.

    ## Action Space
    ``Discrete(9)``: the cell to mark. Occupied cells are illegal (``info["action_mask"]`` and
    :meth:`action_masks` mark the legal ones): with ``illegal="loss"`` an illegal move ends the
    game as a loss, with ``illegal="error"`` it raises ``ValueError``. An action outside 0-8 always
    raises ``ValueError``.

    ## Observation Space
    ``Box(0, 1, (18,), float32)`` from the agent's side: cells 0-8 hold 1 where the agent has a mark,
    cells 9-17 where the opponent has one. One network can therefore play either seat.

    ## Rewards
    +1 for a win, 0 for a draw, -1 for a loss (an illegal move with ``illegal="loss"`` included),
    given on the last step; 0 on every other step.

    ## Starting State
    An empty board, after the opponent's first move if it starts.

    ## Episode End
    Terminated when a side has three in a line, the board is full, or the agent moved illegally.
    No truncation. ``step`` after the end raises ``RuntimeError``.

    ## Information
    Every ``reset`` and ``step``: ``action_mask`` (int8, (9,), 1 on empty cells). After ``reset``
    also ``opponent`` (str: ``random``, ``minimax`` or ``callable``) and ``agent_first`` (bool).
    On the last step also ``result`` (``"win"``, ``"draw"`` or ``"loss"``) and ``illegal`` (bool).

    ## Arguments
    - ``opponent``: ``"random"`` (uniform legal moves), ``"minimax"`` (a uniformly chosen optimal
      move, so games differ), ``"mix"`` (random or minimax, 50/50 per game), or a callable
      ``f(obs, action_mask) -> cell`` that sees the board from its own side (self-play).
    - ``first``: who moves first: ``"agent"``, ``"opponent"`` or ``"random"`` (50/50 per game).
    - ``illegal``: ``"loss"`` or ``"error"`` (see Action Space).
    - ``render_mode``: ``"ansi"`` (text; the first mover is X) or ``"rgb_array"`` (96 x 96 image).

    >>> env = TicTacToeEnv(opponent="minimax", first="agent")
    >>> obs, info = env.reset(seed=0)
    >>> info["action_mask"].tolist()
    [1, 1, 1, 1, 1, 1, 1, 1, 1]
    >>> obs, reward, terminated, truncated, info = env.step(4)
    >>> int(obs[9:].sum())  # the opponent answered
    1

    ## Version History
    - v0: initial version.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 2}

    def __init__(self, opponent: str | Opponent = "mix", first: str = "random", illegal: str = "loss",
                 render_mode: str | None = None) -> None:
        if not callable(opponent) and opponent not in OPPONENTS:
            raise ValueError(f"unknown opponent {opponent!r}; use one of {OPPONENTS} "
                             "or a callable f(obs, mask) -> cell")
        for name, value, allowed in (("first", first, ("agent", "opponent", "random")),
                                     ("illegal", illegal, ("loss", "error")),
                                     ("render_mode", render_mode, (None, *self.metadata["render_modes"]))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        self.opponent, self.first, self.illegal, self.render_mode = opponent, first, illegal, render_mode
        self.action_space = spaces.Discrete(9)
        self.observation_space = spaces.Box(0, 1, (18,), np.float32)
        self.board: tuple[int, ...] = (0,) * 9
        self._code = EMPTY_CODE
        self._tables = board_tables()
        self._running = False
        self._agent_first = True
        self._opponent_now: str | Opponent = "random"

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Start a game (see Starting State)."""
        super().reset(seed=seed)
        self._agent_first = self.first == "agent" or (self.first == "random" and self.np_random.random() < 0.5)
        self._opponent_now = self.opponent
        if self.opponent == "mix":
            self._opponent_now = "random" if self.np_random.random() < 0.5 else "minimax"
        self.board, self._code = (0,) * 9, EMPTY_CODE
        if not self._agent_first:
            self._mark(self._opponent_move(), -1)
        self._running = True
        name = self._opponent_now if isinstance(self._opponent_now, str) else "callable"
        return self._obs(), {"action_mask": self.action_masks(), "opponent": name, "agent_first": self._agent_first}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Mark a cell; the opponent answers if the game goes on (see Rewards and Episode End)."""
        if not self._running:
            raise RuntimeError("step() called with no game running: call reset() first (also after a game ends)")
        cell = _as_cell(action)
        if self.board[cell] != 0:
            if self.illegal == "error":
                raise ValueError(f"cell {cell} is occupied; legal cells: {legal_moves(self.board)}")
            return self._end(-1.0, "loss", illegal=True)
        if self._mark(cell, 1):
            return self._end(1.0, "win")
        if 0 not in self.board:
            return self._end(0.0, "draw")
        if self._mark(self._opponent_move(), -1):
            return self._end(-1.0, "loss")
        if 0 not in self.board:
            return self._end(0.0, "draw")
        return self._obs(), 0.0, False, False, {"action_mask": self.action_masks()}

    def action_masks(self) -> np.ndarray:
        """Legal cells as an int8 mask of length 9 (the method sb3-contrib's MaskablePPO calls)."""
        return self._tables["legal"][self._code].astype(np.int8)

    def render(self) -> str | np.ndarray | None:
        """The board as text (``ansi``) or as a 96 x 96 RGB image (``rgb_array``)."""
        if self.render_mode == "ansi":
            return render_text(self.board, agent_is_x=self._agent_first)
        if self.render_mode == "rgb_array":
            return render_rgb(self.board)
        return None

    def _mark(self, cell: int, mark: int) -> bool:
        """Place ``mark`` on ``cell``; True if it completes a line."""
        self.board = _play(self.board, cell, mark)
        self._code += mark * POW3[cell]
        return any(self.board[a] == self.board[b] == self.board[c] == mark for a, b, c in LINES_THROUGH[cell])

    def _opponent_move(self) -> int:
        theirs = 3**9 - 1 - self._code  # the board from the opponent's side
        if callable(self._opponent_now):
            cell = int(self._opponent_now(self._tables["obs"][theirs].copy(), self.action_masks()))
            if not 0 <= cell < 9 or self.board[cell] != 0:
                raise ValueError(f"the opponent callable chose cell {cell}, which is not legal")
            return cell
        table = self._tables["optimal" if self._opponent_now == "minimax" else "legal"]
        return _pick(np.flatnonzero(table[theirs]).tolist(), self.np_random.random())

    def _obs(self) -> np.ndarray:
        return self._tables["obs"][self._code].copy()

    def _end(self, reward: float, result: str, illegal: bool = False) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._running = False
        info = {"action_mask": self.action_masks(), "result": result, "illegal": illegal}
        return self._obs(), reward, True, False, info


def _as_cell(action: Any) -> int:
    if type(action) is int and 0 <= action < 9:  # the common case, without numpy
        return action
    array = np.asarray(action)
    if array.size != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"action must be one integer cell 0-8, got {action!r}")
    cell = int(array.reshape(()))
    if not 0 <= cell < 9:
        raise ValueError(f"action {cell} is outside the board: cells are numbered 0-8")
    return cell


def render_text(board: Sequence[int], agent_is_x: bool = True) -> str:
    """The board as three text rows; the first mover plays X.

    >>> print(render_text((1, -1, 0, 0, 1, 0, 0, 0, 0)))
     X | O | .
    ---+---+---
     . | X | .
    ---+---+---
     . | . | .
    """
    marks = {1: "X" if agent_is_x else "O", -1: "O" if agent_is_x else "X", 0: "."}
    rows = [" " + " | ".join(marks[board[3 * r + c]] for c in range(3)) for r in range(3)]
    return "\n---+---+---\n".join(rows)


def render_rgb(board: Sequence[int], cell: int = 32) -> np.ndarray:
    """The board as an RGB image, drawn with numpy: the agent's marks blue crosses, the opponent's red rings."""
    size = 3 * cell
    image = np.full((size, size, 3), 255, dtype=np.uint8)
    image[cell - 1:cell + 1, :] = image[:, cell - 1:cell + 1] = 0
    image[2 * cell - 1:2 * cell + 1, :] = image[:, 2 * cell - 1:2 * cell + 1] = 0
    y, x = np.mgrid[0:cell, 0:cell]
    centre, radius = (cell - 1) / 2, cell * 0.33
    cross = ((np.abs(x - y) <= 1.5) | (np.abs(x + y - (cell - 1)) <= 1.5)) & (np.abs(x - centre) <= radius) & (
        np.abs(y - centre) <= radius)
    ring = np.abs(np.hypot(x - centre, y - centre) - radius) <= 1.5
    for index, mark in enumerate(board):
        r, c = divmod(index, 3)
        view = image[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell]
        if mark == 1:
            view[cross] = (30, 80, 220)
        elif mark == -1:
            view[ring] = (220, 40, 40)
    return image
