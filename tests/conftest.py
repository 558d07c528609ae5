"""Shared fixtures: a word-level tokenizer and a random tiny GPT-2, both built offline.

The tokenizer follows GPT-2's convention that EOS, BOS and pad are one token (id 0), so every
test exercises the pad == EOS case.
"""

from __future__ import annotations

import pytest
import torch

from textgym.models.tiny import random_causal_lm, word_tokenizer
from textgym.rewards import KeywordReward

WORDS = [f"w{i}" for i in range(1, 48)]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer():
    return word_tokenizer(WORDS)


@pytest.fixture(scope="session")
def lm(tokenizer):
    return random_causal_lm(len(tokenizer), n_layer=2, n_embd=32, n_positions=64, seed=0)


@pytest.fixture
def env_kwargs(lm, tokenizer):
    """Keyword arguments for ``textgym/TextGeneration-v0`` on the tiny model."""
    return dict(model=lm, tokenizer=tokenizer, prompts=["w1 w2 w3", "w4", "w5 w6", "w7 w8 w9 w10"],
                reward_fn=KeywordReward(["w3", "w5"]), max_context=16, max_new_tokens=6)
