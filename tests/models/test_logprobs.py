"""Chunked teacher-forced log-probs: equal to the plain forward in values and gradients, never whole logits."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from textgym.models.logprobs import token_logprobs
from textgym.models.sampling import Sampling
from textgym.models.tiny import random_causal_lm

VOCAB, HIDDEN = 97, 32

CONFIGS = {
    "gpt2": GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64),
    "qwen2": Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True),
    "llama": LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False),
}


def batch():
    """Two left-padded sequences of 9 and 12 tokens."""
    torch.manual_seed(0)
    ids = torch.randint(1, VOCAB, (2, 12))
    mask = torch.ones_like(ids)
    ids[0, :3], mask[0, :3] = 0, 0
    return ids, mask


def naive(model, ids, mask, k, allowed=None):
    """Log-probs and entropies of the last ``k`` tokens from the whole (B, W, V) logits (restricted to ``allowed``)."""
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -k - 1:-1].float()
    if allowed is not None:
        logits = logits.masked_fill(~allowed, -1e4)
    logp = torch.log_softmax(logits, -1)
    return logp.gather(-1, ids[:, -k:, None]).squeeze(-1), -(logp.exp() * logp).sum(-1)


@pytest.mark.parametrize("masked", [False, True], ids=["all-tokens", "action-mask"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_chunks_match_the_plain_forward_in_values_and_gradients(name, masked):
    """Every chunk size gives the plain forward's log-probs, entropies and parameter gradients.

    With an action mask (a third of the vocabulary allowed, the targets always), the distribution is
    the one restricted to the allowed tokens, in values and in gradients.
    """
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(CONFIGS[name]).eval()
    twin = copy.deepcopy(model)
    ids, mask = batch()
    allowed = None
    if masked:
        allowed = torch.rand(2, 6, VOCAB) < 0.33
        allowed.scatter_(-1, ids[:, -6:, None], True)
    weights = torch.randn(2, 6)
    expected_lp, expected_ent = naive(twin, ids, mask, 6, allowed)
    (expected_lp * weights + 0.3 * expected_ent).sum().backward()
    for budget in (VOCAB, 5 * VOCAB, 10**9):  # one row per chunk, five, everything at once
        model.zero_grad()
        scores = token_logprobs(model, ids, mask, 6, entropy=True, budget=budget, allowed=allowed)
        torch.testing.assert_close(scores.logprobs, expected_lp, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(scores.entropy, expected_ent, atol=1e-5, rtol=1e-5)
        (scores.logprobs * weights + 0.3 * scores.entropy).sum().backward()
        for (pname, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=pname)


class LargestLogits(TorchDispatchMode):
    """Records the largest tensor of logits (vocabulary-sized last dimension, not the head) made inside the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        """Run the op; measure its tensor outputs."""
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            weight_like = isinstance(tensor, torch.Tensor) and tuple(tensor.shape) == (HIDDEN, VOCAB)  # head.T
            if isinstance(tensor, torch.Tensor) and tensor.dim() and tensor.shape[-1] == VOCAB and not weight_like:
                self.largest = max(self.largest, tensor.numel())
        return out


def test_no_more_than_one_chunk_of_logits_exists_forward_or_backward():
    """With a budget of 4 rows, no tensor of vocabulary width holds more than 4 rows of logits."""
    model = AutoModelForCausalLM.from_config(CONFIGS["qwen2"]).eval()
    ids, mask = batch()
    with LargestLogits() as seen:
        token_logprobs(model, ids, mask, 10, entropy=True, budget=4 * VOCAB).logprobs.sum().backward()
    assert 0 < seen.largest <= 4 * VOCAB
    with LargestLogits() as plain:
        naive(model, ids, mask, 10)[0].sum().backward()
    assert plain.largest >= 2 * 12 * VOCAB > 4 * VOCAB  # the plain forward holds every position's logits


SAMPLINGS = {"temperature": Sampling(0.7), "top-k": Sampling(0.7, top_k=5), "top-p": Sampling(1.3, top_p=0.5),
             "top-k-and-top-p": Sampling(0.7, top_k=20, top_p=0.8)}


