"""Reward functions by short name, the tasks' own names included (``sentiment``, ``toxicity``, ``helpfulness``).

:func:`textgym.rewards.named.make_reward` knows the names and specs that need no task; this one adds
the rewards each task contributes (:attr:`textgym.tasks.Task.named_rewards`), for command lines and
config files.
"""

from __future__ import annotations

from collections.abc import Callable

from textgym.rewards import named
from textgym.rewards.base import RewardFunction
from textgym.tasks import TASKS


def task_rewards() -> dict[str, Callable[[], RewardFunction]]:
    """Every reward a task contributes, by name."""
    return {name: make for task in TASKS.values() for name, make in task.named_rewards.items()}


def make_reward(spec: str) -> RewardFunction:
    """Build the reward described by ``spec``: a task's reward name or any spec of :mod:`textgym.rewards.named`.

    Example:
        >>> make_reward("keyword:great").name
        'keyword[great]'
    """
    return named.make_reward(spec, task_rewards())
