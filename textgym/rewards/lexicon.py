"""A lexicon sentiment scorer that needs no training: VADER (Hutto and Gilbert, 2014).

Because it shares nothing with the learned classifiers, it is the independent judge against reward
hacking: a policy that fools the sentiment classifier without writing positive text gains no VADER
score.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from textgym.rewards.base import Reward


class LexiconSentiment(Reward):
    """VADER's compound sentiment score in [-1, 1] (positive text scores high).

    Args:
        text: Score the ``"completion"`` alone (default) or ``"prompt+completion"``.

    Example:
        >>> judge = LexiconSentiment()
        >>> judge(["", ""], ["What a wonderful, delightful film.", "Awful and boring."]).round(2)
        array([ 0.82, -0.65])
    """

    def __init__(self, text: Literal["completion", "prompt+completion"] = "completion") -> None:
        if text not in ("completion", "prompt+completion"):
            raise ValueError(f"text must be 'completion' or 'prompt+completion', got {text!r}")
        self.text = text
        self._analyzer = SentimentIntensityAnalyzer()
        self.name = "lexicon_sentiment"

    def score(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """Compound polarity of each text."""
        texts = completions if self.text == "completion" else [p + c for p, c in zip(prompts, completions, strict=True)]
        return np.array([self._analyzer.polarity_scores(t)["compound"] for t in texts], dtype=np.float64)
