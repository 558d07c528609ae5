"""Text metrics for RLHF evaluation: perplexity, distinct-n, score summaries, toxicity rate."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from textgym.models.kv import left_pad, positions_from_mask
from textgym.rewards.base import RewardFunction, score_batch


@torch.no_grad()
def perplexity(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
               prompts: Sequence[str] | None = None, batch_size: int = 32) -> float:
    """exp(mean negative log-likelihood per token) of ``texts`` under ``model``.

    With ``prompts`` (one per text, each a prefix of its text), only the tokens after the prompt
    count: the perplexity of held-out answers given their questions, as seed 003 measures it.

    Example:
        >>> from textgym.models import load_causal_lm, load_tokenizer
        >>> lm, tok = load_causal_lm("textgym/tiny-lm"), load_tokenizer("textgym/tiny-lm")
        >>> perplexity(lm, tok, ["I bought this kettle last week and it was worth every penny."]) < 10
        True
    """
    total, count = 0.0, 0
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        seqs = [torch.tensor(tokenizer(t)["input_ids"]) for t in chunk]
        chunk_prompts = prompts[start:start + batch_size] if prompts else []
        skip = [len(tokenizer(p)["input_ids"]) for p in chunk_prompts] or [0] * len(chunk)
        ids, mask = left_pad(seqs, tokenizer.pad_token_id or 0)  # (B, W)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask)).logits.float()
        nll = -torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, W - 1)
        for row, (seq, skipped) in enumerate(zip(seqs, skip, strict=True)):
            scored = nll[row, nll.shape[1] - (len(seq) - 1):][max(0, skipped - 1):]  # tokens after the prompt
            total, count = total + float(scored.sum()), count + len(scored)
    return math.exp(total / max(count, 1))


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct word n-grams over all word n-grams, pooled over ``texts`` (diversity; 0 if none).

    >>> distinct_n(["a b a b", "a b c"], n=2)
    0.6
    """
    grams = [tuple(words[i:i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def score_summary(scores: Sequence[float]) -> dict[str, float]:
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

    >>> from textgym.models import load_causal_lm, load_tokenizer
    >>> lm, tok = load_causal_lm("textgym/tiny-lm"), load_tokenizer("textgym/tiny-lm")
    >>> out = sample_completions(lm, tok, ["I bought this kettle last week and"], 8, seed=0)
    >>> len(out[0]) <= 8
    True
    """
    from textgym.models.kv import SlotKVCache
    from textgym.models.sampling import sample_tokens

    generator = torch.Generator().manual_seed(seed)
    cache = SlotKVCache(model, len(prompts), tokenizer.pad_token_id or 0)
    logits = cache.start(range(len(prompts)), [torch.tensor(tokenizer(p)["input_ids"]) for p in prompts])
    out: list[list[int]] = [[] for _ in prompts]
    done = torch.zeros(len(prompts), dtype=torch.bool)
    for _ in range(max_new_tokens):
        tokens = sample_tokens(logits, generator)
        for row in (~done).nonzero().flatten().tolist():
            out[row].append(tokens[row].item())
            done[row] = tokens[row].item() == tokenizer.eos_token_id
        if bool(done.all()):
            break
        logits = cache.step(tokens)
    return out
