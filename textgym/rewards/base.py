"""The reward-function protocol and the checks every reward call goes through.

A reward function scores finished completions in batches:
``reward_fn(prompts, completions) -> np.ndarray`` of shape (len(prompts),), with a ``name``.
Environments call :func:`score_batch`, never the function directly, so that a NaN, an inf or a
wrong shape is an error naming the reward and the input, and a batch whose rewards are all equal
(a dead learning signal) is a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class RewardFunction(Protocol):
    """Scores a batch of completions, one float each. Higher is better.

    Attributes:
        name: A short identifier used in ``info``, logs and error messages.
    """

    name: str

    def __call__(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """Score ``completions[i]`` as an answer to ``prompts[i]``; returns shape (len(prompts),)."""
        ...


class DeadRewardWarning(UserWarning):
    """Every reward in a batch was equal: advantages are zero and nothing is learned."""


def score_batch(
    reward_fn: RewardFunction, prompts: Sequence[str], completions: Sequence[str], warn_dead: bool = True,
) -> np.ndarray:
    """Call ``reward_fn`` and check what it returns.

    An empty completion string is a valid input (an episode that ends on its first token); an
    empty batch is not.

    Args:
        reward_fn: The reward function.
        prompts: The prompts, as text.
        completions: The generated completions, as text, same length as ``prompts``.
        warn_dead: Warn when every score in the batch is equal.

    Returns:
        float64 scores of shape (len(prompts),).

    Raises:
        ValueError: If the batch is empty, the lengths disagree, the result has the wrong shape, or
            any score is NaN or infinite (the message names the reward and the offending prompt and
            completion).

    Example:
        >>> from textgym.rewards.rules import LengthReward
        >>> score_batch(LengthReward(target=2), ["q"], ["a b c"])
        array([-1.])
    """
    if not completions:
        raise ValueError(f"reward {_name(reward_fn)!r} was given no completions; score at least one")
    if len(prompts) != len(completions):
        raise ValueError(
            f"reward {_name(reward_fn)!r}: got {len(prompts)} prompts but {len(completions)} "
            "completions; pass one prompt per completion"
        )
    scores = np.asarray(reward_fn(list(prompts), list(completions)), dtype=np.float64)
    if scores.shape != (len(prompts),):
        raise ValueError(
            f"reward {_name(reward_fn)!r} returned shape {scores.shape} for {len(prompts)} "
            f"completions; it must return one float per completion, shape ({len(prompts)},)"
        )
    bad = np.flatnonzero(~np.isfinite(scores))
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"reward {_name(reward_fn)!r} returned {scores[i]} for prompt {prompts[i]!r} and "
            f"completion {completions[i]!r} ({len(bad)} non-finite of {len(scores)}); "
            "a reward must be a finite number"
        )
    if warn_dead and len(scores) > 1 and np.all(scores == scores[0]):
        warnings.warn(  # one fixed text per reward, so the default filter shows it once, not every step
            f"reward {_name(reward_fn)!r} gave every completion of a batch the same score: no learning "
            "signal in that batch", DeadRewardWarning, stacklevel=2,
        )
    return scores


def score_terms(
    reward_fn: RewardFunction, prompts: Sequence[str], completions: Sequence[str], warn_dead: bool = True,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Checked scores and the terms they are made of.

    A reward with a ``terms`` method (e.g. a weighted sum) reports each term; any other reward is
    one term under its own name.

    Returns:
        ``(scores, terms)`` where the arrays of ``terms`` sum to ``scores``.
    """
    scores = score_batch(reward_fn, prompts, completions, warn_dead=warn_dead)
    if not hasattr(reward_fn, "terms"):
        return scores, {_name(reward_fn): scores}
    terms = reward_fn.terms(list(prompts), list(completions))
    return scores, {name: np.asarray(value, dtype=np.float64) for name, value in terms.items()}


def _name(reward_fn: RewardFunction) -> str:
    return getattr(reward_fn, "name", type(reward_fn).__name__)
