"""The steps the pipelines are made of: supervised fine-tuning, a reward model, an RL run, prompts.

``textgym demo`` (:mod:`textgym.app.pipeline`), ``textgym loop`` (:mod:`textgym.app.loop`),
``textgym personalize`` (:mod:`textgym.app.personalize`) and ``textgym bench``
(:mod:`textgym.app.bench`) are siblings: each orchestrates these steps, and none imports another.
A step writes its result to the folder it is given and returns what the orchestrator reports. The
RL run is ``textgym train``'s harness (:func:`textgym.app.harness.train`), and its
:class:`~textgym.app.config.TrainConfig` is built here only (:func:`rl_config`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textgym.app.config import RLConfig, TrainConfig
from textgym.tasks import DEFAULT_MODEL, Task


def env_id(task: Task) -> str:
    """The registered env id of an embedded task."""
    if task.env_id is None:
        raise ValueError(f"task {task.name!r} registers no environment")
    return task.env_id


def training_prompts(task: Task, count: int, draw: int, seed: int) -> list[str]:
    """``count`` training prompts of ``task``: a fresh seeded draw for each ``draw``, cycling when the split is short.

    >>> from textgym.tasks import get_task
    >>> task = get_task("helpfulness")
    >>> len(training_prompts(task, 5, 1, 0)), training_prompts(task, 5, 1, 0) == training_prompts(task, 5, 1, 0)
    (5, True)
    """
    import numpy as np

    pool = task.prompts("train")
    order = np.random.default_rng([seed, draw]).permutation(len(pool))
    return [pool[order[i % len(pool)]] for i in range(count)]


def supervised_fine_tuning(task: Task, out: Path, examples: int, epochs: int, seed: int,
                           base: str = DEFAULT_MODEL) -> Path:
    """Fine-tune ``base`` on ``examples`` of the task's demonstrations; saves the model and tokenizer to ``out``.

    Trained by :func:`textgym.models.sft.train_sft` (transformers' ``Trainer``) rather than the kit
    builder's hand-written loop (:func:`textgym.models.build.fit`): ``benchmarks/sft.py`` finds them
    level on the demo's data (CPU time per epoch 1.00x, held-out loss 0.99x, within the two seeds'
    spread; ``benchmarks/results/sft.json``), so the maintained trainer wins the tie. Prints one
    line per epoch.
    """
    import random

    from textgym.models.sft import SFTTrainingConfig, train_sft

    if task.demonstrations is None:
        raise ValueError(f"the {task.name} task has no demonstrations for supervised fine-tuning")
    texts = task.demonstrations()
    texts = random.Random(seed).sample(texts, min(examples, len(texts)))
    train_sft(texts, SFTTrainingConfig(base_model=base, output_dir=str(out), epochs=epochs, seed=seed), progress=True)
    return out


def reward_model(task: Task, base: Path, out: Path, pairs: int, seed: int, extra: Any = None,
                 epochs: float = 1.0, pooling: str = "last") -> dict:
    """Rankings -> pairs -> a reward model on ``base``'s trunk, saved to ``out``; returns its metrics and audit.

    ``extra``: more pairs (a ``datasets.Dataset``) to train on beside ``pairs`` of the task's own;
    ``epochs``: passes over them all; ``pooling``: how the score is read off the head
    (:data:`textgym.rewards.classifier.POOLINGS`).
    """
    import datasets

    from textgym.data.preferences import rankings_to_pairs
    from textgym.rewards import RewardModel
    from textgym.rewards.training import RewardTrainingConfig, train_reward_model

    if task.rankings is None:
        raise ValueError(f"the {task.name} task has no rankings to learn a reward model from")
    train = rankings_to_pairs(task.rankings("train")).shuffle(seed=seed)
    train = train.select(range(min(pairs, len(train))))
    if extra is not None and len(extra):
        train = datasets.concatenate_datasets([train, extra.select_columns(["prompt", "chosen", "rejected"])])
    held = rankings_to_pairs(task.rankings("test")).shuffle(seed=seed)
    metrics = train_reward_model(train, held.select(range(min(500, len(held)))),
                                 RewardTrainingConfig(base_model=str(base), output_dir=str(out), seed=seed,
                                                      epochs=epochs, pooling=pooling))
    if task.audit is not None:
        metrics["accuracy_by_rejected_kind"] = task.audit(RewardModel(str(out)), task.rankings("test"))
        (Path(out) / "reward_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")  # with the audit
    return metrics


def rl_config(task: Task, rl: RLConfig, agent: str, *, model: str | Path | None, reward: str, out: str | Path,
              seed: int, threads: int, max_new_tokens: int | None = None, reference: str | Path | None = None,
              lora_r: int = 0, credit: str = "end", eval_prompts: int = 0) -> TrainConfig:
    """The harness's config of an RL run of a pipeline: ``rl``'s budget and KL, the harness's defaults otherwise.

    ``model`` (None: the task's) starts the policy and, unless ``reference`` is given or ``lora_r`` > 0,
    is the frozen reference; ``reward`` is a reward spec (``rm:PATH`` for a learned reward model). The
    run writes no TensorBoard log, and evaluates held-out prompts only if ``eval_prompts`` says so.

    >>> from textgym.tasks import get_task
    >>> run = rl_config(get_task("helpfulness"), RLConfig(total_steps=64), "rloo", model="sft", reward="rm:rm",
    ...                 out="rl", seed=1, threads=1)
    >>> run.env, run.total_steps, run.kl_coef, run.agent, run.reference, run.tensorboard
    ('textgym/Helpfulness-v0', 64, 0.1, 'rloo', None, False)
    """
    return TrainConfig(env=env_id(task), model=None if model is None else str(model),
                       reference=None if reference is None else str(reference), reward=reward, agent=agent,
                       credit=credit, total_steps=rl.total_steps, max_new_tokens=max_new_tokens, kl_coef=rl.kl_coef,
                       learning_rate=rl.learning_rate, lora_r=lora_r, seed=seed, eval_prompts=eval_prompts,
                       out=str(out), tensorboard=False, threads=threads)


def reinforce(run: TrainConfig, progress: bool = False) -> dict[str, Any]:
    """The RL run ``run`` by the harness, resumed from its last checkpoint if ``run.out`` holds one; its metrics."""
    from textgym.app.harness import train

    return train(run, resume=(Path(run.out) / "config.json").is_file(), progress=progress)
