"""SlotKVCache and the sampler: incremental logits equal full forwards; samples follow softmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from textgym.models.kv import SlotKVCache
from textgym.models.sampling import sample_tokens


def full_logits(lm, seq):
    """Return the last position's logits from one plain forward over ``seq``."""
    with torch.no_grad():
        return lm(seq[None]).logits[0, -1]


def test_incremental_logits_equal_full_forward_with_staggered_restarts(lm):
    """Cached logits match full forwards while slots restart at staggered times, and dead columns are trimmed."""
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
    """Starting slots in any order gives each prompt's logits, and the next step follows each slot's own sequence."""
    cache = SlotKVCache(lm, num_slots=3, pad_id=0)
    prompts = [torch.tensor([1, 2]), torch.tensor([3]), torch.tensor([4, 5, 6])]
    logits = cache.start([2, 0, 1], prompts)
    for row, seq in enumerate(prompts):
        torch.testing.assert_close(logits[row], full_logits(lm, seq), atol=1e-4, rtol=0)
    step = cache.step(torch.tensor([7, 7, 7]))
    by_slot = {2: prompts[0], 0: prompts[1], 1: prompts[2]}
    for slot, seq in by_slot.items():
        torch.testing.assert_close(step[slot], full_logits(lm, torch.cat([seq, torch.tensor([7])])), atol=1e-4, rtol=0)


def test_environment_turns_restarts_and_steps_in_any_mix_equal_full_forwards(lm):
    """extend() leaves holes in the other slots' columns; packing them keeps every slot's logits exact."""
    rng = np.random.default_rng(1)
    vocab = lm.config.vocab_size
    seqs = [list(rng.integers(1, vocab, n)) for n in (2, 4, 1, 3, 5)]
    cache = SlotKVCache(lm, num_slots=5, pad_id=0)
    logits = cache.start(range(5), seqs)
    for t in range(60):
        tokens = rng.integers(0, vocab, 5)
        logits = cache.step(tokens)
        seqs = [s + [int(tokens[i])] for i, s in enumerate(seqs)]
        turn = sorted(rng.choice(5, size=int(rng.integers(1, 4)), replace=False).tolist())
        if t % 3 == 0:  # an environment writes 1-6 tokens into some slots
            added = [list(rng.integers(0, vocab, int(rng.integers(1, 7)))) for _ in turn]
            logits[turn] = cache.extend(turn, added)
            for slot, extra in zip(turn, added, strict=True):
                seqs[slot] = seqs[slot] + extra
        if t % 7 == 6 or max(len(s) for s in seqs) > 40:  # and some episodes end and restart
            turn = sorted(set(turn) | {i for i, s in enumerate(seqs) if len(s) > 40})
            fresh = [list(rng.integers(1, vocab, int(rng.integers(1, 6)))) for _ in turn]
            logits[turn] = cache.start(turn, fresh)
            for slot, prompt in zip(turn, fresh, strict=True):
                seqs[slot] = prompt
        for slot, seq in enumerate(seqs):
            torch.testing.assert_close(logits[slot], full_logits(lm, torch.tensor(seq)), atol=1e-4, rtol=0)
        assert cache.length <= 2 * max(len(s) for s in seqs) + 12  # dead columns and holes are packed away


def test_sample_tokens_follows_softmax():
    """Sampled token frequencies follow the softmax, and a token with logit -inf is never drawn."""
    logits = torch.tensor([[0.0, 1.0, 2.0, -float("inf")], [3.0, 0.0, 0.0, 0.0]]).repeat(20000, 1)
    tokens = sample_tokens(logits, torch.Generator().manual_seed(0)).view(20000, 2)
    for row in range(2):
        freq = np.bincount(tokens[:, row].numpy(), minlength=4) / 20000
        np.testing.assert_allclose(freq, torch.softmax(logits[row], -1).numpy(), atol=0.012)
    assert (tokens[:, 0] != 3).all()


def test_sample_tokens_temperature():
    """Sampling at temperature 0.25 follows the softmax of logits divided by it; temperature 0 is refused."""
    logits = torch.tensor([[0.0, 2.0]]).repeat(20000, 1)
    cold = sample_tokens(logits, torch.Generator().manual_seed(1), temperature=0.25).float().mean()
    assert cold.item() == pytest.approx(torch.softmax(torch.tensor([0.0, 8.0]), -1)[1].item(), abs=0.01)
    with pytest.raises(ValueError, match="temperature"):
        sample_tokens(logits, temperature=0)


def test_output_head_reads_contiguous_hidden_states(lm):
    """Prompts, steps and environment turns hand the head a contiguous copy of the last states, never a strided slice.

    A slice of the hidden states makes a CPU's batched matmul copy the whole head once per sequence
    (5 s instead of 0.03 s for Qwen2-0.5B's head in bf16).
    """
    seen = []
    lm.get_output_embeddings().register_forward_hook(lambda module, args, out: seen.append(args[0].is_contiguous()))
    cache = SlotKVCache(lm, num_slots=2, pad_id=0)
    cache.start([0, 1], [[1, 2, 3], [4, 5]])
    cache.step(torch.tensor([6, 7]))
    cache.extend([1], [[8, 9, 10]])
    assert seen == [True, True, True]