def warped(logits, sampling, targets, allowed=None):
    """The sampled distribution's logits by transformers' own warpers (temperature, top-k, top-p), targets kept."""
    scores = logits if allowed is None else logits.masked_fill(~allowed, -float("inf"))
    warpers = [TemperatureLogitsWarper(sampling.temperature)]
    warpers += [TopKLogitsWarper(sampling.top_k)] if sampling.top_k else []
    warpers += [TopPLogitsWarper(sampling.top_p)] if sampling.top_p < 1 else []
    flat = scores.reshape(-1, scores.shape[-1])  # (B * K, V)
    for warper in warpers:
        flat = warper(None, flat)
    out = flat.view_as(scores).clone()
    own = (scores / sampling.temperature).gather(-1, targets[..., None])
    return out.scatter(-1, targets[..., None], own).clamp(min=-1e4)  # the targets stay in; no inf * 0


@pytest.mark.parametrize("masked", [False, True], ids=["all-tokens", "action-mask"])
@pytest.mark.parametrize("name", sorted(SAMPLINGS))
def test_sampling_settings_score_the_distribution_transformers_samples(name, masked):
    """At a temperature, top-k and top-p, each target is scored under generate's warped distribution (target kept).

    Values and gradients equal those of the whole logits through transformers' warpers, in any chunking.
    """
    torch.manual_seed(0)
    sampling = SAMPLINGS[name]
    model = AutoModelForCausalLM.from_config(CONFIGS["qwen2"]).eval()
    twin = copy.deepcopy(model)
    ids, mask = batch()
    allowed = None
    if masked:
        allowed = torch.rand(2, 6, VOCAB) < 0.5
        allowed.scatter_(-1, ids[:, -6:, None], True)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    logits = twin(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -7:-1].float()
    logp = torch.log_softmax(warped(logits, sampling, ids[:, -6:], allowed), -1)
    expected_lp, expected_ent = logp.gather(-1, ids[:, -6:, None]).squeeze(-1), -(logp.exp() * logp).sum(-1)
    assert ((logp.exp() < 1e-30).sum() > 0) == (sampling.truncates or masked)  # a real cut, where there is one
    weights = torch.randn(2, 6)
    (expected_lp * weights + 0.3 * expected_ent).sum().backward()
    for budget in (VOCAB, 5 * VOCAB, 10**9):
        model.zero_grad()
        scores = token_logprobs(model, ids, mask, 6, entropy=True, budget=budget, allowed=allowed, sampling=sampling)
        torch.testing.assert_close(scores.logprobs, expected_lp, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(scores.entropy, expected_ent, atol=1e-5, rtol=1e-5)
        (scores.logprobs * weights + 0.3 * scores.entropy).sum().backward()
        for (pname, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=pname)


@pytest.mark.parametrize(("settings", "message"), [
    ({"temperature": 0}, "temperature must be > 0"), ({"temperature": -1.0}, "temperature must be > 0"),
    ({"temperature": float("nan")}, "temperature must be a finite number"),
    ({"temperature": "hot"}, "temperature must be a finite number"),
    ({"top_k": -1}, "top_k must be a whole number >= 1, or None or 0"), ({"top_k": 2.5}, "top_k must be"),
    ({"top_k": True}, "top_k must be"), ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"), ({"top_p": float("inf")}, "top_p must be a finite number"),
])
def test_bad_sampling_settings_are_named(settings, message):
    """Each bad temperature, top-k or top-p is refused with its name and the range it must be in."""
    with pytest.raises(ValueError, match=message):
        Sampling(**settings)


def test_top_k_0_and_none_and_top_p_1_cut_nothing():
    """``top_k`` None or 0 and ``top_p`` 1 are off; a top-k past the vocabulary keeps it all."""
    logits = torch.randn(3, 7)
    for sampling in (Sampling(), Sampling(top_k=0), Sampling(top_k=None, top_p=1.0), Sampling(top_k=50)):
        torch.testing.assert_close(sampling.logits(logits), logits)


def test_under_no_grad_the_head_keeps_nothing_for_a_backward(monkeypatch):
    """A scoring pass under no_grad (the reference, old log-probs) does not pay for the backward's probabilities."""
    from textgym.models import logprobs as module

    model = random_causal_lm(VOCAB, 1, 16, n_positions=32, seed=0)  # its parameters require grad
    ids = torch.randint(1, VOCAB, (2, 6))
    calls = []
    original = module._ChunkedHead.forward

    def spy(ctx, *args):
        out = original(ctx, *args)
        calls.append(ctx.kept is not None)
        return out

    monkeypatch.setattr(module._ChunkedHead, "forward", staticmethod(spy))
    with torch.no_grad():
        token_logprobs(model, ids, torch.ones_like(ids), 3)
    token_logprobs(model, ids, torch.ones_like(ids), 3).logprobs.sum().backward()
    assert calls == [False, True]
