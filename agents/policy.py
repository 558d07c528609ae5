"""A causal LM as a policy over tokens, with an optional value head on its trunk.

:class:`LMPolicy` is the module the language-model algorithms train (and that data parallelism
wraps). Its forward scores the last K tokens of left-padded sequences in one teacher-forced pass,
through :func:`textgym.models.logprobs.token_logprobs` (the output head in chunks: no full
(batch x tokens x vocabulary) fp32 logits). The value head reads the trunk's last hidden state,
detached, so its loss never moves the LM: a value loss on raw returns would otherwise push the LM
far from the reference without raising the reward (on the detox case of ``benchmarks/rewards.py``
this and GAE lambda 1 took PPO's KL to the reference from 12.4 to 1.2 nats per reply).

The policy is the distribution the sampler draws from: its log-probabilities are taken at the
sampling temperature, top-k and top-p (``sampling``), so the PPO ratio is the sampling policy's and
is exactly 1 on the first minibatch of an update.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

from textgym.models import model_device, no_progress_bars
from textgym.models.logprobs import token_logprobs
from textgym.models.sampling import Sampling


class LMPolicy(nn.Module):
    """A causal LM (plain or with LoRA adapters) as a token policy, with an optional scalar value head.

    Args:
        model: Any Hugging Face causal LM, or a peft model.
        value_head: Add a value head (PPO); the head's weights are fp32 whatever the LM's dtype.
        value_trunk_grad: Let the value loss train the LM too (a shared actor-critic trunk, as in
            PPO for games); off by default, so the value head only reads the LM.
        sampling: The temperature, top-k and top-p the policy samples at (default: the LM's own distribution).
    """

    def __init__(self, model: PreTrainedModel, value_head: bool = True, value_trunk_grad: bool = False,
                 sampling: Sampling | None = None) -> None:
        super().__init__()
        self.model = model
        self.sampling = sampling or Sampling()
        self.value_trunk_grad = value_trunk_grad
        self.value_head: nn.Linear | None = None
        if value_head:
            embeddings: Any = model.get_input_embeddings()  # an nn.Embedding, typed as any nn.Module
            self.value_head = nn.Linear(embeddings.embedding_dim, 1, device=model_device(model))
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, num_targets: int,
                num_actions: int | None = None, entropy: bool = False, action_mask: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Log-probabilities, entropies (if asked) and values (if a head) of the last ``num_targets`` tokens, (B, K).

        ``action_mask`` (B, K, A), where given, restricts each distribution to the allowed actions; each is
        then taken at ``sampling``'s temperature, top-k and top-p (a scored token is never cut).
        """
        scores = token_logprobs(self.model, input_ids, attention_mask, num_targets, num_actions=num_actions,
                                entropy=entropy, hidden=self.value_head is not None, allowed=action_mask,
                                sampling=self.sampling)
        values = None
        if self.value_head is not None and scores.hidden is not None:  # asked for hidden states with the head
            hidden = scores.hidden if self.value_trunk_grad else scores.hidden.detach()
            values = self.value_head(hidden.float()).squeeze(-1)  # (B, K)
        return scores.logprobs, scores.entropy, values

    def save_pretrained(self, path: str | Path) -> None:
        """The LM with ``save_pretrained`` (plain transformers, or peft for adapters) and ``value_head.safetensors``."""
        adapters: dict[str, Any] = {}
        if hasattr(self.model, "peft_config"):
            adapters["save_embedding_layers"] = False  # no hub look-up
        with no_progress_bars():
            self.model.save_pretrained(path, safe_serialization=True, **adapters)
        if self.value_head is not None:
            save_file(self.value_head.state_dict(), Path(path) / "value_head.safetensors")

    def load_value_head(self, path: str | Path) -> None:
        """Read ``value_head.safetensors`` from ``path`` if there is one (a plain LM folder keeps a fresh head)."""
        head = Path(path) / "value_head.safetensors"
        if self.value_head is not None and head.is_file():
            self.value_head.load_state_dict(load_file(head, device=str(model_device(self.value_head))))
