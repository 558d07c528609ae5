"""Reward functions by short name, for command lines and config files.

``make_reward(spec)`` accepts a name from :data:`NAMED` or a ``kind:argument`` spec:

- ``sentiment``, ``toxicity`` (scores politeness), ``helpfulness``: the embedded classifiers' logits
  (contributed by the tasks, :attr:`textgym.tasks.Task.named_rewards`);
- ``lexicon-sentiment``: VADER, the independent sentiment judge;
- ``keyword:great,fun``, ``length:20``, ``repetition:2``, ``distinct:2``: rule rewards;
- ``classifier:PATH_OR_NAME:LABEL``: any sequence classifier's class logit;
- ``rm:PATH_OR_NAME``: a learned preference reward model (scalar head).
"""

from __future__ import annotations

from collections.abc import Callable

from textgym.rewards.base import RewardFunction
from textgym.rewards.classifier import ClassifierReward, RewardModel
from textgym.rewards.lexicon import LexiconSentiment
from textgym.rewards.rules import DistinctN, KeywordReward, LengthReward, RepetitionPenalty
from textgym.tasks import TASKS

#: Rewards by name: the ones the embedded tasks contribute, and VADER.
NAMED: dict[str, Callable[[], RewardFunction]] = {
    **{name: make for task in TASKS.values() for name, make in task.named_rewards.items()},
    "lexicon-sentiment": LexiconSentiment,
}

KINDS: dict[str, Callable[[str], RewardFunction]] = {
    "keyword": lambda arg: KeywordReward([w for w in arg.split(",") if w]),
    "length": lambda arg: LengthReward(int(arg)),
    "repetition": lambda arg: RepetitionPenalty(int(arg or 2)),
    "distinct": lambda arg: DistinctN(int(arg or 2)),
    "classifier": lambda arg: ClassifierReward(arg.rsplit(":", 1)[0], label=arg.rsplit(":", 1)[1]),
    "rm": lambda arg: RewardModel(arg),
}


def make_reward(spec: str) -> RewardFunction:
    """Build the reward described by ``spec`` (module docstring); errors list what is known.

    Example:
        >>> make_reward("length:3").name
        'length[3]'
    """
    if spec in NAMED:
        return NAMED[spec]()
    kind, _, arg = spec.partition(":")
    if kind not in KINDS:
        known = sorted(NAMED) + [f"{k}:..." for k in sorted(KINDS)]
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
