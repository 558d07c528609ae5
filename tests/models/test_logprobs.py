"""Chunked teacher-forced log-probs: equal to the plain forward in values and gradients, never whole logits."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config

from textgym.models.logprobs import token_logprobs

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
