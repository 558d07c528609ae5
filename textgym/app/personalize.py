"""Personalization (``textgym personalize``): a reward model and LoRA adapters per user, on one shared base.

"Models learn each user's preferences": each simulated user of a task (:attr:`textgym.tasks.Task.users`,
a hidden utility per user) ranks the same answers of the shared SFT model; each user's rankings
train that user's reward model; RL then trains one set of LoRA adapters per user on the one SFT
base, with the KL penalty to that same base with its adapters off (the one shared reference). At
the end one copy of the base serves every user: load the adapters under their names, switch with
``set_adapter``.

Evaluation, on held-out questions: each adapter (and the SFT model) answers; each user's hidden
utility scores every answer; an adapter's win rate for a user is the share of questions where the
user prefers its answer to another adapter's (ties count half). Memory: peak resident memory of a
fresh process serving N users with N adapters on one base, against one serving them with N full
models (the adapters merged into copies of the base).

The folder: ``sft/``, ``items.jsonl`` (the answers ranked), ``users/NAME/`` (``rankings.jsonl``,
``reward_model/``, ``rl/`` with the adapters in ``rl/policy``), ``personalize.json`` (every
figure), ``report.md`` and ``personalize.png``. Every step is skipped when its result is there, so
a killed run resumes where it stopped (RL from its last checkpoint).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from textgym.app import steps
from textgym.app.config import PersonalizeConfig, validate
from textgym.app.files import atomic_folder, atomic_write, in_fresh_process
from textgym.tasks import Task, get_task

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel


def check_personalize_config(cfg: PersonalizeConfig) -> tuple[Task, list[str]]:
    """Validate ``cfg`` before anything is created (types and bounds by :func:`validate`, then names): task, users."""
    validate(cfg)
    task = get_task(cfg.task)
    if not task.users or task.demonstrations is None:
        raise ValueError(f"the {task.name} task has no simulated users; use helpfulness")
    users = [u.strip() for u in cfg.users.split(",") if u.strip()] or list(task.users)
    unknown = [u for u in users if u not in task.users]
    if unknown:
        raise ValueError(f"unknown users {unknown} of the {task.name} task; it has {sorted(task.users)}")
    if len(set(users)) < 2:
        raise ValueError(f"personalization compares users: name at least two different ones, got {users}")
    return task, users


def win_rates(utilities: dict[str, np.ndarray]) -> dict[str, float]:
    """Each answerer's mean win rate against every other, from per-question utilities (ties count half).

    >>> win_rates({"a": np.array([2.0, 1.0, 0.0]), "b": np.array([1.0, 1.0, 1.0])})
    {'a': 0.5, 'b': 0.5}
    >>> win_rates({"a": np.array([2.0, 2.0]), "b": np.array([1.0, 0.0]), "c": np.array([-1.0, -1.0])})
    {'a': 1.0, 'b': 0.5, 'c': 0.0}
    """
    out = {}
    for name, mine in utilities.items():
        rates = [np.mean((mine > other) + 0.5 * (mine == other)) for o, other in utilities.items() if o != name]
        out[name] = round(float(np.mean(rates)), 4)
    return out


def run_personalization(cfg: PersonalizeConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) personalization in ``cfg.out``; returns the results written to ``personalize.json``."""
    import torch

    from textgym.app.feedback import Item, answered, label_simulated, sample_items
    from textgym.data.loaders import read_jsonl
    from textgym.data.preferences import rankings_to_pairs, read_rankings
    from textgym.models import load_causal_lm, load_tokenizer

    task, users = check_personalize_config(cfg)
    say = print if progress else (lambda *a, **k: None)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "config.json", json.dumps(asdict(cfg), indent=2))
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    began = time.perf_counter()
    sft = out / "sft"
    if not sft.is_dir():
        say(f"supervised fine-tuning of the shared base on {cfg.sft.examples} demonstrations", flush=True)
        atomic_folder(sft, lambda tmp: steps.supervised_fine_tuning(task, tmp, cfg.sft.examples, cfg.sft.epochs,
                                                                    cfg.seed))
    items_file = out / "items.jsonl"
    if not items_file.is_file():
        say(f"sampling {cfg.k} answers of the SFT model for {cfg.prompts} prompts", flush=True)
        sampled = sample_items(load_causal_lm(sft), load_tokenizer(sft), steps.training_prompts(task, cfg.prompts, 1,
                                                                                                 cfg.seed),
                               cfg.k, cfg.max_new_tokens, seed=cfg.seed)
        atomic_write(items_file, "".join(json.dumps(asdict(item)) + "\n" for item in sampled))
    items = [Item(**row) for row in read_jsonl(items_file)]
    for index, user in enumerate(users):
        folder = out / "users" / user
        folder.mkdir(parents=True, exist_ok=True)
        rankings = folder / "rankings.jsonl"
        have = answered(rankings)
        todo = [item for item in items if item not in have]
        if todo:
            say(f"{user}: ranking {len(todo)} prompts x {cfg.k} answers (simulated, noise {cfg.noise})", flush=True)
            label_simulated(todo, rankings, task.users[user], cfg.noise, cfg.seed * 1000 + index, show=lambda *a: None)
        reward = folder / "reward_model"
        if not reward.is_dir():
            say(f"{user}: reward model on {len(items)} rankings", flush=True)
            atomic_folder(reward, functools.partial(steps.reward_model, task, sft, pairs=0, seed=cfg.seed,
                                                    extra=rankings_to_pairs(read_rankings(rankings))))
        if not (folder / "rl" / "eval.json").is_file():
            say(f"{user}: {cfg.agent.upper()} of LoRA adapters (r {cfg.lora_r}) on the shared base", flush=True)
            steps.reinforce(steps.rl_config(task, cfg.rl, cfg.agent, model=sft, lora_r=cfg.lora_r,
                                            reward=f"rm:{reward}", out=folder / "rl", seed=cfg.seed + index,
                                            threads=cfg.threads, max_new_tokens=cfg.max_new_tokens))
            portable_base(folder / "rl" / "policy", sft)
    say("evaluating every adapter for every user on held-out questions", flush=True)
    result = {"config": asdict(cfg), "users": users, **evaluate_adapters(cfg, task, users, out)}
    say("memory: N adapters on one base against N full models, each in a fresh process", flush=True)
    adapters = [str(out / "users" / user / "rl" / "policy") for user in users]
    prompt = task.prompts("test")[0]
    result["memory"] = {kind: in_fresh_process(serve_users, kind, str(sft), adapters, prompt, cfg.max_new_tokens,
                                               cfg.threads) for kind in ("adapters", "full_models")}
    result["minutes"] = (time.perf_counter() - began) / 60
    atomic_write(out / "personalize.json", json.dumps(result, indent=2))
    write_report(out, result)
    say(f"report: {out / 'report.md'}", flush=True)
    return result


