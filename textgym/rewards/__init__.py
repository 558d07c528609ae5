"""Reward functions: the batched protocol and its implementations."""

from textgym.rewards.base import DeadRewardWarning, RewardFunction, score_batch
from textgym.rewards.rules import KeywordReward, LengthReward

__all__ = ["DeadRewardWarning", "KeywordReward", "LengthReward", "RewardFunction", "score_batch"]
