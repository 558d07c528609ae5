"""The embedded-model build is deterministic (checked on a small slice of the corpus)."""

from __future__ import annotations

import torch

from textgym.data import synthetic
from textgym.models.build import BuildConfig, encode, perplexity, train_lm, train_tokenizer


def test_same_seed_same_tokenizer_and_weights():
    """Two builds from the same corpus give the same tokenizer vocabulary and bit-identical weights."""
    texts = synthetic.corpus()[:300]
    cfg = BuildConfig(vocab_size=400, lm_layers=1, lm_width=32, lm_epochs=1)
    runs = []
    for _ in range(2):
        tok = train_tokenizer(texts, cfg.vocab_size)
        runs.append((tok.get_vocab(), train_lm(cfg, tok, texts).state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_training_lowers_perplexity():
    """Two epochs of training more than halve the untrained model's perplexity."""
    texts = synthetic.corpus()[:400]
    tok = train_tokenizer(texts, 400)
    seqs = encode(tok, texts[:50], 128, eos=True)
    untrained = perplexity(train_lm(BuildConfig(lm_layers=1, lm_width=32, lm_epochs=0), tok, texts), seqs)
    trained = perplexity(train_lm(BuildConfig(lm_layers=1, lm_width=32, lm_epochs=2), tok, texts), seqs)
    assert trained < 0.5 * untrained
