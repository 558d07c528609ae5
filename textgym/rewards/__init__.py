"""Reward functions: the batched protocol and its implementations."""

from textgym.rewards.base import (
    DeadRewardWarning,
    RewardError,
    RewardFunction,
    score_batch,
    score_parts,
    score_terms,
)
from textgym.rewards.classifier import ClassifierReward, RewardModel
from textgym.rewards.combine import WeightedSum
from textgym.rewards.lexical import BleuReward, RougeReward
from textgym.rewards.lexicon import LexiconSentiment
from textgym.rewards.rules import DistinctN, KeywordReward, LengthReward, RepetitionPenalty

__all__ = [
    "BleuReward", "ClassifierReward", "DeadRewardWarning", "DistinctN", "KeywordReward", "LengthReward",
    "LexiconSentiment", "RepetitionPenalty", "RewardError", "RewardFunction", "RewardModel", "RougeReward",
    "WeightedSum", "score_batch", "score_parts", "score_terms",
]
