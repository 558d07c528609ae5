"""REINFORCE (Williams, 1992) for causal language models: the plain policy gradient.

Each token's advantage is its reward-to-go: the rewards earned at it and after it in its episode
(the score where it was earned, the KL penalty of every later token), so a part of the score paid
at a token (``credit="token"``, turn rewards) credits only the tokens before it. No baseline, no
value head, no clipping; with ``norm_adv`` the advantages are normalised per minibatch, which
subtracts the minibatch's mean.

One on-policy step per batch by default (``update_epochs=1``, ``num_minibatches=1``): the gradient
is ``-advantage * grad log pi`` at the behaviour policy. More steps per batch are off-policy after
the first, so the loss is ``-advantage * pi / pi_old`` (an importance ratio, unclipped), whose
gradient at the behaviour policy is the same, and ``target_kl`` stops the epochs early as in PPO.
"""

from __future__ import annotations

import torch

from agents.lm import LMAgent
from agents.ppo_math import importance_weighted_loss, masked_mean, masked_whiten, reward_to_go
from agents.rollout import EpisodeBatch, evaluate


class REINFORCE(LMAgent):
    """REINFORCE on a text-generation vector env (:class:`agents.lm.LMAgent` for the arguments)."""

    defaults = {**LMAgent.defaults, "num_minibatches": 1, "update_epochs": 1}

    def advantages(self, batch: EpisodeBatch, rewards: torch.Tensor) -> None:
        """Each agent token's reward-to-go."""
        batch.advantages = reward_to_go(rewards, batch.token_mask)

    def loss(self, mb: EpisodeBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``-advantage * pi / pi_old`` on the agent's tokens (first step: ``-advantage * log pi``'s gradient)."""
        logprobs, entropy, _ = evaluate(self.policy, mb, self.num_actions, entropy=True)
        mask, total = mb.token_mask, self.total(mb.token_mask)
        if mb.advantages is None:
            raise ValueError("the batch has no advantages: advantages() sets them before the update")
        advantages = masked_whiten(mb.advantages, mask, self.reduce) if self.cfg.norm_adv else mb.advantages
        loss = importance_weighted_loss(logprobs, mb.logprobs, advantages, mask, total)
        with torch.no_grad():
            log_ratio = logprobs - mb.logprobs
            stats = {"losses/policy_loss": loss.detach(), "losses/entropy": masked_mean(entropy, mask),
                     "losses/approx_kl": masked_mean((log_ratio.exp() - 1) - log_ratio, mask)}
        return self.add_kl_loss(loss, stats, logprobs, mb)
