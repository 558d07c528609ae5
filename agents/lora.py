"""LoRA reference sharing (peft): the policy is base + adapters, the reference is the base with adapters off.

The environment needs a frozen reference model; with LoRA it can be the very weights the policy
trains on, read with the adapters disabled, so one copy of the base serves both and only the small
adapters get gradients and optimizer state. Policy and reference still keep separate KV caches (the
policy's in its sampler, the reference's in the environment).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from textgym.models import model_device
from textgym.models.logprobs import HeadParts, split_model


def lora_policy(model: PreTrainedModel, r: int = 8, alpha: int = 16, dropout: float = 0.0,
                target_modules: Sequence[str] | None = None) -> PeftModel:
    """Wrap ``model`` with LoRA adapters (its own weights frozen); GPT-2 adapts ``c_attn`` by default."""
    transposed = any(isinstance(m, Conv1D) for m in model.modules())  # GPT-2 stores its linears transposed
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, task_type="CAUSAL_LM", fan_in_fan_out=transposed,
                        target_modules=list(target_modules) if target_modules else None)
    return get_peft_model(model, config)


class AdapterDisabledReference(nn.Module):
    """The base model of a peft policy with its adapters disabled: the reference, sharing every weight.

    Pass it as the environment's ``model``. Calls run under ``disable_adapter()``, so they see the
    base weights exactly, however far the adapters have trained.

    Args:
        policy: The peft-wrapped policy model.

    Example:
        >>> import torch
        >>> from textgym.models.tiny import random_causal_lm
        >>> policy = lora_policy(random_causal_lm(50, 1, 16, seed=0))
        >>> reference = AdapterDisabledReference(policy)
        >>> with torch.no_grad():
        ...     for name, p in policy.named_parameters():
        ...         if "lora_B" in name:
        ...             _ = p.fill_(1.0)  # train the adapters "a lot"
        >>> ids = torch.tensor([[1, 2, 3]])
        >>> base = random_causal_lm(50, 1, 16, seed=0)
        >>> torch.allclose(reference(input_ids=ids).logits, base(ids).logits, atol=1e-5)
        True
        >>> torch.allclose(policy(input_ids=ids).logits, base(ids).logits, atol=1e-5)
        False
    """

    def __init__(self, policy: PeftModel) -> None:
        super().__init__()
        self._policy = (policy,)  # not a submodule: the reference adds no parameters of its own
        self.config = policy.get_base_model().config

    @property
    def device(self) -> torch.device:
        """Where the shared weights are."""
        return model_device(self._policy[0])

    def forward(self, **kwargs):
        """The base model's forward, adapters disabled."""
        with self._policy[0].disable_adapter():
            return self._policy[0](**kwargs)

    def head_parts(self) -> HeadParts | None:
        """The base model's trunk (run with adapters disabled) and head, for chunked teacher forcing."""
        parts = split_model(self._policy[0])
        if parts is None:
            return None

        def trunk(**inputs):
            with self._policy[0].disable_adapter():
                return parts.trunk(**inputs)

        return HeadParts(trunk, parts.head, parts.softcap, parts.scale)
