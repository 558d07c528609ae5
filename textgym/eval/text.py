"""Text metrics for RLHF evaluation: perplexity, distinct-n, score summaries, toxicity rate."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from textgym.rewards.base import RewardFunction, score_batch


@torch.no_grad()
def perplexity(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
               prompts: Sequence[str] | None = None, batch_size: int = 32) -> float:
    """exp(mean negative log-likelihood per token) of ``texts`` under ``model``.

    With ``prompts`` (one per text, each a prefix of its text), only the tokens after the prompt
    count: the perplexity of held-out answers given their questions (``perplexity_heldout`` in
    :func:`textgym.eval.report.evaluate_policy`).

    Example:
        >>> from textgym.models import load_causal_lm, load_tokenizer
        >>> lm, tok = load_causal_lm("textgym/tiny-lm"), load_tokenizer("textgym/tiny-lm")
        >>> perplexity(lm, tok, ["I bought this kettle last week and it was worth every penny."]) < 10
        True
    """
    from textgym.models.logprobs import completion_logprobs

    ids = [tokenizer(t)["input_ids"] for t in texts]
    skip = [max(1, len(tokenizer(p)["input_ids"])) for p in prompts] if prompts else [1] * len(texts)
    pairs = [(seq[:n], seq[n:]) for seq, n in zip(ids, skip, strict=True) if len(seq) > n]
    total, count = 0.0, 0
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        for lp in completion_logprobs(model, [p for p, _ in chunk], [c for _, c in chunk], tokenizer.pad_token_id or 0):
            total, count = total - float(lp.sum()), count + len(lp)
    return math.exp(total / max(count, 1))


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct word n-grams over all word n-grams, pooled over ``texts`` (diversity; 0 if none).

    >>> distinct_n(["a b a b", "a b c"], n=2)
    0.6
    """
    grams = [tuple(words[i:i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def score_summary(scores: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Mean, standard deviation and quartiles of a score distribution.

    >>> score_summary([1.0, 2.0, 3.0, 4.0])["median"]
    2.5
    """
    values = np.asarray(scores, dtype=np.float64)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"mean": float(values.mean()), "std": float(values.std()), "q1": float(q1), "median": float(median),
            "q3": float(q3)}


def toxicity_rate(judge: RewardFunction, prompts: Sequence[str], completions: Sequence[str],
                  threshold: float = 0.5) -> float:
    """Share of completions a politeness judge (probability of "polite") scores below ``threshold``.

    >>> from textgym.rewards import ClassifierReward
    >>> polite = ClassifierReward("textgym/toxicity-classifier", label="polite", output="probability")
    >>> toxicity_rate(polite, ["", ""], ["Thanks, good point.", "Shut up, you idiot."])
    0.5
    """
    return float((score_batch(judge, prompts, completions, warn_dead=False) < threshold).mean())


@torch.no_grad()
def sample_completions(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                       max_new_tokens: int, seed: int = 0) -> list[list[int]]:
    """Sample one completion per prompt (a KV cache per prompt); each ends with EOS unless cut at the limit.

    Tokens are drawn among the tokenizer's (a model may pad its vocabulary past it) on the model's
    device; each step brings the new tokens to the host once.

    >>> from textgym.models import load_causal_lm, load_tokenizer
    >>> lm, tok = load_causal_lm("textgym/tiny-lm"), load_tokenizer("textgym/tiny-lm")
    >>> out = sample_completions(lm, tok, ["I bought this kettle last week and"], 8, seed=0)
    >>> len(out[0]) <= 8
    True
    """
    from textgym.models.kv import SlotKVCache
    from textgym.models.sampling import sample_tokens

    cache = SlotKVCache(model, len(prompts), tokenizer.pad_token_id or 0)
    generator = torch.Generator(device=cache.device).manual_seed(seed)
    logits = cache.start(range(len(prompts)), [tokenizer(p)["input_ids"] for p in prompts])
    out: list[list[int]] = [[] for _ in prompts]
    done = np.zeros(len(prompts), dtype=bool)
    for _ in range(max_new_tokens):
        tokens = sample_tokens(logits[:, :len(tokenizer)], generator)
        for row, token in enumerate(tokens.cpu().tolist()):
            if not done[row]:
                out[row].append(token)
                done[row] = token == tokenizer.eos_token_id
        if done.all():
            break
        logits = cache.step(tokens)
    return out
