"""RLHF as a loop (``textgym loop``): feedback on the current policy, a better reward model, a better policy, again.

Round 0 fine-tunes the base model on the task's demonstrations (the SFT model: the first policy and,
in every round, the frozen reference of the KL penalty) and trains the first reward model on
``seed_pairs`` of the task's own rankings. Each round r >= 1 then

1. samples ``k`` completions for each of ``prompts_per_round`` training prompts from the current policy;
2. collects rankings of them from the feedback source (:func:`feedback_source`): a simulated labeler
   ranking by the task's hidden utility plus noise, a person on the terminal or on the web page, or
   a judge (any reward spec); every ranking is appended to ``round-NN/rankings.jsonl`` and flushed;
3. trains a reward model on the seed pairs and every ranking of every round so far;
4. runs RL (any agent of the harness) from the current policy, with the KL to the SFT model;
5. evaluates the new policy on held-out prompts: the round's reward, the hidden utility (when the
   task has one), the task's judge, the task's own metrics of the answers (its ``metrics`` hook; for
   helpfulness the off-topic shares, of answers and of tips), the KL to the SFT model, perplexity;
   and the round's reward model by the task's audit (how often it scores the helpful answer above
   another question's tips, on held-out rankings).

It stops after ``rounds`` rounds, or as soon as the judge or the reward reaches its threshold. The
loop folder holds ``sft/``, ``round-00/`` (the first reward model and the SFT model's evaluation),
``round-01/`` ... (``rankings.jsonl``, ``reward_model/``, ``rl/``, ``round.json``), ``loop.json``
(the config), ``rounds.csv``, ``report.md`` and ``rounds.png``. Every step writes its result through
a temporary name and a rename, and a round is done when its ``round.json`` exists, so a loop killed
at any moment resumes at the step where it stopped: rankings already given are kept (the feedback
resumes at the first unanswered prompt), and RL resumes from its last checkpoint.
"""

from __future__ import annotations

import csv
import functools
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from textgym.app import steps
from textgym.app.config import LoopConfig, changed_settings, read_saved_config, validate
from textgym.app.files import atomic_folder, atomic_write
from textgym.tasks import Task, get_task

#: The per-round metrics of ``rounds.csv`` and the report before the task's own (:attr:`textgym.tasks.Task.metrics`)
#: and after them, in order.
FIRST_COLUMNS = ("round", "labels", "reward", "utility", "judge")
LAST_COLUMNS = ("kl_to_sft", "perplexity_heldout", "distinct_2", "rm_audit_off_topic")


def feedback_source(cfg: LoopConfig, task: Task) -> Callable[[list[Any], Path], int]:
    """The feedback source ``cfg.feedback`` names, as ``rank(items, output) -> rows written``.

    Every source appends rankings rows to ``output`` and skips nothing already answered there (the
    caller passes only unanswered items), so they are interchangeable.
    """
    from textgym.app import feedback

    quiet = lambda *args, **kwargs: None  # noqa: E731  (the loop prints its own progress)
    if cfg.feedback == "simulated":
        utility = task.utility
        if utility is None:
            raise ValueError(f"the {task.name} task has no hidden utility for a simulated labeler; use "
                             "feedback terminal, web or judge:SPEC")
        if cfg.corrections and task.correct is None:
            raise ValueError(f"the {task.name} task has no simulated corrections; drop --corrections")
        correct = task.correct if cfg.corrections else None
        return lambda items, out: feedback.label_simulated(items, out, utility, cfg.noise, cfg.seed, show=quiet,
                                                           correct=correct)
    if cfg.corrections:
        raise ValueError(f"corrections come from the simulated labeler only; feedback {cfg.feedback} ranks without "
                         "them: drop --corrections")
    if cfg.feedback == "terminal":
        return lambda items, out: feedback.label_interactive(items, out)
    if cfg.feedback == "web":
        from textgym.app.web import serve

        return lambda items, out: serve(items, out, cfg.host, cfg.port, stop_when_done=True)
    if cfg.feedback.startswith("judge:"):
        from textgym.tasks.rewards import make_reward

        judge = make_reward(cfg.feedback.removeprefix("judge:"))
        return lambda items, out: feedback.label_with_judge(items, out, judge, show=quiet)
    raise ValueError(f"unknown feedback {cfg.feedback!r}; use simulated, terminal, web or judge:SPEC "
                     "(e.g. judge:helpfulness)")


