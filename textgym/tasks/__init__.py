"""The embedded tasks: everything task-specific, one module per task.

A :class:`Task` says which prompts, reward, lengths and reference model its environment uses when
an argument is left out (``gymnasium.make("textgym/Sentiment-v0")`` is the text environment with
the sentiment task's defaults), and what the rest of textgym needs to know about the task: its
held-out preferred texts (perplexity), its independent judge and the judge's direction, the named
rewards and classifier it contributes, its benchmark cases, and its RLHF data (demonstrations,
rankings).

Tasks sit above the environments, rewards and models: nothing below imports a task. The
environments take explicit arguments; a task's defaults are filled in by the entry point its
registered id names (:func:`make_env`, or the task's own, as tic-tac-toe's rules need).

Adding a task is adding a module here that defines ``TASK`` (and its data): :data:`TASKS` finds
every module of this package except the layer's own (:data:`LAYER_MODULES`: the task record,
the kit builder, evaluation and reward names on the tasks), and importing textgym registers the id
of every task that has one (:data:`ENV_IDS`); :mod:`textgym.tasks.greeting` is a small example.
A task module imports :mod:`textgym.tasks.base`, never this package (which imports the task
modules). So that importing textgym stays quick, a task module imports only light modules at its
top (numpy, :mod:`textgym.tasks.base`, the word lists of :mod:`textgym.data.synthetic`) and the
heavy parts of the library (rewards, models, environments) inside the functions that use them:
``tests/tasks`` checks that ``import textgym`` loads no model library.

``textgym/TextGeneration-v0`` with no arguments is the sentiment task.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from textgym.tasks.base import DEFAULT_MODEL, TEXT_ENTRY_POINTS, ClassifierSpec, Task, env_arguments, unique

__all__ = ["DEFAULT_MODEL", "ENV_IDS", "TASKS", "ClassifierSpec", "Task", "env_arguments", "get_task", "make_env",
           "make_vector_env", "unique"]

#: The task whose defaults ``textgym/TextGeneration-v0`` takes.
DEFAULT_TASK = "sentiment"
#: The layer's own modules of this package, which are not tasks.
LAYER_MODULES = ("base", "build", "evaluation", "rewards")


def get_task(name: str) -> Task:
    """The task called ``name``; the error lists the known tasks."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name]


def _discover() -> dict[str, Task]:
    """Every task module's ``TASK`` by name: the default task first, then the others in the order of their names."""
    names = sorted(info.name for info in pkgutil.iter_modules(__path__)
                   if not info.name.startswith("_") and info.name not in LAYER_MODULES)
    tasks = [importlib.import_module(f"{__name__}.{name}").TASK for name in names]
    return {task.name: task for task in sorted(tasks, key=lambda task: (task.name != DEFAULT_TASK, task.name))}


#: Every embedded task by name: the default task (sentiment) first, then the others by name.
TASKS: dict[str, Task] = _discover()
#: The id of every task's environment -> (entry point, vector entry point, ``gymnasium.make`` keywords).
ENV_IDS: dict[str, tuple[str, str, dict[str, Any]]] = {
    task.env_id: (*task.entry_points, {"task": task.name} if task.entry_points == TEXT_ENTRY_POINTS else {})
    for task in TASKS.values() if task.env_id is not None
}


def make_env(task: str = DEFAULT_TASK, **kwargs: Any):
    """The entry point of a task's registered id: :class:`textgym.envs.TextGenerationEnv` with ``task``'s defaults.

    ``gymnasium.make("textgym/TextGeneration-v0", task="detox")`` picks a task by name; an unknown
    keyword is named in one line.
    """
    from textgym.envs.text_generation import TextGenerationEnv, check_arguments

    check_arguments("TextGenerationEnv", kwargs, [*inspect.signature(TextGenerationEnv).parameters, "task"])
    return TextGenerationEnv(**env_arguments(get_task(task), kwargs))


def make_vector_env(num_envs: int = 1, task: str = DEFAULT_TASK, **kwargs: Any):
    """The vector entry point of a task's registered id: :class:`textgym.envs.TextGenerationVectorEnv`."""
    from textgym.envs.text_generation_vector import TextGenerationVectorEnv

    return TextGenerationVectorEnv(num_envs=num_envs, **env_arguments(get_task(task), kwargs))