def portable_base(adapters: Path, base: Path) -> None:
    """Record ``base`` in the adapters' config relative to their folder, so the run folder can move as a whole."""
    config = adapters / "adapter_config.json"
    settings = json.loads(config.read_text())
    settings["base_model_name_or_path"] = os.path.relpath(base.resolve(), adapters.resolve())
    atomic_write(config, json.dumps(settings, indent=2))


def _as_model(model: nn.Module) -> PreTrainedModel:
    """A peft model as the model it wraps, which it stands in for (it forwards every attribute it lacks to it)."""
    return cast("PreTrainedModel", model)


def evaluate_adapters(cfg: PersonalizeConfig, task: Task, users: list[str], out: Path) -> dict[str, Any]:
    """Every adapter (and the SFT model) answers the held-out questions; every user's utility scores them."""
    from peft import PeftModel

    from textgym.eval.text import sample_completions
    from textgym.models import decode, load_causal_lm, load_tokenizer, no_progress_bars

    sft = out / "sft"
    tokenizer = load_tokenizer(sft)
    held_out = task.prompts("test")
    prompts = [held_out[i % len(held_out)] for i in range(cfg.eval_prompts)]
    with no_progress_bars():
        model = PeftModel.from_pretrained(load_causal_lm(sft), str(out / "users" / users[0] / "rl" / "policy"),
                                          adapter_name=users[0])
        for user in users[1:]:
            model.load_adapter(str(out / "users" / user / "rl" / "policy"), adapter_name=user)
    model.eval()
    answers: dict[str, list[str]] = {}
    for name in ["sft", *users]:
        if name != "sft":
            model.set_adapter(name)
        with model.disable_adapter() if name == "sft" else contextlib.nullcontext():
            ids = sample_completions(_as_model(model), tokenizer, prompts, cfg.max_new_tokens, seed=cfg.seed)
        answers[name] = [decode(tokenizer, c, skip_special_tokens=True) for c in ids]
    utility = {judge: {name: np.asarray(task.users[judge](prompts, texts), dtype=float)
                       for name, texts in answers.items()} for judge in users}
    return {
        "mean_utility": {judge: {name: round(float(v.mean()), 4) for name, v in by.items()}
                         for judge, by in utility.items()},
        "win_rate": {judge: win_rates({name: v for name, v in by.items() if name != "sft"})
                     for judge, by in utility.items()},
        "win_rate_vs_sft": {judge: {name: win_rates({name: v, "sft": by["sft"]})[name] for name, v in by.items()
                                    if name != "sft"} for judge, by in utility.items()},
        "samples": {name: [{"prompt": p, "answer": a} for p, a in list(zip(prompts, texts, strict=True))[:3]]
                    for name, texts in answers.items()},
    }


