"""Reward functions by short name, for command lines and config files.

``make_reward(spec)`` accepts a name from :data:`NAMED` (or from ``named``) or a ``kind:argument`` spec:

- ``lexicon-sentiment``: VADER, the independent sentiment judge;
- ``keyword:great,fun``, ``length:20``, ``repetition:2``, ``distinct:2``: rule rewards;
- ``classifier:PATH_OR_NAME:LABEL``: any sequence classifier's class logit;
- ``rm:PATH_OR_NAME``: a learned preference reward model (scalar head).

The tasks contribute names of their own (``sentiment``, ``toxicity``, ``helpfulness``: the embedded
classifiers' logits); :func:`textgym.tasks.rewards.make_reward` knows them too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from textgym.rewards.base import RewardFunction
from textgym.rewards.classifier import ClassifierReward, RewardModel
from textgym.rewards.lexicon import LexiconSentiment
from textgym.rewards.rules import DistinctN, KeywordReward, LengthReward, RepetitionPenalty

#: Rewards by name that need no task: VADER.
NAMED: dict[str, Callable[[], RewardFunction]] = {"lexicon-sentiment": LexiconSentiment}

KINDS: dict[str, Callable[[str], RewardFunction]] = {
    "keyword": lambda arg: KeywordReward([w for w in arg.split(",") if w]),
    "length": lambda arg: LengthReward(int(arg)),
    "repetition": lambda arg: RepetitionPenalty(int(arg or 2)),
    "distinct": lambda arg: DistinctN(int(arg or 2)),
    "classifier": lambda arg: ClassifierReward(arg.rsplit(":", 1)[0], label=arg.rsplit(":", 1)[1]),
    "rm": lambda arg: RewardModel(arg),
}


def make_reward(spec: str, named: Mapping[str, Callable[[], RewardFunction]] | None = None) -> RewardFunction:
    """Build the reward described by ``spec`` (module docstring); errors list what is known.

    Args:
        spec: A name or a ``kind:argument`` spec.
        named: More rewards by name, beside :data:`NAMED` (the tasks').

    Example:
        >>> make_reward("length:3").name
        'length[3]'
    """
    names = {**NAMED, **(named or {})}
    if spec in names:
        return names[spec]()
    kind, _, arg = spec.partition(":")
    if kind not in KINDS:
        known = sorted(names) + [f"{k}:..." for k in sorted(KINDS)]
        raise ValueError(f"unknown reward {spec!r}; known rewards: {', '.join(known)}")
    if kind == "classifier" and arg.count(":") < 1:
        example = "classifier:textgym/toxicity-classifier:polite"
        raise ValueError(f"reward {spec!r}: write classifier:MODEL:LABEL, e.g. {example}")
    try:
        return KINDS[kind](arg)
    except ValueError as err:
        if "invalid literal" in str(err):
            raise ValueError(f"reward {spec!r}: {kind} takes a whole number, e.g. {kind}:2") from None
        raise
