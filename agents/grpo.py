"""GRPO (group relative policy optimisation, Shao et al. 2024) for causal language models.

No value head: each prompt's ``group_size`` completions are compared with each other. An episode's
advantage is its score minus its group's mean, divided by the group's standard deviation
(``scale_rewards``; without it, the Dr. GRPO variant), on every token; the update is the clipped
surrogate. A group whose scores are tied gets advantages of exactly 0.

The KL to the reference, by default, is a per-token k3 term in the loss (``kl_coef * k3(pi, pi_ref)``),
as published and as TRL does: only the score is group-normalised, so ``kl_coef`` changes the loss,
never the advantages. ``kl_in_loss=False`` puts the KL in the reward instead (the environment's
shaping): it is then part of the return that is normalised, and in a tied group the advantages are
the sampled KL's noise, scaled to unit size.

Per-token credit: the advantage compares whole completions, so where in a completion the score was
earned (``credit="token"``, turn rewards) does not matter; the return is its sum.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from agents.lm import LMAgent
from agents.ppo_math import group_normalized
from agents.rollout import EpisodeBatch, evaluate
from agents.update import ppo_loss


class GRPO(LMAgent):
    """GRPO on a text-generation vector env with ``group_size >= 2`` (:class:`agents.lm.LMAgent` for the arguments).

    ``norm_adv`` does not apply: the advantages are already normalised within each group.
    """

    group_size = 4
    min_group_size = 2
    defaults = {**LMAgent.defaults, "kl_in_loss": True}

    def advantages(self, batch: EpisodeBatch, rewards: torch.Tensor) -> None:
        """Group-normalised returns, on every agent token."""
        normalised = group_normalized(rewards.sum(1), batch.groups, scale=self.cfg.scale_rewards)
        batch.advantages = normalised[:, None] * batch.token_mask

    def loss(self, mb: EpisodeBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The clipped surrogate on group-normalised advantages, plus the KL term (with ``kl_in_loss``)."""
        logprobs, entropy, _ = evaluate(self.policy, mb, self.num_actions, entropy=True)
        mask = mb.token_mask
        loss, stats = ppo_loss(mb, logprobs, entropy, None, replace(self.cfg, norm_adv=False), mask, self.total(mask))
        return self.add_kl_loss(loss, stats, logprobs, mb)
