"""The embedded tasks: everything task-specific, one module per task.

A :class:`Task` says which prompts, reward, lengths and reference model an environment uses when
an argument is left out (``gymnasium.make("textgym/Sentiment-v0")`` is the environment with
``task="sentiment"``), and what the rest of textgym needs to know about the task: its held-out
preferred texts (perplexity), its independent judge and the judge's direction, the named rewards
and classifier it contributes, its benchmark cases, and its RLHF data (demonstrations, rankings).
Adding a task is adding a module here (and its data generator) and a line in :data:`TASKS`.

``textgym/TextGeneration-v0`` with no arguments is the sentiment task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MODEL = "textgym/tiny-lm"


@dataclass(frozen=True)
class ClassifierSpec:
    """An embedded classifier the task's data trains (``python -m textgym.models.build``)."""

    name: str
    """Embedded name without the prefix, e.g. ``sentiment-classifier``."""
    labels: tuple[str, str]
    """Class names; index 1 is the positive class of the reward."""
    data: Callable[[str], tuple[list[str], list[int]]]
    """Split -> (texts, labels)."""


@dataclass(frozen=True)
class Task:
    """An embedded task (module docstring). Only the first five fields are required."""

    name: str
    """Short name, also the registered id's stem."""
    prompts: Callable[[str], list[str]]
    """Prompt texts of a split (``"train"`` or ``"test"``)."""
    reward: Callable[[], Any] | None
    """Builds the task's reward function (None: the score comes from the conversation's turns)."""
    max_new_tokens: int
    """Default episode length limit."""
    max_context: int
    """Default observation length."""
    model: Callable[[], tuple[Any, Any]] | None = None
    """Builds (reference model, tokenizer); None means the embedded ``textgym/tiny-lm``."""
    turns: Callable[[], Any] | None = None
    """Builds the rules of a conversation (:class:`textgym.envs.turns.Turns`); None: one completion per episode."""
    heldout: Callable[[int], tuple[list[str], list[str]]] | None = None
    """Held-out preferred texts and their prompts (each text starts with its prompt), at most ``limit``."""
    judge: Callable[[list[str], list[str], str], dict[str, float]] | None = None
    """(prompts, completions, trained reward's name) -> metrics of an independent judge (``judge/...``)."""
    judge_higher_is_better: dict[str, bool] = field(default_factory=dict)
    """For each ``judge/...`` metric, whether higher is better."""
    named_rewards: dict[str, Callable[[], Any]] = field(default_factory=dict)
    """Rewards the task contributes to :func:`textgym.rewards.named.make_reward` (e.g. ``sentiment``)."""
    classifier: ClassifierSpec | None = None
    """The embedded classifier built from the task's data."""
    bench_cases: dict[str, str] = field(default_factory=dict)
    """Benchmark case -> reward spec (``{rm}``: the reward model learned from the task's rankings)."""
    demonstrations: Callable[[], list[str]] | None = None
    """Full texts (prompt + answer) for supervised fine-tuning, if the task has an RLHF pipeline."""
    rankings: Callable[[str], Any] | None = None
    """Split -> rankings rows (``prompt``, ``completions``, ``ranking``) for a reward model."""
    audit: Callable[[Any, Any], dict[str, float]] | None = None
    """(reward function, held-out rankings rows) -> how often the reward prefers the best answer, per kind."""
    utility: Callable[[list[str], list[str]], Any] | None = None
    """(prompts, completions) -> the hidden true utility of each answer: what a simulated labeler ranks by
    (``textgym loop --feedback simulated``), and what the loop reports beside the learned reward."""
    correct: Callable[[str, str], str | None] | None = None
    """(prompt, answer) -> the answer as a simulated labeler would correct it by striking words out, or None when
    it would not (``textgym loop --corrections``: each correction is preferred to the answer it corrects)."""
    users: dict[str, Callable[[list[str], list[str]], Any]] = field(default_factory=dict)
    """Simulated users with tastes of their own, name -> utility like ``utility`` (``textgym personalize``)."""
    metrics: Callable[[list[str], list[str]], dict[str, float]] | None = None
    """(prompts, completions) -> task-specific metrics of the answers, reported by the loop and the demo."""


def unique(values: list[str]) -> list[str]:
    """``values`` without repeats, in order."""
    return list(dict.fromkeys(values))


def get_task(name: str) -> Task:
    """The task called ``name``; the error lists the known tasks."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name]


def _registry() -> dict[str, Task]:
    from textgym.tasks import detox, helpfulness, sentiment, tictactoe, tiny

    return {module.TASK.name: module.TASK for module in (sentiment, helpfulness, detox, tiny, tictactoe)}


#: Every embedded task by name.
TASKS: dict[str, Task] = _registry()
