"""Rule rewards: scores computed from the completion text by a fixed rule, no model needed."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from textgym.rewards.base import Reward


class KeywordReward(Reward):
    """Counts occurrences of keywords (whole words, case-insensitive) in each completion.

    Args:
        keywords: The words to count.
        weight: Reward per occurrence.
        cap: Most occurrences that count, or None for no cap (a cap limits reward hacking by
            repetition).

    Example:
        >>> KeywordReward(["great", "fun"])(["p", "p"], ["great fun, GREAT", "dull"])
        array([3., 0.])
    """

    def __init__(self, keywords: Sequence[str], weight: float = 1.0, cap: int | None = None) -> None:
        if not keywords:
            raise ValueError("KeywordReward needs at least one keyword")
        words = "|".join(re.escape(k) for k in keywords)
        self._pattern = re.compile(rf"\b(?:{words})\b", re.IGNORECASE)
        self.weight = weight
        self.cap = cap
        shown = ",".join(keywords[:6]) + (f",...{len(keywords)} words" if len(keywords) > 6 else "")
        self.name = f"keyword[{shown}]"

    def score(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """Return ``weight * min(count, cap)`` per completion."""
        counts = np.array([len(self._pattern.findall(c)) for c in completions], dtype=np.float64)
        if self.cap is not None:
            counts = np.minimum(counts, self.cap)
        return self.weight * counts


class LengthReward(Reward):
    """Minus the distance between the completion's word count and a target.

    Args:
        target: The desired number of whitespace-separated words.

    Example:
        >>> LengthReward(target=3)(["p", "p"], ["one two three", "one"])
        array([ 0., -2.])
    """

    def __init__(self, target: int) -> None:
        if target < 0:
            raise ValueError(f"LengthReward target must be >= 0 words, got {target}")
        self.target = target
        self.name = f"length[{target}]"

    def score(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """Return ``-|words - target|`` per completion."""
        lengths = np.array([len(c.split()) for c in completions], dtype=np.float64)
        return 0.0 - np.abs(lengths - self.target)  # 0.0 - x: no negative zero


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


class RepetitionPenalty(Reward):
    """Minus the share of repeated word n-grams in each completion (0 when nothing repeats).

    Args:
        n: n-gram size.
        weight: Scale of the penalty.

    Example:
        >>> RepetitionPenalty(n=1)(["p", "p"], ["good good good good", "a fine film"])
        array([-0.75,  0.  ])
    """

    def __init__(self, n: int = 2, weight: float = 1.0) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n, self.weight = n, weight
        self.name = f"repetition[{n}]"

    def score(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """``-weight * (1 - distinct / total)`` over each completion's n-grams."""
        out = []
        for text in completions:
            grams = _ngrams(text.split(), self.n)
            out.append(0.0 if not grams else -self.weight * (1 - len(set(grams)) / len(grams)))
        return np.array(out, dtype=np.float64) + 0.0  # + 0.0: no negative zero


class DistinctN(Reward):
    """Distinct-n of each completion: distinct word n-grams over all n-grams (0 for none).

    Example:
        >>> DistinctN(n=2)(["p", "p"], ["a b a b", "a b c"])
        array([0.66666667, 1.        ])
    """

    def __init__(self, n: int = 2) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n = n
        self.name = f"distinct[{n}]"

    def score(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """Per-completion distinct-n ratio in [0, 1]."""
        ratios = []
        for text in completions:
            grams = _ngrams(text.split(), self.n)
            ratios.append(len(set(grams)) / len(grams) if grams else 0.0)
        return np.array(ratios, dtype=np.float64)
