"""The reward-function protocol, the base class of the built-in rewards, and the checks every call goes through.

A reward function scores finished completions in batches:
``reward_fn(prompts, completions) -> np.ndarray`` of shape (len(prompts),), with a ``name``.
Environments call :func:`score_batch`, never the function directly, so that a NaN, an inf, a
non-number or a wrong shape is an error naming the reward and the input, and a batch whose rewards
are all equal (a dead learning signal) is a warning. A reward may also say where in a completion it
earned each part of its score (a ``parts`` method, checked by :func:`score_parts`), for environments
that pay per token (``credit="token"``).

The built-in rewards derive from :class:`Reward`, which also lets TRL's trainers call them
(``GRPOTrainer(reward_funcs=[ClassifierReward(...)])``): TRL passes ``prompts`` and ``completions``
by keyword with extra keywords of its own, and conversations as lists of messages.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

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


def as_text(item: str | list[dict[str, Any]]) -> str:
    r"""A prompt or completion as text: a string as it is, a conversation in the hh-rlhf text format.

    TRL hands conversational data to reward functions as lists of ``{"role", "content"}`` messages;
    textgym's tasks and classifiers read the hh-rlhf format.

    >>> as_text([{"role": "user", "content": "Hi?"}])
    '\n\nHuman: Hi?\n\nAssistant:'
    >>> as_text([{"role": "assistant", "content": "Hello."}])
    ' Hello.'
    """
    if isinstance(item, str):
        return item
    if not isinstance(item, list) or not all(isinstance(m, dict) and "content" in m for m in item):
        raise TypeError(f"a prompt or completion must be a string or a list of {{'role', 'content'}} messages, "
                        f"got {item!r:.80}")
    text = ""
    for message in item:
        if message.get("role") == "assistant":
            text += (" " if text.endswith("Assistant:") or not text else "\n\nAssistant: ") + message["content"]
        else:
            text += f"\n\nHuman: {message['content']}\n\nAssistant:"
    return text


class Reward:
    """Base class of textgym's rewards: a subclass sets ``name`` and implements :meth:`score`.

    Calling the object scores a batch. It also accepts the keywords TRL's trainers pass to a reward
    function (``completion_ids``, ``trainer_state``, the dataset's other columns), which it ignores,
    and TRL's conversational format (:func:`as_text`).
    """

    name: str

    def score(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """Score ``completions[i]`` as an answer to ``prompts[i]``; returns shape (len(prompts),)."""
        raise NotImplementedError

    @property
    def __name__(self) -> str:
        """The name TRL logs the reward under."""
        return self.name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **trl_keywords: Any) -> np.ndarray:
        """:meth:`score` on texts; TRL's extra keywords are accepted and ignored."""
        return self.score([as_text(p) for p in prompts], [as_text(c) for c in completions])


class DeadRewardWarning(UserWarning):
    """Every reward in a batch was equal: advantages are zero and nothing is learned."""


class RewardError(RuntimeError):
    """A reward function raised while scoring: the message names the reward and the batch; the cause is chained."""


def _call(reward_fn: RewardFunction, method: Any, prompts: Sequence[str], completions: Sequence[str]) -> Any:
    """``method(prompts, completions)`` (the reward, its ``terms`` or its ``parts``), naming the reward if it raises."""
    try:
        return method(list(prompts), list(completions))
    except RewardError:
        raise  # a reward inside this one (a term of a sum) already named itself
    except Exception as err:
        raise RewardError(f"reward {_name(reward_fn)!r} raised {type(err).__name__}: {err} (scoring "
                          f"{len(completions)} completions; the first: prompt {prompts[0]!r:.80}, completion "
                          f"{completions[0]!r:.80})") from err


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
        TypeError: If the result is not numbers (the message names the reward).
        RewardError: If ``reward_fn`` raises (the message names it; the exception it raised is the cause).

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
    return check_scores(reward_fn, prompts, completions, _call(reward_fn, reward_fn, prompts, completions), warn_dead)


def check_scores(reward_fn: RewardFunction, prompts: Sequence[str], completions: Sequence[str], raw: Any,
                 warn_dead: bool = True) -> np.ndarray:
    """The checks of :func:`score_batch` on what ``reward_fn`` returned (``raw``); returns float64 scores."""
    try:
        scores = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"reward {_name(reward_fn)!r} returned {raw!r:.80}, not numbers; it must return one "
                        f"float per completion, shape ({len(prompts)},)") from None
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
            "signal in that batch", DeadRewardWarning, stacklevel=3,
        )
    return scores


