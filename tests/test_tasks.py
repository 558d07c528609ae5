"""The embedded tasks give every env default; unknown names are clear errors."""

from __future__ import annotations

import gymnasium as gym
import pytest

import textgym  # noqa: F401
from textgym.tasks import TASKS, get_task


@pytest.mark.parametrize("name", ["sentiment", "helpfulness", "detox"])
def test_task_prompts_are_held_out(name):
    """The task's train and test prompts are disjoint and plentiful, and its window exceeds its completion length."""
    task = get_task(name)
    train, test = task.prompts("train"), task.prompts("test")
    assert len(train) > 50 and len(test) > 10 and not set(train) & set(test)
    assert task.max_context > task.max_new_tokens


@pytest.mark.parametrize(("env_id", "name"), [("textgym/Sentiment-v0", "sentiment"),
                                              ("textgym/Helpfulness-v0", "helpfulness"),
                                              ("textgym/Detox-v0", "detox")])
def test_variants_use_their_task(env_id, name):
    """Each task's env variant draws the task's train prompts and uses its completion length."""
    env = gym.make(env_id).unwrapped
    _, info = env.reset(seed=0)
    assert info["prompt"] in get_task(name).prompts("train")
    assert env.core.max_new_tokens == get_task(name).max_new_tokens


def test_tiny_task_starts_from_bos_with_its_bigram_reference():
    """TinyLanguage starts from a lone BOS token with 22 actions, and ``tiny`` is a registered task."""
    env = gym.make("textgym/TinyLanguage-v0").unwrapped
    obs, _ = env.reset(seed=0)
    assert obs["attention_mask"].sum() == 1 and env.core.num_actions == 22 and sorted(TASKS)[-1] == "tiny"


def test_explicit_arguments_override_the_task():
    """Explicit prompts and completion length override the task's defaults."""
    env = gym.make("textgym/Detox-v0", prompts=["Comment: hi\nReply:"], max_new_tokens=3).unwrapped
    assert env.reset(seed=0)[1]["prompt"] == "Comment: hi\nReply:" and env.core.max_new_tokens == 3


def test_unknown_task_lists_known_ones():
    """An unknown task name is refused with the list of known tasks."""
    with pytest.raises(ValueError, match=r"unknown task 'poetry'; known tasks: "
                                         r"\['detox', 'helpfulness', 'sentiment', 'tictactoe', 'tiny'\]"):
        gym.make("textgym/TextGeneration-v0", task="poetry")