def serve_users(kind: str, base: str, adapters: list[str], prompt: str, max_new_tokens: int,
                threads: int) -> dict[str, float]:
    """Serve every user in this process; report the peak resident memory and the weights' size.

    ``kind`` "adapters": one base and N adapters, switched with ``set_adapter``; "full_models": N copies
    of the base, each with one user's adapters merged in. Each user's model answers ``prompt``.
    """
    import torch
    from peft import PeftModel

    from textgym.app.files import peak_rss_mib
    from textgym.eval.text import sample_completions
    from textgym.models import load_causal_lm, load_tokenizer, no_progress_bars

    torch.set_num_threads(threads)
    tokenizer = load_tokenizer(base)
    before = peak_rss_mib()
    names = [f"user{i}" for i in range(len(adapters))]
    with no_progress_bars():
        if kind == "adapters":
            model = PeftModel.from_pretrained(load_causal_lm(base), adapters[0], adapter_name=names[0])
            for name, folder in zip(names[1:], adapters[1:], strict=True):
                model.load_adapter(folder, adapter_name=name)
            models = {name: model for name in names}
        else:
            models = {name: PeftModel.from_pretrained(load_causal_lm(base), folder).merge_and_unload()
                      for name, folder in zip(names, adapters, strict=True)}
    for name, model in models.items():
        if kind == "adapters":
            model.set_adapter(name)
        sample_completions(_as_model(model.eval()), tokenizer, [prompt], max_new_tokens, seed=0)
    unique = {id(m): m for m in models.values()}.values()
    weights = sum(p.numel() * p.element_size() for m in unique for p in m.parameters())
    return {"users": len(adapters), "peak_rss_mib": round(peak_rss_mib(), 1),
            "peak_rss_above_start_mib": round(peak_rss_mib() - before, 1), "weights_mib": round(weights / 2**20, 2)}


def write_report(out: Path, result: dict[str, Any]) -> None:
    """``report.md`` (win rates, utilities, memory) and ``personalize.png`` (win rates per user)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = result["users"]
    cfg = result["config"]
    lines = [f"# Personalization: {cfg['task']}, users {', '.join(users)}", "",
             f"{cfg['prompts']} prompts x {cfg['k']} answers of the SFT model ranked by each simulated user (noise "
             f"{cfg['noise']}); a reward model and LoRA adapters (r {cfg['lora_r']}, {cfg['rl']['total_steps']:,} "
             f"{cfg['agent'].upper()} steps) per user on one shared base; {cfg['eval_prompts']} held-out answers "
             "per adapter.", "",
             "Win rate of each adapter's answers against the other users' adapters, judged by each user "
             "(rows: adapters; ties count half):", "",
             "| adapter | " + " | ".join(f"{judge} prefers it" for judge in users) + " |",
             "|---|" + "---|" * len(users)]
    lines += [f"| {name} | " + " | ".join(f"{result['win_rate'][judge][name]:.2f}" for judge in users) + " |"
              for name in users]
    lines += ["", "Mean utility of the answers, by each user's taste:", "",
              "| answers of | " + " | ".join(users) + " |", "|---|" + "---|" * len(users)]
    lines += [f"| {name} | " + " | ".join(f"{result['mean_utility'][judge][name]:+.3f}" for judge in users) + " |"
              for name in ["sft", *users]]
    memory = result["memory"]
    lines += ["", f"Serving {len(users)} users (a fresh process each; MiB):", "",
              "| how | weights | peak RSS | above the process's start |", "|---|---|---|---|"]
    lines += [f"| {kind.replace('_', ' ')} | {m['weights_mib']:.1f} | {m['peak_rss_mib']:.0f} | "
              f"{m['peak_rss_above_start_mib']:.0f} |" for kind, m in memory.items()]
    atomic_write(out / "report.md", "\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    width = 0.8 / len(users)
    for i, name in enumerate(users):
        ax.bar(np.arange(len(users)) + i * width, [result["win_rate"][judge][name] for judge in users], width,
               label=f"{name}'s adapter")
    ax.axhline(0.5, color="gray", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(users)) + width * (len(users) - 1) / 2, [f"judged by {u}" for u in users])
    ax.set(ylabel="win rate vs the other adapters", ylim=(0, 1), title="One base, an adapter per user")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "personalize.png", dpi=100)
    plt.close(fig)
