"""A tiny language with an exactly known reference model: a bigram table over a few dozen words.

:class:`BigramLM` answers the calls the text environment makes of a causal LM (``forward`` with
``input_ids``, ``attention_mask``, ``position_ids``, ``cache``, ``logits_to_keep``, and a
``config`` with ``vocab_size`` and ``max_position_embeddings``), so it plugs into
:class:`textgym.envs.TextGenerationEnv` unchanged. Its next-word distribution depends only on the
last word, so every KL and expected reward of a last-word policy can be computed exactly
(:func:`exact_rollout_stats`), which is what the teaching examples show.
"""

from __future__ import annotations

import functools
import random
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from textgym.models.tiny import word_tokenizer

END = "."  # the tiny language's EOS: a sentence ends the episode
DETERMINERS = ["the", "a"]
ADJECTIVES = ["big", "small", "happy", "red", "old", "good"]
NOUNS = ["cat", "dog", "bird", "child", "ball", "tree"]
VERBS = ["sees", "likes", "chases", "finds"]
EXTRA = ["and", "very", "is"]
WORDS = [*DETERMINERS, *ADJECTIVES, *NOUNS, *VERBS, *EXTRA]


def _sentence(rng: random.Random) -> list[str]:
    def noun_phrase() -> list[str]:
        words = [rng.choice(DETERMINERS)]
        if rng.random() < 0.4:
            words += ["very"] * (rng.random() < 0.2) + [rng.choice(ADJECTIVES[:-1] if rng.random() < 0.9
                                                                   else ADJECTIVES)]
        return words + [rng.choice(NOUNS)]

    subject = noun_phrase()
    if rng.random() < 0.25:
        return [*subject, "is", rng.choice(ADJECTIVES[:-1])]
    sentence = [*subject, rng.choice(VERBS), *noun_phrase()]
    if rng.random() < 0.2:
        sentence += ["and", rng.choice(VERBS), *noun_phrase()]
    return sentence


@functools.cache
def bigram_table(sentences: int = 5000, smoothing: float = 0.01, seed: int = 0) -> np.ndarray:
    """Next-word probabilities (V, V) counted from the grammar's sentences, lightly smoothed.

    Row ``i`` is the distribution after word ``i`` (id 0 is ``"."``, also the start of every
    sentence). "good" is rare (the rewarded word of the reward-hacking lesson), and every transition
    keeps a little probability, so every KL stays finite.
    """
    ids = {w: i for i, w in enumerate([END, *WORDS])}
    counts = np.full((len(ids), len(ids)), smoothing)
    rng = random.Random(seed)
    for _ in range(sentences):
        words = [END, *_sentence(rng), END]
        for a, b in zip(words, words[1:], strict=False):
            counts[ids[a], ids[b]] += 1
    return counts / counts.sum(1, keepdims=True)


class BigramLM(nn.Module):
    """A causal "LM" whose logits at each position are the log-probabilities of a bigram table row.

    Args:
        probs: Next-token probabilities (V, V), rows summing to 1.
        max_positions: Longest context accepted (only checked by the environment).
    """

    logprobs: torch.Tensor
    """(V, V) buffer: ``log p(next | token)``."""

    def __init__(self, probs: np.ndarray, max_positions: int = 512) -> None:
        super().__init__()
        self.register_buffer("logprobs", torch.as_tensor(np.log(probs), dtype=torch.float32))
        self.config = SimpleNamespace(vocab_size=probs.shape[0], max_position_embeddings=max_positions)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache=None, use_cache: bool | None = None,
                logits_to_keep: int | torch.Tensor = 0, **kwargs) -> SimpleNamespace:
        """Logits (B, T, V) = log p(next | token at each position); the cache is passed through."""
        logits = self.logprobs[input_ids]
        if isinstance(logits_to_keep, torch.Tensor):  # positions, as transformers' models take them
            logits = logits[:, logits_to_keep]
        elif logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        return SimpleNamespace(logits=logits, cache=cache)


def tiny_language():
    """(reference model, tokenizer) of the tiny language; ``"."`` is EOS, BOS and pad (id 0).

    >>> model, tokenizer = tiny_language()
    >>> len(tokenizer), tokenizer.decode([1, 5, 9, 0])
    (22, 'the happy cat .')
    """
    return BigramLM(bigram_table()), word_tokenizer(WORDS, eos_token=END)


def exact_rollout_stats(policy_probs: np.ndarray, ref_probs: np.ndarray, reward_token: int,
                        max_new_tokens: int) -> dict[str, float]:
    """Exact per-episode KL(pi || ref), expected reward-token count and length, from BOS (id 0).

    Both policies pick the next token from the last one only; an episode ends on id 0 or after
    ``max_new_tokens`` tokens. The distribution over the last token is propagated step by step.
    """
    kl_rows = (policy_probs * (np.log(policy_probs + 1e-30) - np.log(ref_probs))).sum(1)  # (V,)
    alive = np.zeros(len(ref_probs))
    alive[0] = 1.0  # the episode starts after BOS
    kl = reward = length = 0.0
    for _ in range(max_new_tokens):
        kl += float(alive @ kl_rows)
        length += float(alive.sum())
        step = alive @ policy_probs  # (V,) probability of each next token
        reward += float(step[reward_token])
        alive = step.copy()
        alive[0] = 0.0  # "." ends the episode
    return {"kl": kl, "reward": reward, "length": length}
