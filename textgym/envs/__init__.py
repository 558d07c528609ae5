"""Environments: text generation (single and vector) and the toy and teaching environments."""

from textgym.envs.core import GenerationCore, PromptTruncatedWarning
from textgym.envs.text_generation import TextGenerationEnv
from textgym.envs.text_generation_vector import TextGenerationVectorEnv
from textgym.envs.turn_level import TurnLevel

__all__ = ["GenerationCore", "PromptTruncatedWarning", "TextGenerationEnv", "TextGenerationVectorEnv", "TurnLevel"]
