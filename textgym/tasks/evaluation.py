"""Evaluation on a task: :func:`textgym.eval.report.evaluate` with the task's prompts, judge and held-out texts.

``textgym demo``, ``textgym train``, ``textgym eval`` and ``benchmarks/rewards.py`` all call
:func:`evaluate_policy`, so their numbers are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from textgym.eval.report import evaluate
from textgym.rewards.base import RewardFunction
from textgym.tasks import TASKS, get_task


def heldout_texts(task: str, limit: int = 300) -> tuple[list[str], list[str]]:
    """Held-out preferred texts of a task and their prompts (each text starts with its prompt); empty if none."""
    heldout = get_task(task).heldout
    return heldout(limit) if heldout is not None else ([], [])


def judge_scores(task: str, prompts: Sequence[str], completions: Sequence[str], reward_name: str = "",
                 ) -> dict[str, float]:
    """The task's independent judge's view of completions (:attr:`textgym.tasks.Task.judge`); empty if none.

    ``reward_name`` is the trained reward's name: a judge never grades its own reward.
    """
    judge = get_task(task).judge
    return judge(list(prompts), list(completions), reward_name) if judge is not None else {}


def judge_higher_is_better(metric: str) -> bool:
    """Whether a higher value of a ``judge/...`` metric is better (as the task that reports it says)."""
    for task in TASKS.values():
        if metric in task.judge_higher_is_better:
            return task.judge_higher_is_better[metric]
    return True


def evaluate_policy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: str, reward_fn: RewardFunction,
                    reference: PreTrainedModel | None = None, *, num_prompts: int = 64,
                    max_new_tokens: int | None = None, seed: int = 0, perplexity_texts: int = 300) -> dict[str, Any]:
    """Sample one completion per held-out prompt of ``task`` and measure it (:func:`textgym.eval.report.evaluate`).

    Args:
        model: The policy (a causal LM).
        tokenizer: Its tokenizer.
        task: An embedded task name (:data:`textgym.tasks.TASKS`).
        reward_fn: The reward to report (usually the one trained on).
        reference: The model KL is measured to (None: no KL).
        num_prompts: Completions sampled, one per held-out prompt, cycling over the prompts when the task
            has fewer (the helpfulness task holds out 27 questions).
        max_new_tokens: Completion length limit (None: the task's).
        seed: Sampling seed.
        perplexity_texts: Held-out preferred texts for the perplexity (0: skip it).

    Raises:
        ValueError: If ``num_prompts`` < 1 or ``max_new_tokens`` < 1.

    Returns:
        What :func:`textgym.eval.report.evaluate` returns, with the task's judge's metrics.
    """
    spec = get_task(task)
    return evaluate(model, tokenizer, spec.prompts("test"), reward_fn, reference, num_prompts=num_prompts,
                    max_new_tokens=spec.max_new_tokens if max_new_tokens is None else max_new_tokens, seed=seed,
                    judge=spec.judge, heldout=heldout_texts(task, perplexity_texts))
