"""The agent protocol every textgym agent follows, toy or text, and the random baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Agent(Protocol):
    """Acts on (vector) observations; learns from an environment for a budget; saves and loads.

    ``act`` takes a batched observation (N, ...) and returns N actions. ``episode_start`` (bool, N)
    marks observations that begin an episode (agents with per-episode state, such as a KV cache,
    reset it there); ``action_mask`` (N, A) marks the legal actions.
    """

    def act(self, obs: Any, *, episode_start: np.ndarray | None = None, action_mask: np.ndarray | None = None,
            deterministic: bool = False) -> np.ndarray:
        """Choose one action per environment."""
        ...

    def learn(self, envs: Any, total_steps: int) -> list[dict[str, float]]:
        """Train for ``total_steps`` environment steps; return one metrics row per update."""
        ...

    def save(self, path: str | Path) -> None:
        """Write everything needed to act (and resume) to the folder ``path``."""
        ...


class RandomAgent:
    """Uniformly random legal actions: the baseline every learner must beat.

    Args:
        n_actions: Size of the discrete action space.
        seed: Seed of its random generator.

    Example:
        >>> agent = RandomAgent(n_actions=9, seed=0)
        >>> mask = np.zeros((2, 9), np.int8); mask[:, [2, 5]] = 1
        >>> set(agent.act(None, action_mask=mask).tolist()) <= {2, 5}
        True
    """

    def __init__(self, n_actions: int, seed: int | None = None) -> None:
        self.n_actions = n_actions
        self.rng = np.random.default_rng(seed)

    def act(self, obs: Any, *, episode_start: np.ndarray | None = None, action_mask: np.ndarray | None = None,
            deterministic: bool = False) -> np.ndarray:
        """A uniformly random allowed action per row of ``action_mask`` (one row when there is none)."""
        mask = np.ones((1, self.n_actions), bool) if action_mask is None else np.atleast_2d(action_mask).astype(bool)
        scores = self.rng.random(mask.shape) * mask  # the largest random score among allowed actions
        return np.where(mask.any(1), scores.argmax(1), 0)

    def learn(self, envs: Any, total_steps: int) -> list[dict[str, float]]:
        """A random agent learns nothing."""
        return []

    def save(self, path: str | Path) -> None:
        """Nothing to save but the action count."""
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "random_agent.txt").write_text(f"{self.n_actions}\n")
