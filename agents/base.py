"""The agent protocol every textgym agent follows, toy or text, and the random baseline."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np


@runtime_checkable
class Agent(Protocol):
    """Acts on (vector) observations; learns from an environment for a budget; saves and loads.

    ``act`` takes a batched observation (N, ...) and returns N actions. ``episode_start`` (bool, N)
    marks observations that begin an episode (agents with per-episode state, such as a KV cache,
    reset it there); ``action_mask`` (N, A) marks the legal actions.

    What a run needs (``textgym train``, :mod:`textgym.app.harness`): the counters ``global_step``
    (environment steps so far) and ``updates``; ``learn(envs, total_steps, callback)`` calls
    ``callback(row)`` after every update and stops when it returns True, and each call starts fresh
    episodes seeded from the update count (so a checkpoint taken at a stop resumes exactly);
    ``save(path)`` writes a folder that ``Class.load(path)`` restores.
    """

    global_step: int
    updates: int

    def act(self, obs: Any, *, episode_start: np.ndarray | None = None, action_mask: np.ndarray | None = None,
            deterministic: bool = False) -> np.ndarray:
        """Choose one action per environment."""
        ...

    def learn(self, envs: Any, total_steps: int, callback: Any = None) -> list[dict[str, float]]:
        """Train until ``total_steps`` environment steps; return one metrics row per update."""
        ...

    def save(self, path: str | Path) -> None:
        """Write everything needed to act (and resume) to the folder ``path``."""
        ...

    @classmethod
    def load(cls, path: str | Path) -> Agent:
        """The agent :meth:`save` wrote."""
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
        self.global_step = self.updates = 0

    def act(self, obs: Any, *, episode_start: np.ndarray | None = None, action_mask: np.ndarray | None = None,
            deterministic: bool = False) -> np.ndarray:
        """A uniformly random allowed action per row of ``action_mask`` (one row when there is none)."""
        mask = np.ones((1, self.n_actions), bool) if action_mask is None else np.atleast_2d(action_mask).astype(bool)
        scores = self.rng.random(mask.shape) * mask  # the largest random score among allowed actions
        return np.where(mask.any(1), scores.argmax(1), 0)

    def learn(self, envs: Any, total_steps: int, callback: Any = None) -> list[dict[str, float]]:
        """A random agent learns nothing."""
        return []

    def save(self, path: str | Path) -> None:
        """Nothing to save but the action count."""
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "random_agent.txt").write_text(f"{self.n_actions}\n")

    @classmethod
    def load(cls, path: str | Path) -> RandomAgent:
        """The random agent :meth:`save` wrote."""
        return cls(int((Path(path) / "random_agent.txt").read_text()))


T = TypeVar("T")


def import_class(spec: str, base: type[T]) -> type[T]:
    """The class ``module:QualName`` or ``path/to/file.py:QualName``, which must derive from ``base``.

    A module is looked up on ``sys.path`` and in the current folder (as ``python -m`` would); nothing
    but a class deriving from ``base`` is returned, so a name read from a file cannot call anything else.

    >>> import_class("agents.base:RandomAgent", object).__name__
    'RandomAgent'
    """
    module_name, _, name = spec.rpartition(":")
    if not module_name or not name:
        raise ValueError(f"{spec!r} is not module:Class or file.py:Class (e.g. mypkg.agents:MyAgent)")
    try:
        if module_name.endswith(".py"):
            if not Path(module_name).is_file():
                raise ValueError(f"{spec!r}: no such file {module_name!r}")
            loader = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
            if loader is None or loader.loader is None:
                raise ValueError(f"{spec!r}: Python cannot load {module_name!r} as a module")
            target = importlib.util.module_from_spec(loader)
            sys.modules[loader.name] = target
            loader.loader.exec_module(target)
        else:
            if os.getcwd() not in sys.path:
                sys.path.append(os.getcwd())
            target = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ValueError(f"cannot import {module_name!r} for {spec!r}: {err}") from None
    for part in name.split("."):
        if not hasattr(target, part):
            raise ValueError(f"{spec!r}: {module_name} has no {part!r}")
        target = getattr(target, part)
    if not isinstance(target, type) or not issubclass(target, base):
        kind = "class" if base is object else f"{base.__name__} class"
        raise ValueError(f"{spec!r} is not a {kind}")
    return target
