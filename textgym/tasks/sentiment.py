"""The sentiment task: continue the opening of a movie or product review so that it reads positively.

Prompts are review openings from :func:`textgym.data.synthetic.reviews`; the reward is the
embedded sentiment classifier's "positive" logit on prompt + completion. The independent judge is
VADER's lexicon (or, when the reward is VADER itself, the classifier's probability); held-out
preferred texts are positive test reviews. Registered as ``textgym/Sentiment-v0``, and the default
of ``textgym/TextGeneration-v0``.
"""

from __future__ import annotations

import numpy as np

from textgym.data import synthetic
from textgym.tasks.base import ClassifierSpec, Task, unique


def prompts(split: str) -> list[str]:
    """Review openings of a split."""
    return unique(synthetic.reviews()[split]["prompt"])


def reward():
    """The embedded classifier's "positive" logit (a :class:`textgym.rewards.ClassifierReward`)."""
    from textgym.rewards import ClassifierReward

    return ClassifierReward("textgym/sentiment-classifier", label="positive", text="prompt+completion")


def heldout(limit: int) -> tuple[list[str], list[str]]:
    """Positive test reviews and their openings."""
    rows = [r for r in synthetic.reviews()["test"] if r["label"] == 1][:limit]
    return [r["text"] for r in rows], [r["prompt"] for r in rows]


def judge(prompts: list[str], completions: list[str], reward_name: str) -> dict[str, float]:
    """VADER's mean compound score; the classifier's mean P(positive) when the reward is VADER."""
    from textgym.rewards import ClassifierReward, LexiconSentiment, score_batch

    if reward_name == "lexicon_sentiment":
        classifier = ClassifierReward("textgym/sentiment-classifier", label="positive", output="probability",
                                      text="prompt+completion")
        return {"judge/p_positive": float(score_batch(classifier, prompts, completions, warn_dead=False).mean())}
    return {"judge/lexicon_sentiment": float(np.mean(LexiconSentiment()(prompts, completions)))}


def classifier_data(split: str) -> tuple[list[str], list[int]]:
    """Reviews and their labels (1 positive)."""
    rows = synthetic.reviews()[split]
    return list(rows["text"]), list(rows["label"])


TASK = Task(
    "sentiment", prompts, reward, max_new_tokens=24, max_context=64, env_id="textgym/Sentiment-v0", heldout=heldout,
    judge=judge, judge_higher_is_better={"judge/lexicon_sentiment": True, "judge/p_positive": True},
    named_rewards={"sentiment": reward},
    classifier=ClassifierSpec("sentiment-classifier", ("negative", "positive"), classifier_data),
    bench_cases={"sentiment-classifier": "sentiment", "lexicon-sentiment": "lexicon-sentiment",
                 "rule": "keyword:loved,enjoyed,praise,impressed"},
)
