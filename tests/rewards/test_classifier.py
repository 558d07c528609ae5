"""ClassifierReward on the embedded classifiers."""

from __future__ import annotations

import numpy as np
import pytest

from textgym.data import synthetic
from textgym.rewards import ClassifierReward, RewardFunction, score_batch


def test_sentiment_logit_separates_held_out_reviews():
    """The positive logit separates held-out reviews: its sign matches the label for at least 95%."""
    test = synthetic.reviews()["test"].select(range(200))
    reward = ClassifierReward("textgym/sentiment-classifier", label="positive")
    assert isinstance(reward, RewardFunction) and reward.name == "classifier[positive]"
    scores = score_batch(reward, [""] * len(test), test["text"])
    labels = np.array(test["label"])
    assert scores[labels == 1].min() > np.median(scores[labels == 0])
    assert ((scores > 0) == (labels == 1)).mean() >= 0.95


def test_prompt_plus_completion_and_probability():
    """Scoring prompt + completion as a probability puts the helpful answer above 0.5, the dismissive below."""
    reward = ClassifierReward("textgym/helpfulness-classifier", label="helpful", output="probability",
                              text="prompt+completion")  # trained on question + answer
    row = synthetic.dialogues()["test"][0]
    helpful, dismissive = (row["completions"][row["ranking"].index(rank)] for rank in (1, 4))
    scores = reward([row["prompt"]] * 2, [helpful, dismissive])
    assert 0 <= scores[1] < 0.5 < scores[0] <= 1


def test_empty_completion_is_scored():
    """An empty completion gets a finite score."""
    reward = ClassifierReward("textgym/sentiment-classifier", label="positive")
    assert np.isfinite(reward(["x"], [""])).all()


def test_unknown_label_lists_the_labels():
    """An unknown label is refused with the classifier's labels."""
    with pytest.raises(ValueError, match=r"no label 'happy'; its labels are \['negative', 'positive'\]"):
        ClassifierReward("textgym/sentiment-classifier", label="happy")
