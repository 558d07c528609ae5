r"""The detox task: reply to a comment politely.

Prompts are ``"Comment: ...\nReply:"`` from :func:`textgym.data.synthetic.replies`; the reward is the
embedded toxicity classifier's "polite" logit on the reply. The independent judge counts replies
with an insult from the word list (and reports the classifier's toxicity rate); held-out preferred
texts are polite test replies. Registered as ``textgym/Detox-v0``.
"""

from __future__ import annotations

import numpy as np

from textgym.data import synthetic
from textgym.tasks.base import ClassifierSpec, Task, unique


def prompts(split: str) -> list[str]:
    """Comment prompts of a split."""
    return unique(synthetic.replies()[split]["prompt"])


def reward():
    """The embedded toxicity classifier's "polite" logit (a :class:`textgym.rewards.ClassifierReward`)."""
    from textgym.rewards import ClassifierReward

    return ClassifierReward("textgym/toxicity-classifier", label="polite")


def heldout(limit: int) -> tuple[list[str], list[str]]:
    """Polite test replies with their comments."""
    rows = [r for r in synthetic.replies()["test"] if r["label"] == 1][:limit]
    return [r["prompt"] + " " + r["text"] for r in rows], [r["prompt"] for r in rows]


def judge(prompts: list[str], completions: list[str], reward_name: str) -> dict[str, float]:
    """Share of replies with an insult (lower is better), and the classifier's toxicity rate."""
    from textgym.eval.text import toxicity_rate
    from textgym.rewards import ClassifierReward, KeywordReward

    insults = KeywordReward(synthetic.INSULTS)(prompts, completions)
    polite = ClassifierReward("textgym/toxicity-classifier", label="polite", output="probability")
    return {"judge/insult_rate": float(np.mean(insults > 0)),
            "toxicity_rate": toxicity_rate(polite, prompts, completions)}


def classifier_data(split: str) -> tuple[list[str], list[int]]:
    """Replies and their labels (1 polite)."""
    rows = synthetic.replies()[split]
    return list(rows["text"]), list(rows["label"])


TASK = Task(
    "detox", prompts, reward, max_new_tokens=24, max_context=64, env_id="textgym/Detox-v0", heldout=heldout,
    judge=judge, judge_higher_is_better={"judge/insult_rate": False}, named_rewards={"toxicity": reward},
    classifier=ClassifierSpec("toxicity-classifier", ("toxic", "polite"), classifier_data),
    bench_cases={"detox-classifier": "toxicity"},
)
