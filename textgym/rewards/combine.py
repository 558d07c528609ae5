"""A weighted sum of reward functions that reports every term."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from textgym.rewards.base import Reward, RewardFunction, score_batch


class WeightedSum(Reward):
    """``sum_i w_i * reward_i``, with each weighted term available through :meth:`terms`.

    The environment puts the terms in ``info["reward_terms"]``, so a learning curve can show which
    part of the reward moved.

    Args:
        rewards: Reward function -> weight. Names must be distinct.

    Example:
        >>> from textgym.rewards.rules import KeywordReward, LengthReward
        >>> both = WeightedSum({KeywordReward(["fun"]): 1.0, LengthReward(2): 0.5})
        >>> both.terms(["p"], ["fun fun fun"])
        {'keyword[fun]': array([3.]), 'length[2]': array([-0.5])}
        >>> both(["p"], ["fun fun fun"])
        array([2.5])
    """

    def __init__(self, rewards: Mapping[RewardFunction, float]) -> None:
        if not rewards:
            raise ValueError("WeightedSum needs at least one reward")
        names = [r.name for r in rewards]
        if len(set(names)) != len(names):
            raise ValueError(f"WeightedSum needs distinct reward names, got {names}")
        self.rewards = dict(rewards)
        self.name = "+".join(f"{w:g}*{r.name}" for r, w in self.rewards.items())

    def terms(self, prompts: list[str], completions: list[str]) -> dict[str, np.ndarray]:
        """Each reward's weighted contribution, by name."""
        return {r.name: w * score_batch(r, prompts, completions, warn_dead=False) for r, w in self.rewards.items()}

    def score(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """The weighted sum of every term."""
        return np.sum(list(self.terms(prompts, completions).values()), axis=0)
