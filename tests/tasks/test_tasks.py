"""The embedded tasks give every env default; unknown names are clear errors."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import pytest

import textgym
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
    assert env.max_new_tokens == get_task(name).max_new_tokens


def test_tiny_task_starts_from_bos_with_its_bigram_reference():
    """TinyLanguage starts from a lone BOS token with 22 actions, and ``tiny`` is a registered task."""
    env = gym.make("textgym/TinyLanguage-v0").unwrapped
    obs, _ = env.reset(seed=0)
    assert obs["attention_mask"].sum() == 1 and env.action_space.n == 22 and sorted(TASKS)[-1] == "tiny"


def test_explicit_arguments_override_the_task():
    """Explicit prompts and completion length override the task's defaults."""
    env = gym.make("textgym/Detox-v0", prompts=["Comment: hi\nReply:"], max_new_tokens=3).unwrapped
    assert env.reset(seed=0)[1]["prompt"] == "Comment: hi\nReply:" and env.max_new_tokens == 3


def test_unknown_task_lists_known_ones():
    """An unknown task name is refused with the list of known tasks."""
    with pytest.raises(ValueError, match=r"unknown task 'poetry'; known tasks: "
                                         r"\['detox', 'greeting', 'helpfulness', 'sentiment', 'tictactoe', 'tiny'\]"):
        gym.make("textgym/TextGeneration-v0", task="poetry")


def test_every_task_with_an_id_is_registered_from_the_task_list():
    """``textgym.ENV_IDS`` holds each task's id (no list kept by hand); ``task=`` picks a task by name."""
    assert {task.env_id for task in TASKS.values() if task.env_id} <= set(textgym.ENV_IDS) <= set(gym.registry)
    assert textgym.ENV_IDS["textgym/Greeting-v0"][2] == {"task": "greeting"}
    env = gym.make("textgym/TextGeneration-v0", task="greeting").unwrapped
    assert env.reset(seed=0)[1]["prompt"] in get_task("greeting").prompts("train") and env.max_context == 48


def test_importing_textgym_registers_every_id_without_a_model_library():
    """``import textgym`` finds the tasks and registers their ids, and imports neither torch nor transformers."""
    code = ("import sys, gymnasium as gym, textgym\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules)\n"
            "assert not heavy, heavy\nassert 'textgym/Greeting-v0' in gym.registry\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_greeting_task_rewards_its_reference_and_judges_names():
    """The small task's lexical reward scores its reference greeting 1; its judge counts named greetings."""
    prompt = get_task("greeting").prompts("train")[0]
    assert get_task("greeting").reward()([prompt], [" Happy birthday, Ada!"]).tolist() == [1.0]
    assert get_task("greeting").judge([prompt], [" Hello!"], "rougeL") == {"judge/names_used": 0.0}


def test_task_reward_names_beside_the_generic_ones():
    """``textgym.tasks.rewards.make_reward`` knows the tasks' reward names; an unknown name lists them all."""
    from textgym.tasks.rewards import make_reward

    assert make_reward("length:3").name == "length[3]"
    with pytest.raises(ValueError, match="unknown reward 'vibes'; known rewards: helpfulness, "
                                         "lexicon-sentiment, sentiment, toxicity, classifier:..."):
        make_reward("vibes")
