"""SlotKVCache and the sampler: incremental logits equal full forwards; samples follow softmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from textgym.models.kv import SlotKVCache
from textgym.models.sampling import sample_tokens


def full_logits(lm, seq):
    with torch.no_grad():
        return lm(seq[None]).logits[0, -1]


def test_incremental_logits_equal_full_forward_with_staggered_restarts(lm):
    gen = torch.Generator().manual_seed(0)
    vocab = lm.config.vocab_size
    seqs = [torch.randint(1, vocab, (n,), generator=gen) for n in (3, 5, 1, 7)]
    cache = SlotKVCache(lm, num_slots=4, pad_id=0)
    logits = cache.start(range(4), seqs)
    worst = 0.0
    for t in range(40):
        tokens = torch.randint(0, vocab, (4,), generator=gen)  # includes 0 == pad == EOS
        logits = cache.step(tokens)
        seqs = [torch.cat([s, tokens[i : i + 1]]) for i, s in enumerate(seqs)]
        if t % 6 == 2:  # restart two slots with prompts of new lengths
            fresh = [torch.randint(1, vocab, (n,), generator=gen) for n in (9, 2)]
            logits[[3, 1]] = cache.start([3, 1], fresh)
            seqs[3], seqs[1] = fresh
        for i, seq in enumerate(seqs):
            worst = max(worst, (full_logits(lm, seq) - logits[i]).abs().max().item())
    assert worst < 1e-4
    assert cache.length <= 2 * max(len(s) for s in seqs) + 9  # dead columns are trimmed


def test_start_all_slots_in_any_order(lm):
    cache = SlotKVCache(lm, num_slots=3, pad_id=0)
    prompts = [torch.tensor([1, 2]), torch.tensor([3]), torch.tensor([4, 5, 6])]
    logits = cache.start([2, 0, 1], prompts)
    for row, seq in enumerate(prompts):
        torch.testing.assert_close(logits[row], full_logits(lm, seq), atol=1e-4, rtol=0)
    step = cache.step(torch.tensor([7, 7, 7]))
    by_slot = {2: prompts[0], 0: prompts[1], 1: prompts[2]}
    for slot, seq in by_slot.items():
        torch.testing.assert_close(step[slot], full_logits(lm, torch.cat([seq, torch.tensor([7])])), atol=1e-4, rtol=0)


def test_sample_tokens_follows_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0, -float("inf")], [3.0, 0.0, 0.0, 0.0]]).repeat(20000, 1)
    tokens = sample_tokens(logits, torch.Generator().manual_seed(0)).view(20000, 2)
    for row in range(2):
        freq = np.bincount(tokens[:, row].numpy(), minlength=4) / 20000
        np.testing.assert_allclose(freq, torch.softmax(logits[row], -1).numpy(), atol=0.012)
    assert (tokens[:, 0] != 3).all()


def test_sample_tokens_temperature():
    logits = torch.tensor([[0.0, 2.0]]).repeat(20000, 1)
    cold = sample_tokens(logits, torch.Generator().manual_seed(1), temperature=0.25).float().mean()
    assert cold.item() == pytest.approx(torch.softmax(torch.tensor([0.0, 8.0]), -1)[1].item(), abs=0.01)
    with pytest.raises(ValueError, match="temperature"):
        sample_tokens(logits, temperature=0)
