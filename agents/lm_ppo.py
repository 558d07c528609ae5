"""PPO for causal language models: a value head on the policy's trunk, GAE, and PPO's clipped loss.

The loss and the update loop are the ones that train the toy policies (:func:`agents.update.ppo_loss`,
:func:`agents.update.run_epochs`); what is specific to text is how episodes are collected and scored
(:mod:`agents.rollout`, :class:`agents.lm.LMAgent`). Acting records each token's log-probability and
its state's value from the same one-token forward that samples it (a KV cache per slot), so the
update needs no extra scoring pass; each minibatch of whole episodes is evaluated with one
teacher-forced forward.
"""

from __future__ import annotations

import torch

from agents.lm import LMAgent
from agents.ppo_math import token_gae
from agents.rollout import EpisodeBatch


class LMPPO(LMAgent):
    """PPO on a text-generation environment (:class:`agents.lm.LMAgent` for the arguments).

    Advantages: GAE over the agent's tokens with the value head's estimates recorded while acting
    (``gamma``, ``gae_lambda``; environment tokens of a conversation are skipped).
    """

    value_head = True

    def advantages(self, batch: EpisodeBatch, rewards: torch.Tensor) -> None:
        """GAE over each episode's agent tokens; returns are the value head's targets."""
        if batch.values is None:
            raise ValueError("LMPPO needs the values recorded while acting (a sampler with a value head)")
        batch.advantages, batch.returns = token_gae(rewards, batch.values * batch.token_mask, batch.token_mask,
                                                    self.cfg.gamma, self.cfg.gae_lambda)