def score_terms(
    reward_fn: RewardFunction, prompts: Sequence[str], completions: Sequence[str], warn_dead: bool = True,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Checked scores and the terms they are made of.

    A reward with a ``terms`` method (e.g. a weighted sum) reports each term, and is scored once:
    its score is the sum of its terms. Any other reward is one term under its own name.

    Returns:
        ``(scores, terms)`` where the arrays of ``terms`` sum to ``scores``.

    Raises:
        RewardError: If the reward (or its ``terms``) raises, naming it; plus :func:`score_batch`'s checks.
    """
    if not hasattr(reward_fn, "terms"):
        scores = score_batch(reward_fn, prompts, completions, warn_dead=warn_dead)
        return scores, {_name(reward_fn): scores}
    if not completions:
        raise ValueError(f"reward {_name(reward_fn)!r} was given no completions; score at least one")
    terms = {name: np.asarray(value, dtype=np.float64)
             for name, value in _call(reward_fn, reward_fn.terms, prompts, completions).items()}
    scores = check_scores(reward_fn, prompts, completions, np.sum(list(terms.values()), axis=0), warn_dead)
    return scores, terms


def score_parts(
    reward_fn: RewardFunction, prompts: Sequence[str], completions: Sequence[str], warn_dead: bool = True,
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Checked scores, and the parts each is made of, for a reward with a ``parts`` method.

    ``reward_fn.parts(prompts, completions)`` returns, per completion, ``(ends, values)``: where in
    the completion (a character offset) each part was earned, and the part. The score is the sum of
    the parts (:meth:`textgym.rewards.RewardModel.parts` shares a reward model's score out per token).

    Raises:
        TypeError: If the reward has no ``parts`` method.
        ValueError: If it returns the wrong number of completions, offsets outside the completion,
            mismatched lengths or non-finite parts (the message names the reward and the input).
        RewardError: If its ``parts`` method raises (the message names the reward).
    """
    parts_fn = getattr(reward_fn, "parts", None)
    if not callable(parts_fn):
        raise TypeError(f"reward {_name(reward_fn)!r} cannot say where in a completion its score was earned (it has "
                        "no parts method); use credit='end', or a reward with parts such as RewardModel")
    if not completions:
        raise ValueError(f"reward {_name(reward_fn)!r} was given no completions; score at least one")
    parts = list(_call(reward_fn, parts_fn, prompts, completions))
    if len(parts) != len(completions):
        raise ValueError(f"reward {_name(reward_fn)!r} returned parts for {len(parts)} completions, not "
                         f"{len(completions)}; return one (ends, values) pair per completion")
    checked = []
    for prompt, completion, (ends, values) in zip(prompts, completions, parts, strict=True):
        ends, values = np.asarray(ends, dtype=np.int64), np.asarray(values, dtype=np.float64)
        if ends.shape != values.shape or ends.ndim != 1:
            raise ValueError(f"reward {_name(reward_fn)!r}: the parts of completion {completion!r} have "
                             f"{ends.size} offsets and {values.size} values; give one offset per part, in a flat list")
        outside = ends[(ends < 0) | (ends > len(completion))]
        if len(outside):
            raise ValueError(f"reward {_name(reward_fn)!r}: a part of completion {completion!r} (prompt {prompt!r}) "
                             f"ends at character {int(outside[0])}, outside its {len(completion)} characters")
        checked.append((ends, values))
    sums = np.array([values.sum() for _, values in checked])
    return check_scores(reward_fn, prompts, completions, sums, warn_dead), checked


def _name(reward_fn: RewardFunction) -> str:
    return getattr(reward_fn, "name", type(reward_fn).__name__)
