"""Frozen half-precision linears computed in fp32, on a device that has no half-precision arithmetic.

A CPU without bf16 instructions (AVX512-BF16, AMX) emulates bf16 matrix products, many times slower
than fp32 ones (see :func:`textgym.models.native_half`), and the backward pass's ``grad @ weight``
slowest of all. With LoRA the base weights are frozen, and almost every product of a training step
(forward, and the backward that carries gradients down to lower layers' adapters) is with them.
:func:`compute_frozen_in_fp32` holds those weights in fp32 on such a device, with the same values
(every bf16 or fp16 number is exact in fp32), and computes their products there; the activations
between layers keep the model's dtype, so the model's outputs, memory for activations and the
adapters' inputs stay as they were, only more precise.

The price is memory: each converted weight takes 4 bytes a parameter instead of 2, and a head tied
to the input embedding gets an fp32 copy beside the shared bf16 weight (for a Qwen2-0.5B-shaped
model with LoRA on its attention: 0.7 GB more for its layers, 0.5 GB for the copy of its head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.pytorch_utils import Conv1D

from textgym.models import native_half


class Fp32Linear(nn.Linear):
    """An ``nn.Linear`` that takes and returns its input's dtype, computing in its weight's dtype.

    :func:`compute_frozen_in_fp32` turns frozen half-precision linears into this class, their weights
    into fp32. Moving the module back to a half dtype (``.to(torch.bfloat16)``) makes it an ordinary
    half-precision linear again.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (nn.Linear's own name)
        """``input @ weight.T + bias`` in the weight's dtype, returned in ``input``'s."""
        return F.linear(input.to(self.weight.dtype), self.weight, self.bias).to(input.dtype)


class Fp32Conv1D(Conv1D):
    """GPT-2's transposed linear (``Conv1D``), computing as :class:`Fp32Linear` does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ weight + bias`` in the weight's dtype, returned in ``x``'s."""
        flat = x.reshape(-1, x.size(-1)).to(self.weight.dtype)
        return torch.addmm(self.bias, flat, self.weight).view(*x.shape[:-1], self.nf).to(x.dtype)


class Fp32CopyLinear(nn.Linear):
    """A frozen linear whose weight is shared (a head tied to the input embedding), computing with an fp32 copy.

    The shared weight keeps its dtype for the other module; the copy is a buffer left out of the
    state dict (``fp32_weight``), so checkpoints and ``save_pretrained`` are unchanged.
    """

    fp32_weight: torch.Tensor

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (nn.Linear's own name)
        """``input @ weight.T + bias`` with the fp32 copy, returned in ``input``'s dtype."""
        bias = None if self.bias is None else self.bias.to(self.fp32_weight.dtype)
        return F.linear(input.to(self.fp32_weight.dtype), self.fp32_weight, bias).to(input.dtype)


_FP32_CLASS: dict[type, type] = {nn.Linear: Fp32Linear, Conv1D: Fp32Conv1D}


def compute_frozen_in_fp32(model: nn.Module, *, device: torch.device | str | None = None, force: bool = False) -> int:
    """Compute every frozen half-precision linear of ``model`` in fp32 where its device emulates the half dtype.

    A linear (``nn.Linear``, or GPT-2's ``Conv1D``) qualifies when none of its parameters requires a
    gradient, its weight is bf16 or fp16, and the device has no arithmetic for that dtype
    (:func:`textgym.models.native_half`; ``force=True`` converts it anyway, for tests and
    comparisons). Its weight and bias become fp32 parameters in place (same values) and its class
    :class:`Fp32Linear` (:class:`Fp32Conv1D`); an ``nn.Linear`` whose weight another module shares
    (a head tied to the input embedding) keeps it and computes with an fp32 copy instead
    (:class:`Fp32CopyLinear`). The LM agents call it on their policy (a LoRA base is frozen), so the
    reference with the adapters off computes the same way.

    Args:
        model: Any module; it is changed in place.
        device: Where the model will compute (default: where each weight is now); pass it when the
            model is still to be moved, so a GPU keeps its half-precision weights.
        force: Convert whatever the device.

    Returns:
        How many linears were converted (0 on a GPU or a CPU with bf16 instructions).

    Example:
        >>> from textgym.models.tiny import random_causal_lm
        >>> model = random_causal_lm(50, 1, 16, seed=0).to(torch.bfloat16).requires_grad_(False)
        >>> compute_frozen_in_fp32(model, force=True) > 0
        True
        >>> model(torch.tensor([[1, 2, 3]])).logits.dtype
        torch.bfloat16
    """
    owners: dict[int, int] = {}
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            owners[id(parameter)] = owners.get(id(parameter), 0) + 1
    converted = 0
    for module in model.modules():
        fp32_class = _FP32_CLASS.get(type(module))
        if fp32_class is None or not isinstance(module, (nn.Linear, Conv1D)):
            continue
        if module.weight.dtype not in (torch.bfloat16, torch.float16):
            continue
        parameters = list(module.parameters(recurse=False))
        if any(p.requires_grad for p in parameters):
            continue
        if not force and native_half(module.weight.device if device is None else device, module.weight.dtype):
            continue
        if any(owners[id(p)] > 1 for p in parameters):
            if fp32_class is Fp32Linear:  # a tied head: an fp32 copy beside the shared weight
                module.register_buffer("fp32_weight", module.weight.detach().float(), persistent=False)
                module.__class__ = Fp32CopyLinear
                converted += 1
            continue
        module.weight = nn.Parameter(module.weight.detach().float(), requires_grad=False)
        if module.bias is not None:
            module.bias = nn.Parameter(module.bias.detach().float(), requires_grad=False)
        module.__class__ = fp32_class
        converted += 1
    return converted