def check_loop_config(cfg: LoopConfig) -> Task:
    """Validate ``cfg`` before anything is created (types and bounds by :func:`validate`, then names); its task."""
    validate(cfg)
    task = get_task(cfg.task)
    if task.demonstrations is None or task.rankings is None:
        raise ValueError(f"the {task.name} task has no RLHF pipeline (demonstrations and rankings); use helpfulness")
    from textgym.rewards.classifier import POOLINGS

    if cfg.rm_pooling not in POOLINGS:
        raise ValueError(f"rm_pooling must be one of {', '.join(POOLINGS)}, got {cfg.rm_pooling!r}")
    from textgym.envs.core import CREDITS

    if cfg.credit not in CREDITS:
        raise ValueError(f"credit must be end or token, got {cfg.credit!r}")
    feedback_source(cfg, task)  # an unknown source or judge fails here
    return task


def start_folder(cfg: LoopConfig, out: Path) -> None:
    """Create the loop folder, or check that the one there was started with this config."""
    saved = out / "loop.json"
    config = json.loads(json.dumps(asdict(cfg)))
    if saved.is_file():
        # out: a loop folder that was moved or copied resumes where it is now
        may_change = {"rounds", "judge_threshold", "reward_threshold", "host", "port", "threads", "out"}
        changed = changed_settings(read_saved_config(saved), cfg, may_change)
        if changed:
            raise ValueError(f"{out} holds a loop started with another config ({'; '.join(changed)}); rerun with the "
                             f"same config (only {', '.join(sorted(may_change))} may change), or choose another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(saved, json.dumps(config, indent=2))


def evaluate_round(cfg: LoopConfig, task: Task, policy: Path, sft: Path, reward: Path) -> dict[str, float]:
    """Held-out metrics of ``policy`` (the row of ``rounds.csv``, without ``round`` and ``labels``)."""
    import numpy as np

    from textgym.models import load_causal_lm, load_tokenizer
    from textgym.rewards import RewardModel
    from textgym.tasks.evaluation import evaluate_policy

    tokenizer, reference = load_tokenizer(policy), load_causal_lm(sft)
    model = reference if policy == sft else load_causal_lm(policy)
    result = evaluate_policy(model, tokenizer, task.name, RewardModel(str(reward)), reference,
                             num_prompts=cfg.eval_prompts, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    judge = next((v for k, v in result.items() if k.startswith("judge/")), float("nan"))
    utility = float(np.mean(task.utility(result["prompts"], result["samples"]))) if task.utility else float("nan")
    own = task.metrics(result["prompts"], result["samples"]) if task.metrics is not None else {}
    return {"reward": result["reward"]["mean"], "utility": utility, "judge": judge, **own,
            "kl_to_sft": result["kl_to_reference"],
            "perplexity_heldout": result.get("perplexity_heldout", float("nan")), "distinct_2": result["distinct_2"]}


def run_loop(cfg: LoopConfig, progress: bool = True) -> list[dict[str, float]]:
    """Run (or resume) the loop in ``cfg.out``; returns one metrics row per round (round 0: the SFT model)."""
    import torch

    from textgym.app.feedback import answered, sample_items
    from textgym.data.preferences import rankings_to_pairs, read_rankings
    from textgym.models import load_causal_lm, load_tokenizer

    task = check_loop_config(cfg)
    say = print if progress else (lambda *a, **k: None)
    out = Path(cfg.out)
    start_folder(cfg, out)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rank = feedback_source(cfg, task)
    began = time.perf_counter()
    sft = out / "sft"
    if not sft.is_dir():
        say(f"round 0: supervised fine-tuning on {cfg.sft.examples} demonstrations", flush=True)
        atomic_folder(sft, lambda tmp: steps.supervised_fine_tuning(task, tmp, cfg.sft.examples, cfg.sft.epochs,
                                                                    cfg.seed))
    rows = []
    policy = sft
    for round_ in range(cfg.rounds + 1):
        folder = out / f"round-{round_:02d}"
        done = folder / "round.json"
        if done.is_file():
            rows.append(json.loads(done.read_text()))
            policy = sft if round_ == 0 else folder / "rl" / "policy"
            continue
        folder.mkdir(parents=True, exist_ok=True)
        labels: list[dict] = []
        if round_ > 0:
            rankings = folder / "rankings.jsonl"
            have = answered(rankings)
            model, tokenizer = load_causal_lm(policy), load_tokenizer(policy)
            prompts = steps.training_prompts(task, cfg.prompts_per_round, round_, cfg.seed)
            items = [item for item in sample_items(model, tokenizer, prompts, cfg.k, cfg.max_new_tokens,
                                                   seed=cfg.seed * 1000 + round_) if item not in have]
            say(f"round {round_}: feedback ({cfg.feedback}) on {len(items)} prompts x {cfg.k} answers "
                f"of the current policy", flush=True)
            if items:
                rank(items, rankings)
                now = answered(rankings)
                missing = sum(item not in now for item in items)
                if missing:  # a person stopped early: the next run resumes here
                    say(f"round {round_}: {missing} of {len(items)} prompts still unranked; stopping here, "
                        "rerun the same command to go on", flush=True)
                    break
            labels = [row for r in range(1, round_ + 1)
                      for row in read_rankings(out / f"round-{r:02d}" / "rankings.jsonl")]
        reward = folder / "reward_model"
        if not reward.is_dir():
            say(f"round {round_}: reward model on {cfg.seed_pairs} seed pairs and {len(labels)} rankings", flush=True)
            train_rm = functools.partial(steps.reward_model, task, sft, pairs=cfg.seed_pairs, seed=cfg.seed,
                                         extra=rankings_to_pairs(labels), epochs=cfg.rm_epochs,
                                         pooling=cfg.rm_pooling)
            atomic_folder(reward, train_rm)
        if round_ > 0:
            say(f"round {round_}: {cfg.agent.upper()} from the current policy, KL to the SFT model", flush=True)
            steps.reinforce(steps.rl_config(task, cfg.rl, cfg.agent, model=policy, reference=sft,
                                            reward=f"rm:{reward}", credit=cfg.credit, out=folder / "rl",
                                            seed=cfg.seed + round_, threads=cfg.threads,
                                            max_new_tokens=cfg.max_new_tokens))
            policy = folder / "rl" / "policy"
        row = {"round": round_, "labels": len(labels), **evaluate_round(cfg, task, policy, sft, reward),
               "rm_audit_off_topic": _audit_off_topic(reward)}
        atomic_write(done, json.dumps(row, indent=2))
        rows.append(row)
        say(f"round {round_}: " + ", ".join(f"{k} {row[k]:.3f}" for k in columns([row])[2:]), flush=True)
        if round_ > 0 and _reached(cfg, row):
            say(f"round {round_}: threshold reached, stopping", flush=True)
            break
    write_report(cfg, out, rows)
    say(f"report: {out / 'report.md'} ({(time.perf_counter() - began) / 60:.1f} minutes)", flush=True)
    return rows


def _audit_off_topic(reward: Path) -> float:
    """The reward model's audit against another question's tips (saved with it); NaN for a task without one."""
    metrics = json.loads((reward / "reward_metrics.json").read_text())
    return float(metrics.get("accuracy_by_rejected_kind", {}).get("off-topic tips", float("nan")))


def _reached(cfg: LoopConfig, row: dict[str, float]) -> bool:
    """A stopping threshold is met."""
    return (cfg.judge_threshold is not None and row["judge"] >= cfg.judge_threshold) or \
        (cfg.reward_threshold is not None and row["reward"] >= cfg.reward_threshold)


def columns(rows: list[dict[str, float]]) -> list[str]:
    """The columns of ``rounds.csv``: the loop's, with the task's own metrics in the rows (in their order) inside."""
    own = [k for row in rows for k in row if k not in FIRST_COLUMNS + LAST_COLUMNS]
    return [*FIRST_COLUMNS, *dict.fromkeys(own), *LAST_COLUMNS]


def write_report(cfg: LoopConfig, out: Path, rows: list[dict[str, float]]) -> None:
    """``rounds.csv``, ``report.md`` (the table) and ``rounds.png`` (one panel per metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = columns(rows)
    with open(out / ".rounds.csv.tmp", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows({k: row.get(k, float("nan")) for k in names} for row in rows)  # a column added since: NaN
    (out / ".rounds.csv.tmp").replace(out / "rounds.csv")
    lines = [f"# RLHF loop: {cfg.task}, feedback {cfg.feedback}" + (f" (noise {cfg.noise})" if cfg.feedback ==
                                                                       "simulated" else ""), "",
             f"{cfg.prompts_per_round} prompts x {cfg.k} answers ranked per round, {cfg.rl.total_steps:,} RL steps "
             f"per round, kl_coef {cfg.rl.kl_coef}, reward models pooled {cfg.rm_pooling!r}, credit {cfg.credit!r}; "
             "round 0 is the SFT model with the first reward model.", "",
             "| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(str(row[k]) if k in ("round", "labels") else f"{row.get(k, float('nan')):.3f}"
                                for k in names) + " |" for row in rows]
    atomic_write(out / "report.md", "\n".join(lines) + "\n")
    metrics = names[2:]
    fig, axes = plt.subplots(-(-len(metrics) // 3), 3, figsize=(11, 8 * -(-len(metrics) // 3) / 3), squeeze=False)
    for ax, key in zip(axes.flat, metrics, strict=False):
        ax.plot([r["round"] for r in rows], [r.get(key, float("nan")) for r in rows], "o-")
        ax.set(title=key, xlabel="round")
        ax.set_xticks([r["round"] for r in rows])
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle(f"RLHF loop on {cfg.task}: feedback from {cfg.feedback}")
    fig.tight_layout()
    fig.savefig(out / "rounds.png", dpi=100)
    plt.close(fig)
