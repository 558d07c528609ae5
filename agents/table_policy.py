"""A tabular policy for small vocabularies: the next token's logits depend on the last token.

It is the policy of the tiny-language lessons: its logits start as the reference bigram's
log-probabilities (RLHF starts from the supervised model), so with an exact bigram reference the
KL between policy and reference is known exactly at every update.
"""

from __future__ import annotations

import torch
from torch import nn

from agents.ppo import MASKED


class LastTokenPolicy(nn.Module):
    """Logits from a (V, V) table row of the context's last token; value from (last token, step).

    Args:
        init_logits: Initial logits (V, V), e.g. the reference's log-probabilities.
        max_steps: Longest episode; the value table has one column per generated-token count.
        prompt_length: Real tokens before the first action (1 for episodes started from BOS).
    """

    def __init__(self, init_logits: torch.Tensor, max_steps: int, prompt_length: int = 1) -> None:
        super().__init__()
        self.logits = nn.Parameter(init_logits.detach().clone().float())
        self.values = nn.Parameter(torch.zeros(init_logits.shape[0], max_steps + 1))
        self.max_steps, self.prompt_length = max_steps, prompt_length
        self.init_args = {"vocab_size": init_logits.shape[0], "max_steps": max_steps, "prompt_length": prompt_length}

    @classmethod
    def from_init_args(cls, init_args: dict) -> LastTokenPolicy:
        """A policy of the size :attr:`init_args` describe (zero logits; load a state dict after)."""
        size = init_args["vocab_size"]
        return cls(torch.zeros(size, size), init_args["max_steps"], init_args["prompt_length"])

    def forward(self, obs: dict[str, torch.Tensor], action_mask: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, V) and values (B,) for a batch of text observations."""
        last = obs["input_ids"][:, -1]  # (B,) left-padded: the newest token is last
        step = (obs["attention_mask"].sum(1) - self.prompt_length).clamp(0, self.max_steps)  # (B,)
        logits = self.logits[last]
        if action_mask is not None:
            logits = logits.masked_fill(action_mask == 0, MASKED)
        return logits, self.values[last, step]

    def probs(self) -> torch.Tensor:
        """The policy's full next-token table (V, V)."""
        return torch.softmax(self.logits.detach(), -1)
