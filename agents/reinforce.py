"""REINFORCE (Williams, 1992) for causal language models: the plain policy gradient.

Each episode's advantage is its return, on every token: no baseline, no value head, no clipping;
the loss is ``-return * log pi(a_t | s_t)`` (with ``norm_adv`` the returns are normalised per
minibatch, which subtracts the minibatch's mean return). The simplest algorithm on the shared API,
and the baseline the others improve on.
"""

from __future__ import annotations

import torch

from agents.lm import LMAgent
from agents.ppo_math import masked_mean, masked_whiten, policy_gradient_loss
from agents.rollout import EpisodeBatch, evaluate


class REINFORCE(LMAgent):
    """REINFORCE on a text-generation vector env (:class:`agents.lm.LMAgent` for the arguments)."""

    def advantages(self, batch: EpisodeBatch, rewards: torch.Tensor) -> None:
        """Each episode's return on every agent token."""
        batch.advantages = rewards.sum(1)[:, None] * batch.token_mask

    def loss(self, mb: EpisodeBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``-advantage * log pi`` over the agent's tokens."""
        logprobs, entropy, _ = evaluate(self.policy, mb, self.num_actions, entropy=True)
        mask, total = mb.token_mask, self.total(mb.token_mask)
        advantages = masked_whiten(mb.advantages, mask, self.reduce) if self.cfg.norm_adv else mb.advantages
        loss = policy_gradient_loss(logprobs, advantages, mask, total)
        stats = {"losses/policy_loss": loss.detach(), "losses/entropy": masked_mean(entropy.detach(), mask)}
        return self.add_kl_loss(loss, stats, logprobs, mb)
