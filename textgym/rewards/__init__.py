"""Reward functions: the batched protocol and its implementations."""

from textgym.rewards.base import DeadRewardWarning, RewardFunction, score_batch
from textgym.rewards.classifier import ClassifierReward
from textgym.rewards.rules import KeywordReward, LengthReward

__all__ = ["ClassifierReward", "DeadRewardWarning", "KeywordReward", "LengthReward", "RewardFunction", "score_batch"]
