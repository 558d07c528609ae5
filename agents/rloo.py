"""RLOO (REINFORCE leave-one-out, Ahmadian et al. 2024) for causal language models.

No value head: each episode's advantage is its return minus the mean return of the other episodes
that answered the same prompt (the environment's ``group_size`` slots share a prompt; groups of one
are refused), spread over its tokens; the update is the clipped surrogate (with one epoch, plain
REINFORCE with that baseline).

Per-token credit: the baseline compares whole completions, so where in a completion the score was
earned (``credit="token"``, turn rewards) does not matter; the return is its sum.
"""

from __future__ import annotations

import torch

from agents.lm import LMAgent
from agents.ppo_math import leave_one_out
from agents.rollout import EpisodeBatch


class RLOO(LMAgent):
    """RLOO on a text-generation vector env with ``group_size >= 2`` (:class:`agents.lm.LMAgent` for the arguments)."""

    group_size = 4
    min_group_size = 2

    def advantages(self, batch: EpisodeBatch, rewards: torch.Tensor) -> None:
        """Return minus the leave-one-out mean of its group, on every agent token."""
        batch.advantages = leave_one_out(rewards.sum(1), batch.groups)[:, None] * batch.token_mask
