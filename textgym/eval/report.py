"""Before/after evaluation of policies on an embedded task: the numbers and plots of an RLHF report.

:func:`evaluate` samples one completion per prompt and measures what the seeds measure: the
reward's score distribution, the KL to a reference model, the perplexity of held-out
preferred answers given their prompts, distinct-2, and an independent judge. It takes the prompts, the held-out
texts and the judge as arguments; :func:`textgym.tasks.evaluation.evaluate_policy` takes them from
a task, and ``textgym demo``, ``textgym train``, ``textgym eval`` and ``benchmarks/rewards.py`` all
call it, so their numbers are comparable.

The KL is ``sum_t KL(pi(.|s_t) || pi_ref(.|s_t))`` along each sampled completion, averaged over the
completions: computed from both models' whole next-token distributions at every visited state, it
estimates the sequence-level KL without bias and is never negative (a sampled log-ratio can be).

The held-out texts and the judges belong to the tasks (:mod:`textgym.tasks`); each judge is
independent of the task's reward (VADER for sentiment, the helpfulness classifier and the off-topic
tips rate for the learned helpfulness reward model, an insult word list for detox).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from textgym.eval.text import distinct_n, perplexity, sample_completions, score_summary
from textgym.models import decode
from textgym.models.logprobs import completion_kl
from textgym.rewards.base import RewardFunction, score_batch

#: An independent judge: (prompts, completions, the trained reward's name) -> metrics.
Judge = Callable[[list[str], list[str], str], dict[str, float]]


def evaluate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
             reward_fn: RewardFunction, reference: PreTrainedModel | None = None, *, max_new_tokens: int,
             num_prompts: int = 64, seed: int = 0, judge: Judge | None = None,
             heldout: tuple[list[str], list[str]] = ([], [])) -> dict[str, Any]:
    """Sample one completion per prompt and measure it.

    Args:
        model: The policy (a causal LM).
        tokenizer: Its tokenizer.
        prompts: Held-out prompts, cycled over when there are fewer than ``num_prompts``.
        reward_fn: The reward to report (usually the one trained on).
        reference: The model KL is measured to (None: no KL).
        max_new_tokens: Completion length limit.
        num_prompts: Completions sampled, one per prompt.
        seed: Sampling seed.
        judge: An independent judge, (prompts, completions, the reward's name) -> metrics (None: none).
        heldout: Held-out preferred texts and their prompts, for the perplexity (empty: skip it).

    Raises:
        ValueError: If ``num_prompts`` < 1 or ``max_new_tokens`` < 1.

    Returns:
        ``reward`` (summary), ``reward_scores``, ``kl_to_reference``, ``perplexity_heldout``,
        ``distinct_2``, ``tokens_per_s`` (sampling), the judge's metrics, ``completions`` and
        ``prompts_distinct`` (how many were sampled, for how many prompts), and ``prompts`` / ``samples``.
    """
    if isinstance(num_prompts, bool) or not isinstance(num_prompts, int) or num_prompts < 1:
        raise ValueError(f"num_prompts must be a whole number >= 1 (one completion per held-out prompt), "
                         f"got {num_prompts!r}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    held_out = list(prompts)
    prompts = [held_out[i % len(held_out)] for i in range(num_prompts)]
    began = time.perf_counter()
    ids = sample_completions(model, tokenizer, prompts, max_new_tokens, seed=seed)
    speed = sum(len(c) for c in ids) / (time.perf_counter() - began)
    texts = [decode(tokenizer, c, skip_special_tokens=True) for c in ids]
    scores = score_batch(reward_fn, prompts, texts, warn_dead=False)
    result: dict[str, Any] = {"reward": score_summary(scores), "reward_scores": scores.tolist(),
                              "distinct_2": distinct_n(texts, 2), "tokens_per_s": speed, "completions": len(prompts),
                              "prompts_distinct": min(len(held_out), num_prompts),
                              **(judge(prompts, texts, reward_fn.name) if judge is not None else {})}
    if reference is model:  # evaluating the reference itself (the "before" of a comparison)
        result["kl_to_reference"] = 0.0
    elif reference is not None:  # EOS included; exact per-token KL summed along each sample: never negative
        prompt_ids = [tokenizer(p)["input_ids"] for p in prompts]
        kls = completion_kl(model, reference, prompt_ids, ids, tokenizer.pad_token_id, num_actions=len(tokenizer))
        result["kl_to_reference"] = float(np.mean([float(kl.sum()) for kl in kls]))
    held, held_prompts = heldout
    if held:
        result["perplexity_heldout"] = perplexity(model, tokenizer, held, held_prompts)
    return {**result, "prompts": prompts, "samples": texts}


def plot_scores(results: dict[str, dict], path: str | Path, title: str = "reward of held-out completions") -> None:
    """Histogram and boxplot of each policy's reward scores, side by side: how the whole distribution moved."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    scores = [results[n]["reward_scores"] for n in names]
    fig, (ax_h, ax_b) = plt.subplots(1, 2, figsize=(10, 4))
    ax_h.hist(scores, bins=20, label=names, alpha=0.7)
    ax_h.set(title=title, xlabel="reward", ylabel="completions")
    ax_h.legend()
    ax_b.boxplot(scores, tick_labels=names)
    ax_b.set(title=title, ylabel="reward")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fixed(value: float, digits: int = 3, sign: bool = False) -> str:
    """``value`` with ``digits`` decimals, never ``-0.000``: a value that rounds to zero prints without a minus.

    A KL of -1e-9 (fp32 rounding of a never-negative estimator) reads 0.000, not -0.000.

    >>> fixed(-1e-9), fixed(-0.0004, sign=True), fixed(0.25, 2, sign=True), fixed(-0.25, 2)
    ('0.000', '+0.000', '+0.25', '-0.25')
    """
    rounded = round(float(value), digits) + 0.0  # -0.0 + 0.0 is 0.0
    return f"{rounded:{'+' if sign else ''}.{digits}f}"


def metrics_table(results: dict[str, dict]) -> list[str]:
    """A markdown table: one column per policy, one row per scalar metric."""
    names = list(results)
    hidden = ("prompts", "samples", "reward_scores", "tokens_per_s", "completions", "prompts_distinct")
    keys = [k for k in results[names[0]] if k not in hidden]
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key in keys:
        cells = [results[n].get(key) for n in names]
        cells = [c["mean"] if isinstance(c, dict) else c for c in cells]
        label = "mean reward" if key == "reward" else key
        lines.append(f"| {label} | " + " | ".join("" if c is None else fixed(c) for c in cells) + " |")
    return lines
