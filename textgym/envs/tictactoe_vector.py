"""N tic-tac-toe games stepped in lockstep with numpy, as a ``gymnasium.vector.VectorEnv``.

Slot i replays, game for game, a :class:`textgym.envs.tictactoe.TicTacToeEnv` seeded with
``seed + i``: each slot draws the same uniform numbers in the same order, read from a per-slot
buffer filled by that slot's own generator (a block of draws equals the same number of single
draws). The minimax opponent reads its optimal moves from a table over all 3^9 boards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from textgym.envs.tictactoe import LINES, OPPONENTS, board_tables
from textgym.envs.tictactoe import POW3 as TICTACTOE_POW3

POW3 = np.array(TICTACTOE_POW3)  # board codes, as the single env computes them
LINE_INDEX = np.array(LINES)  # (8, 3)
RESULTS = np.array(["loss", "draw", "win"], dtype=object)


def _wins(boards: np.ndarray, mark: int) -> np.ndarray:
    return (boards[:, LINE_INDEX].sum(-1) == 3 * mark).any(-1)


class TicTacToeVectorEnv(VectorEnv):
    """``num_envs`` games of :class:`textgym.envs.tictactoe.TicTacToeEnv`, stepped with numpy.

    Autoreset: ``AutoresetMode.SAME_STEP``: a finished game's last observation is in
    ``info["final_obs"]`` and its result in ``info["final_info"]["result"]``; the returned
    observation already starts the next game. Opponents by name only (``random``, ``minimax``,
    ``mix``); ``illegal`` is ``"loss"`` or ``"error"`` as in the single environment.

    Args:
        num_envs: Games stepped together.
        opponent: ``"random"``, ``"minimax"`` or ``"mix"``.
        first: ``"agent"``, ``"opponent"`` or ``"random"``.
        illegal: ``"loss"`` or ``"error"``.

    >>> import gymnasium as gym, textgym
    >>> envs = gym.make_vec("textgym/TicTacToe-v0", num_envs=4, vectorization_mode="vector_entry_point")
    >>> obs, info = envs.reset(seed=0)
    >>> obs.shape, info["action_mask"].shape
    ((4, 18), (4, 9))
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}
    BUFFER = 256  # uniform draws fetched per slot at a time

    def __init__(self, num_envs: int = 1, opponent: str = "mix", first: str = "random", illegal: str = "loss") -> None:
        if opponent not in OPPONENTS:
            raise ValueError(f"unknown opponent {opponent!r}; the batched env takes one of {OPPONENTS}")
        if first not in ("agent", "opponent", "random") or illegal not in ("loss", "error"):
            raise ValueError(f"first must be agent/opponent/random and illegal loss/error, got {first!r}, {illegal!r}")
        self.num_envs, self.opponent, self.first, self.illegal = num_envs, opponent, first, illegal
        self.single_action_space = spaces.Discrete(9)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.single_observation_space = spaces.Box(0, 1, (18,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.boards = np.zeros((num_envs, 9), dtype=np.int8)  # +1 agent, -1 opponent
        self.minimax = np.zeros(num_envs, dtype=bool)  # which slots face the minimax opponent this game
        self.agent_first = np.ones(num_envs, dtype=bool)
        tables = board_tables()
        self._legal, self._optimal = tables["legal"], tables["optimal"]
        self._rngs: list[np.random.Generator] = []
        self._buffer = np.zeros((num_envs, self.BUFFER))
        self._used = np.full(num_envs, self.BUFFER)
        self._running = False

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None,
              ) -> tuple[np.ndarray, dict]:
        """Start a game in every slot."""
        super().reset(seed=None if isinstance(seed, list) else seed)  # a list seeds the slots' generators below
        seeds = seed if isinstance(seed, list) else [None if seed is None else seed + i for i in range(self.num_envs)]
        if not self._rngs or any(s is not None for s in seeds):
            old: Sequence[np.random.Generator | None] = self._rngs or [None] * self.num_envs
            self._rngs = [rng if s is None and rng is not None else seeding.np_random(s)[0]
                          for rng, s in zip(old, seeds, strict=True)]
            self._used[:] = self.BUFFER
        self._start(np.arange(self.num_envs))
        self._running = True
        return self._obs(), {"action_mask": self._masks(), "_action_mask": np.ones(self.num_envs, bool)}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Every agent marks a cell; the opponents answer; finished games restart (SAME_STEP)."""
        if not self._running:
            raise RuntimeError("step() called before reset(): call reset() first")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be {self.num_envs} integer cells, got {actions.dtype} {actions.shape}")
        if ((actions < 0) | (actions > 8)).any():
            raise ValueError(f"action {int(actions[(actions < 0) | (actions > 8)][0])} is outside the board (0-8)")
        slots = np.arange(self.num_envs)
        illegal = self.boards[slots, actions] != 0
        if illegal.any() and self.illegal == "error":
            raise ValueError(f"cell {int(actions[illegal][0])} is occupied in env {int(np.flatnonzero(illegal)[0])}")
        self.boards[slots[~illegal], actions[~illegal]] = 1
        win = _wins(self.boards, 1) & ~illegal
        full = (self.boards != 0).all(1)
        going = ~(illegal | win | full)
        self._opponent_moves(np.flatnonzero(going))
        loss = _wins(self.boards, -1) & going
        draw = (self.boards != 0).all(1) & ~win & ~loss & ~illegal
        terminated = illegal | win | loss | draw
        rewards = win.astype(np.float64) - (loss | illegal)
        infos: dict[str, Any] = {}
        finished = np.flatnonzero(terminated)
        if len(finished):
            infos = self._final_infos(finished, rewards, illegal)
            self._start(finished)
        infos["action_mask"], infos["_action_mask"] = self._masks(), np.ones(self.num_envs, bool)
        return self._obs(), rewards, terminated, np.zeros(self.num_envs, bool), infos

    def action_masks(self) -> np.ndarray:
        """Legal cells of every game, int8 (N, 9)."""
        return self._masks()

    def _start(self, slots: np.ndarray) -> None:
        """New games in ``slots``, drawing in the single env's order: who starts, which opponent, first move."""
        self.boards[slots] = 0
        if self.first == "random":
            self.agent_first[slots] = self._draw(slots) < 0.5
        else:
            self.agent_first[slots] = self.first == "agent"
        if self.opponent == "mix":
            self.minimax[slots] = self._draw(slots) >= 0.5
        else:
            self.minimax[slots] = self.opponent == "minimax"
        self._opponent_moves(slots[~self.agent_first[slots]])

    def _opponent_moves(self, slots: np.ndarray) -> None:
        if not len(slots):
            return
        codes = (1 - self.boards[slots]) @ POW3  # the opponent's side: its marks become +1
        candidates = np.where(self.minimax[slots, None], self._optimal[codes], self._legal[codes])  # (n, 9)
        counts = candidates.sum(1)
        k = (self._draw(slots) * counts).astype(np.int64)  # the k-th candidate, as the single env picks
        cells = (np.cumsum(candidates, 1) > k[:, None]).argmax(1)
        self.boards[slots, cells] = -1

    def _draw(self, slots: np.ndarray) -> np.ndarray:
        """One uniform number per slot, from each slot's own stream."""
        for slot in slots[self._used[slots] >= self.BUFFER]:
            self._buffer[slot] = self._rngs[slot].random(self.BUFFER)
            self._used[slot] = 0
        u = self._buffer[slots, self._used[slots]]
        self._used[slots] += 1
        return u

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.boards == 1, self.boards == -1], axis=1).astype(np.float32)  # (N, 18)

    def _masks(self) -> np.ndarray:
        return (self.boards == 0).astype(np.int8)  # (N, 9)

    def _final_infos(self, finished: np.ndarray, rewards: np.ndarray, illegal: np.ndarray) -> dict[str, Any]:
        obs = self._obs()
        mask = np.zeros(self.num_envs, bool)
        mask[finished] = True
        final_obs = np.full(self.num_envs, None, dtype=object)
        for slot in finished:
            final_obs[slot] = obs[slot]
        result = np.full(self.num_envs, None, dtype=object)
        result[finished] = RESULTS[rewards[finished].astype(np.int64) + 1]
        final_info = {"result": result, "_result": mask, "illegal": illegal & mask, "_illegal": mask}
        return {"final_obs": final_obs, "_final_obs": mask, "final_info": final_info, "_final_info": mask.copy()}
