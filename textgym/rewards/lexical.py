"""Lexical rewards against reference texts: ROUGE (rouge-score) and BLEU (sacrebleu)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import sacrebleu
from rouge_score import rouge_scorer

from textgym.rewards.base import Reward


class _ReferenceReward(Reward):
    """Looks up the references of each prompt."""

    def __init__(self, references: Mapping[str, str | Sequence[str]]) -> None:
        if not references:
            raise ValueError("references is empty; map each prompt to one or more reference texts")
        self.references = {p: [r] if isinstance(r, str) else list(r) for p, r in references.items()}

    def _refs(self, prompt: str) -> list[str]:
        if prompt not in self.references:
            raise KeyError(f"{self.name}: no reference text for the prompt {prompt!r}; add it to references")
        return self.references[prompt]


class RougeReward(_ReferenceReward):
    """ROUGE F-measure of the completion against the prompt's references (the best one counts).

    Args:
        references: Prompt -> reference text or texts.
        variant: ``"rouge1"``, ``"rouge2"`` or ``"rougeL"``.

    Example:
        >>> RougeReward({"q": "the cat sat on the mat"})(["q"], ["the cat sat"]).round(3)
        array([0.667])
    """

    def __init__(self, references: Mapping[str, str | Sequence[str]], variant: str = "rougeL") -> None:
        if variant not in ("rouge1", "rouge2", "rougeL"):
            raise ValueError(f"variant must be rouge1, rouge2 or rougeL, got {variant!r}")
        self.name = variant
        super().__init__(references)
        self.variant = variant
        self._scorer = rouge_scorer.RougeScorer([variant], use_stemmer=True)

    def score(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """Best F-measure over each prompt's references, in [0, 1]."""
        return np.array([max(self._scorer.score(ref, c)[self.variant].fmeasure for ref in self._refs(p))
                         for p, c in zip(prompts, completions, strict=True)], dtype=np.float64)


class BleuReward(_ReferenceReward):
    """Sentence BLEU (sacrebleu, with its default smoothing) against the prompt's references, in [0, 1].

    Example:
        >>> BleuReward({"q": "the cat sat on the mat"})(["q"], ["the cat sat on the mat"])
        array([1.])
    """

    def __init__(self, references: Mapping[str, str | Sequence[str]]) -> None:
        self.name = "bleu"
        super().__init__(references)

    def score(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """BLEU / 100 per completion."""
        return np.array([sacrebleu.sentence_bleu(c, self._refs(p)).score / 100
                         for p, c in zip(prompts, completions, strict=True)], dtype=np.float64)
