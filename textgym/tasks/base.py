"""The task record every task module fills in, and the environment arguments it defaults.

A task module (:mod:`textgym.tasks`) imports this module, never the package: the package finds the
task modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: The reference model of the language tasks (and the base model the commands train): the embedded tiny LM.
DEFAULT_MODEL = "textgym/tiny-lm"
#: The entry points (single, vector) of a task's text environment with the task's defaults.
TEXT_ENTRY_POINTS = ("textgym.tasks:make_env", "textgym.tasks:make_vector_env")


@dataclass(frozen=True)
class ClassifierSpec:
    """An embedded classifier the task's data trains (``python -m textgym.tasks.build``)."""

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
    """Short name: ``task=`` of ``gymnasium.make`` and ``--task`` of the commands."""
    prompts: Callable[[str], list[str]]
    """Prompt texts of a split (``"train"`` or ``"test"``)."""
    reward: Callable[[], Any] | None
    """Builds the task's reward function (None: the score comes from the conversation's turns)."""
    max_new_tokens: int
    """Default episode length limit."""
    max_context: int
    """Default observation length."""
    env_id: str | None = None
    """The id registered for the task's environment (``textgym/Sentiment-v0``); None: not registered."""
    entry_points: tuple[str, str] = TEXT_ENTRY_POINTS
    """(single, vector) entry points of ``env_id``: the text environment with the task's defaults, or
    the task's own factories where the task takes keywords of its own (tic-tac-toe's rules)."""
    model: Callable[[], tuple[Any, Any]] | None = None
    """Builds (reference model, tokenizer); None means the embedded ``textgym/tiny-lm``."""
    turns: Callable[[], Any] | None = None
    """Builds the rules of a conversation (:class:`textgym.envs.turns.Turns`); None: one completion per episode."""
    heldout: Callable[[int], tuple[list[str], list[str]]] | None = None
    """Held-out preferred texts and their prompts (each text starts with its prompt), at most ``limit``."""
    judge: Callable[[list[str], list[str], str], dict[str, float]] | None = None
    """(prompts, completions, trained reward's name) -> metrics of an independent judge. The judge's
    headline metrics are named ``judge/...`` (those of :attr:`judge_higher_is_better`); a judge may
    report other metrics beside them under names of their own (``toxicity_rate``, ``off_topic_tips_rate``)."""
    judge_higher_is_better: dict[str, bool] = field(default_factory=dict)
    """For each ``judge/...`` metric, whether higher is better."""
    named_rewards: dict[str, Callable[[], Any]] = field(default_factory=dict)
    """Rewards the task contributes to :func:`textgym.tasks.rewards.make_reward` (e.g. ``sentiment``)."""
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


def env_arguments(task: Task, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The text environment's keyword arguments: ``kwargs``, with the task's default for every one left out or None.

    The defaults: the task's training prompts, reward, rules (``turns``), lengths and reference model
    (with its tokenizer, unless one is given).
    """
    given = dict(kwargs)
    if given.get("prompts") is None:
        given["prompts"] = task.prompts("train")
    if given.get("turns") is None and task.turns is not None:
        given["turns"] = task.turns()
    if given.get("reward_fn") is None and task.reward is not None:
        given["reward_fn"] = task.reward()
    for key in ("max_context", "max_new_tokens"):
        if given.get(key) is None:
            given[key] = getattr(task, key)
    if given.get("model") is None and task.model is not None:
        model, tokenizer = task.model()
        given["model"], given["tokenizer"] = model, tokenizer if given.get("tokenizer") is None else given["tokenizer"]
    if given.get("model") is None:
        given["model"] = DEFAULT_MODEL
    return given
