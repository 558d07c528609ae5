r"""The greeting task: greet a person by name for an occasion, in one short line.

A small task kept whole in this module, to show what a task is: its prompts
(``"Occasion: birthday\nName: Ada\nGreeting:"``, names held out for the test split), its reward
(ROUGE-L against the reference greeting of each prompt, a lexical reward) and its independent judge
(the share of greetings that name the person). Registered as ``textgym/Greeting-v0``.

>>> prompts("test")[0]
'Occasion: birthday\nName: Kai\nGreeting:'
>>> judge(prompts("test")[:2], [" Happy birthday, Kai!", " Hello there."], "rougeL")
{'judge/names_used': 0.5}
"""

from __future__ import annotations

import numpy as np

from textgym.tasks.base import Task

NAMES = ["Ada", "Ben", "Chloe", "Dev", "Eva", "Finn", "Grace", "Hugo", "Iris", "Jon", "Kai", "Lena"]
#: The names of the test split's prompts (never in train).
TEST_NAMES = ("Kai", "Lena")
#: Occasion -> the reference greeting, ``{name}`` filled in.
OCCASIONS = {"birthday": "Happy birthday, {name}!", "new job": "Congratulations on the new job, {name}!",
             "wedding": "Congratulations on your wedding, {name}!", "holiday": "Have a lovely holiday, {name}!",
             "recovery": "Get well soon, {name}!", "graduation": "Well done on graduating, {name}!"}


def _rows(split: str) -> list[tuple[str, str, str]]:
    """(prompt, name, reference greeting) of every prompt of a split."""
    names = [n for n in NAMES if (n in TEST_NAMES) == (split == "test")]
    return [(f"Occasion: {occasion}\nName: {name}\nGreeting:", name, " " + greeting.format(name=name))
            for name in names for occasion, greeting in OCCASIONS.items()]


def prompts(split: str) -> list[str]:
    """The prompts of a split (``"train"`` or ``"test"``)."""
    return [prompt for prompt, _, _ in _rows(split)]


def reward():
    """ROUGE-L of the greeting against the prompt's reference (a :class:`textgym.rewards.RougeReward`)."""
    from textgym.rewards import RougeReward

    return RougeReward({prompt: greeting for split in ("train", "test") for prompt, _, greeting in _rows(split)})


def judge(prompts: list[str], completions: list[str], reward_name: str) -> dict[str, float]:
    """The share of greetings that name the person the prompt names (higher is better)."""
    names = [prompt.split("Name: ")[1].split("\n")[0] for prompt in prompts]
    return {"judge/names_used": float(np.mean([name in c for name, c in zip(names, completions, strict=True)]))}


def heldout(limit: int) -> tuple[list[str], list[str]]:
    """The test prompts with their reference greetings."""
    rows = _rows("test")[:limit]
    return [prompt + greeting for prompt, _, greeting in rows], [prompt for prompt, _, _ in rows]


TASK = Task("greeting", prompts, reward, max_new_tokens=12, max_context=48, env_id="textgym/Greeting-v0",
            heldout=heldout, judge=judge, judge_higher_is_better={"judge/names_used": True})
