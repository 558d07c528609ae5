"""Rule rewards: scores computed from the completion text by a fixed rule, no model needed."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np


class KeywordReward:
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
        self.name = f"keyword[{','.join(keywords)}]"

    def __call__(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """Return ``weight * min(count, cap)`` per completion."""
        counts = np.array([len(self._pattern.findall(c)) for c in completions], dtype=np.float64)
        if self.cap is not None:
            counts = np.minimum(counts, self.cap)
        return self.weight * counts


class LengthReward:
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

    def __call__(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """Return ``-|words - target|`` per completion."""
        lengths = np.array([len(c.split()) for c in completions], dtype=np.float64)
        return 0.0 - np.abs(lengths - self.target)  # 0.0 - x: no negative zero
