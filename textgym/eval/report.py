"""Before/after evaluation of policies on an embedded task: the numbers and plots of an RLHF report.

:func:`evaluate_policy` samples one completion per held-out prompt and measures what the seeds
measure: the reward's score distribution, the KL to a reference model, the perplexity of held-out
preferred texts (the seed 003 metric), distinct-2, and an independent judge. ``textgym demo``,
``textgym train``, ``textgym eval`` and ``benchmarks/rewards.py`` all call it, so their numbers
are comparable.

The judges are independent of the task's default reward: VADER's lexicon for sentiment (the reward
is a classifier), the helpfulness classifier for helpfulness (the pipeline's reward is a reward model
learned from rankings, which also gets ``off_topic_tips_rate``: among answers that give tips, the
share with tips meant for another question), and an insult word list for detox (the reward is the
toxicity classifier).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from textgym.data import synthetic
from textgym.eval.text import distinct_n, perplexity, sample_completions, score_summary, toxicity_rate
from textgym.models.kv import completion_logprobs
from textgym.rewards.base import RewardFunction, score_batch
from textgym.tasks import get_task


def heldout_texts(task: str, limit: int = 300) -> tuple[list[str], list[str]]:
    """Held-out preferred texts of a task and their prompts (each text starts with its prompt).

    Helpfulness: the chosen dialogues; sentiment: positive reviews; detox: polite replies.
    """
    if task == "helpfulness":
        rows = synthetic.dialogues()["test"]
        texts, prompts = list(rows["chosen"]), list(rows["prompt"])
    elif task in ("sentiment", "detox"):
        rows = (synthetic.reviews() if task == "sentiment" else synthetic.replies())["test"]
        rows = rows.filter(lambda r: r["label"] == 1)
        texts = list(rows["text"]) if task == "sentiment" else [p + " " + t for p, t in zip(rows["prompt"],
                                                                                            rows["text"], strict=True)]
        prompts = list(rows["prompt"])
    else:
        return [], []
    return texts[:limit], prompts[:limit]


def judge_scores(task: str, prompts: Sequence[str], completions: Sequence[str], reward_name: str = "",
                 ) -> dict[str, float]:
    """The independent judge's view of completions (module docstring); empty for tasks without one.

    ``reward_name`` is the trained reward's name: a judge never grades its own reward, so sentiment
    trained on VADER is judged by the sentiment classifier's probability instead.
    """
    from textgym.rewards import ClassifierReward, KeywordReward, LexiconSentiment

    if task == "sentiment" and reward_name == "lexicon_sentiment":
        judge = ClassifierReward("textgym/sentiment-classifier", label="positive", output="probability",
                                 text="prompt+completion")
        return {"judge/p_positive": float(score_batch(judge, prompts, completions, warn_dead=False).mean())}
    if task == "sentiment":
        return {"judge/lexicon_sentiment": float(LexiconSentiment()(list(prompts), list(completions)).mean())}
    if task == "helpfulness":
        judge = ClassifierReward("textgym/helpfulness-classifier", label="helpful", output="probability",
                                 text="prompt+completion")
        found = [synthetic.tips_given(p, c) for p, c in zip(prompts, completions, strict=True)]
        with_tips = [other > 0 for own, other in filter(None, found) if own + other > 0]
        return {"judge/p_helpful": float(score_batch(judge, prompts, completions, warn_dead=False).mean()),
                "off_topic_tips_rate": float(np.mean(with_tips)) if with_tips else 0.0}
    if task == "detox":
        insults = KeywordReward(synthetic.INSULTS)(list(prompts), list(completions))
        polite = ClassifierReward("textgym/toxicity-classifier", label="polite", output="probability")
        return {"judge/insult_rate": float((insults > 0).mean()),
                "toxicity_rate": toxicity_rate(polite, prompts, completions)}
    return {}


#: For each judge metric, whether higher is better (the bars of ``benchmarks/rewards.py``).
JUDGE_HIGHER_IS_BETTER = {"judge/lexicon_sentiment": True, "judge/p_positive": True, "judge/p_helpful": True,
                          "judge/insult_rate": False}


def evaluate_policy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: str, reward_fn: RewardFunction,
                    reference: PreTrainedModel | None = None, *, num_prompts: int = 64,
                    max_new_tokens: int | None = None, seed: int = 0, perplexity_texts: int = 300) -> dict[str, Any]:
    """Sample one completion per held-out prompt of ``task`` and measure it.

    Args:
        model: The policy (a causal LM).
        tokenizer: Its tokenizer.
        task: An embedded task name (:data:`textgym.tasks.TASKS`).
        reward_fn: The reward to report (usually the one trained on).
        reference: The model KL is measured to (None: no KL).
        num_prompts: Held-out prompts, one completion each.
        max_new_tokens: Completion length limit (None: the task's).
        seed: Sampling seed.
        perplexity_texts: Held-out preferred texts for the perplexity (0: skip it).

    Returns:
        ``reward`` (summary), ``reward_scores``, ``kl_to_reference``, ``perplexity_heldout``,
        ``distinct_2``, ``tokens_per_s`` (sampling), the judge's metrics, and ``prompts`` / ``samples``.
    """
    spec = get_task(task)
    prompts = spec.prompts("test")[:num_prompts]
    began = time.perf_counter()
    ids = sample_completions(model, tokenizer, prompts, max_new_tokens or spec.max_new_tokens, seed=seed)
    speed = sum(len(c) for c in ids) / (time.perf_counter() - began)
    texts = [tokenizer.decode(c, skip_special_tokens=True) for c in ids]
    scores = score_batch(reward_fn, prompts, texts, warn_dead=False)
    result: dict[str, Any] = {"reward": score_summary(scores), "reward_scores": scores.tolist(),
                              "distinct_2": distinct_n(texts, 2), "tokens_per_s": speed,
                              **judge_scores(task, prompts, texts, reward_fn.name)}
    if reference is model:  # evaluating the reference itself (the "before" of a comparison)
        result["kl_to_reference"] = 0.0
    elif reference is not None:
        prompt_ids = [tokenizer(p)["input_ids"] for p in prompts]
        policy_lp = completion_logprobs(model, prompt_ids, ids, tokenizer.pad_token_id)  # EOS included
        ref_lp = completion_logprobs(reference, prompt_ids, ids, tokenizer.pad_token_id)
        result["kl_to_reference"] = float(np.mean([float((p - r).sum()) for p, r in zip(policy_lp, ref_lp,
                                                                                          strict=True)]))
    held, held_prompts = heldout_texts(task, perplexity_texts)
    if held:
        result["perplexity_heldout"] = perplexity(model, tokenizer, held, held_prompts)
    return {**result, "prompts": prompts, "samples": texts}


def plot_scores(results: dict[str, dict], path: str | Path, title: str = "reward of held-out completions") -> None:
    """Histogram and boxplot of each policy's reward scores, side by side (seed 002's before/after view)."""
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


def metrics_table(results: dict[str, dict]) -> list[str]:
    """A markdown table: one column per policy, one row per scalar metric."""
    names = list(results)
    keys = [k for k in results[names[0]] if k not in ("prompts", "samples", "reward_scores", "tokens_per_s")]
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key in keys:
        cells = [results[n].get(key) for n in names]
        cells = [c["mean"] if isinstance(c, dict) else c for c in cells]
        label = "mean reward" if key == "reward" else key
        lines.append(f"| {label} | " + " | ".join("" if c is None else f"{c:.3f}" for c in cells) + " |")
    return lines
