"""Tiny models and tokenizers built in memory, with no download.

Tests, benchmarks and the teaching envs need a causal LM and a tokenizer that exist offline. These
helpers build a word-level tokenizer over a given word list and a randomly initialised GPT-2 of any
size. The trained embedded models live in :mod:`textgym.models.embedded`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

EOS_TOKEN = "<|endoftext|>"


def word_tokenizer(words: Sequence[str], eos_token: str = EOS_TOKEN) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer: id 0 is ``eos_token`` (also BOS and pad, as in GPT-2).

    Args:
        words: The vocabulary after the EOS token; ids follow list order. Must be unique.
        eos_token: The end-of-sequence token text.

    Returns:
        A fast tokenizer with ``len(tokenizer) == len(words) + 1``. Unknown words map to EOS.

    Example:
        >>> tok = word_tokenizer(["the", "cat", "sat"])
        >>> tok("the cat sat")["input_ids"]
        [1, 2, 3]
        >>> tok.decode([2, 3])
        'cat sat'
    """
    vocab = {eos_token: 0}
    for word in words:
        if word in vocab:
            raise ValueError(f"word_tokenizer: the word {word!r} appears twice in the vocabulary")
        vocab[word] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=eos_token))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=eos_token, bos_token=eos_token, pad_token=eos_token,
        unk_token=eos_token,
    )


def random_causal_lm(
    vocab_size: int, n_layer: int = 2, n_embd: int = 128, n_head: int | None = None,
    n_positions: int = 512, seed: int = 0,
) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 in eval mode, its weights fixed by ``seed``.

    Args:
        vocab_size: Output vocabulary size.
        n_layer: Transformer blocks.
        n_embd: Hidden width.
        n_head: Attention heads; defaults to ``max(1, n_embd // 64)``.
        n_positions: Longest context the model accepts.
        seed: Seed of the weight initialisation.

    Returns:
        The model, with ``eos_token_id = bos_token_id = pad_token_id = 0``.
    """
    config = GPT2Config(
        vocab_size=vocab_size, n_layer=n_layer, n_embd=n_embd,
        n_head=n_head or max(1, n_embd // 64), n_positions=n_positions,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    return model.eval()
