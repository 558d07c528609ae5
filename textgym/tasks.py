"""The embedded RLHF tasks: which prompts, which reward and which lengths each one uses.

``TASKS[name]`` gives the defaults the text-generation environment takes when an argument is left
out: ``gymnasium.make("textgym/Sentiment-v0")`` is the environment with ``task="sentiment"``, and
``textgym/TextGeneration-v0`` with no arguments is the sentiment task. ``tiny`` is the teaching
task: the tiny language of :mod:`textgym.models.bigram`, an exact bigram reference, sentences
started from BOS, and a reward of 1 per "good" (the word a policy learns to overuse when nothing
holds it to the reference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textgym.data import synthetic
from textgym.models.bigram import tiny_language
from textgym.rewards.base import RewardFunction
from textgym.rewards.classifier import ClassifierReward
from textgym.rewards.rules import KeywordReward

DEFAULT_MODEL = "textgym/tiny-lm"


@dataclass(frozen=True)
class Task:
    """An embedded task: prompts, a reward function and episode lengths."""

    name: str
    """Short name, also the registered id's stem."""
    prompts: Callable[[str], list[str]]
    """Prompt texts of a split (``"train"`` or ``"test"``)."""
    reward: Callable[[], RewardFunction]
    """Builds the task's reward function."""
    max_new_tokens: int
    """Default episode length limit."""
    max_context: int
    """Default observation length."""
    model: Callable[[], tuple[Any, Any]] | None = None
    """Builds (reference model, tokenizer); None means the embedded ``textgym/tiny-lm``."""


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


TASKS: dict[str, Task] = {
    "sentiment": Task(
        "sentiment", lambda split: _unique(synthetic.reviews()[split]["prompt"]),
        lambda: ClassifierReward("textgym/sentiment-classifier", label="positive", text="prompt+completion"),
        max_new_tokens=24, max_context=64),
    "helpfulness": Task(
        "helpfulness", lambda split: _unique(synthetic.dialogues()[split]["prompt"]),
        lambda: ClassifierReward("textgym/helpfulness-classifier", label="helpful", text="prompt+completion"),
        max_new_tokens=48, max_context=96),
    "detox": Task(
        "detox", lambda split: _unique(synthetic.replies()[split]["prompt"]),
        lambda: ClassifierReward("textgym/toxicity-classifier", label="polite"),
        max_new_tokens=24, max_context=64),
    "tiny": Task(
        "tiny", lambda split: [""], lambda: KeywordReward(["good"]), max_new_tokens=12, max_context=16,
        model=tiny_language),
}


def get_task(name: str) -> Task:
    """The task called ``name``; the error lists the known tasks."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name]
