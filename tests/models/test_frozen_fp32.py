"""Frozen half-precision linears computed in fp32 where the device emulates the half dtype."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config

from agents.lora import lora_policy
from textgym.models import load_causal_lm
from textgym.models.logprobs import split_model, token_logprobs
from textgym.models.precision import Fp32Conv1D, Fp32CopyLinear, Fp32Linear, compute_frozen_in_fp32
from textgym.models.tiny import random_causal_lm


def tiny_qwen(tied: bool = True) -> torch.nn.Module:
    """A 2-layer Qwen2 (``nn.Linear`` projections), random, fp32."""
    config = Qwen2Config(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                         tie_word_embeddings=tied)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


def kinds(model: torch.nn.Module) -> dict[type, int]:
    """How many modules of each fp32-computing class ``model`` has."""
    counts: dict[type, int] = {}
    for module in model.modules():
        if type(module) in (Fp32Linear, Fp32Conv1D, Fp32CopyLinear):
            counts[type(module)] = counts.get(type(module), 0) + 1
    return counts


@pytest.mark.parametrize("build, klass", [(tiny_qwen, Fp32Linear), (lambda: random_causal_lm(64, 2, 32, seed=0),
                                                                      Fp32Conv1D)])
def test_frozen_bf16_linears_compute_in_fp32_and_keep_the_models_dtype(build, klass):
    """Every frozen linear computes in fp32 (a tied head with a copy); outputs stay bf16, near the fp32 products'."""
    full = build()
    half = copy.deepcopy(full).to(torch.bfloat16).requires_grad_(False)
    exact = copy.deepcopy(half).float()  # the bf16 weights, every product in fp32
    keys = set(half.state_dict())
    converted = compute_frozen_in_fp32(half, force=True)
    assert converted == sum(kinds(half).values()) > 1 and set(kinds(half)) == {klass, Fp32CopyLinear}
    head = half.get_output_embeddings()
    assert type(head) is Fp32CopyLinear and head.weight is half.get_input_embeddings().weight  # still tied
    assert head.weight.dtype == torch.bfloat16 and set(half.state_dict()) == keys  # the copy is not saved
    assert split_model(half) is not None  # teacher forcing still runs the head a chunk at a time
    ids = torch.tensor([[1, 5, 9, 3, 7]])
    with torch.no_grad():
        logits = half(ids).logits
        target = exact(ids).logits
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float(), target, atol=1e-2, rtol=2e-2)


def test_trainable_shared_and_natively_computed_linears_are_left_alone():
    """Trainable weights, weights on a device with half arithmetic, and fp32 weights are not converted."""
    model = tiny_qwen(tied=False).to(torch.bfloat16)
    assert compute_frozen_in_fp32(model, force=True) == 0  # everything trains
    model.requires_grad_(False)
    assert compute_frozen_in_fp32(model, device="cuda") == 0  # a GPU multiplies bf16 itself
    assert compute_frozen_in_fp32(tiny_qwen().requires_grad_(False), force=True) == 0  # fp32 already
    assert compute_frozen_in_fp32(model, force=True) == 2 * 7 + 1  # 7 projections a layer, and the untied head
    assert all(p.dtype == torch.float32 for p in model.lm_head.parameters())
    model.to(torch.bfloat16)  # back to half precision: an ordinary bf16 linear again
    with torch.no_grad():
        assert model(torch.tensor([[1, 2]])).logits.dtype == torch.bfloat16


def test_lora_gradients_through_a_converted_base_are_those_of_the_bf16_model():
    """The adapters' gradients through a converted bf16 base match the plain bf16 model's, far inside bf16's error."""
    base = tiny_qwen().to(torch.bfloat16)
    policies = [lora_policy(copy.deepcopy(base), r=4, target_modules=["q_proj", "v_proj"]) for _ in range(3)]
    for policy in policies:
        for name, p in policy.named_parameters():
            if "lora_" in name:  # the same adapters in each (and nonzero B, so gradients reach A)
                torch.nn.init.normal_(p, std=0.1, generator=torch.Generator().manual_seed(len(name)))
    compute_frozen_in_fp32(policies[1], force=True)
    policies[2].float()  # the exact reference
    ids = torch.tensor([[3, 8, 1, 4, 9, 2], [5, 5, 6, 1, 2, 7]])
    grads = []
    for policy in policies:
        token_logprobs(policy, ids, torch.ones_like(ids), 4).logprobs.sum().backward()
        grads.append(torch.cat([p.grad.float().flatten() for n, p in policy.named_parameters() if "lora" in n]))
    difference, error_bf16 = (grads[1] - grads[0]).norm(), (grads[0] - grads[2]).norm()
    assert difference < 0.2 * error_bf16, (difference, error_bf16)


def test_lm_agent_computes_a_frozen_bf16_base_in_fp32_where_bf16_is_emulated(monkeypatch):
    """The LM agents convert a LoRA policy's frozen base on a CPU without bf16 arithmetic, and only there."""
    from agents import agent_class
    from agents.lm import LMConfig
    from textgym.models import load_tokenizer

    tokenizer = load_tokenizer("textgym/tiny-lm")
    for native in (True, False):
        monkeypatch.setattr("textgym.models.precision.native_half", lambda device, dtype, native=native: native)
        policy = lora_policy(load_causal_lm("textgym/tiny-lm", dtype="bf16"), r=4)
        agent_class("rloo")(policy, tokenizer, LMConfig(batch_episodes=4))
        assert bool(kinds(policy)) is not native
