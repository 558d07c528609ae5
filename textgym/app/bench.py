"""The benchmark across reward functions: agents x rewards x seeds (``textgym bench``, ``benchmarks/rewards.py``).

Agents: any of ``textgym train``'s (trained by the harness, :func:`textgym.app.harness.train`) and
reference sampling (the starting model, untrained: the "before" of every comparison). Cases are the
tasks' benchmark cases (:attr:`textgym.tasks.Task.bench_cases`): a reward on a task's environment.
A case whose reward is the task's learned reward model (``rm:{rm}``) starts from the task's SFT model
and trains that reward model first, with the demo's steps (:mod:`textgym.app.steps`), once.

Every (case, agent, seed) runs in a fresh process and is evaluated on the task's held-out prompts
(:func:`textgym.tasks.evaluation.evaluate_policy`): reward, KL to the starting model, perplexity of
held-out preferred texts, distinct-2, the task's independent judge, tokens/s (training, or sampling
for the reference) and peak resident memory. The summary (``rewards.md``, ``rewards.png``) averages
the seeds and checks the quality bars: every trained agent above the starting model on reward and on
the judge for every seed, and on helpfulness the perplexity of held-out chosen answers at least 15%
below the pretrained base model's and not above the SFT model's.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from textgym.app import steps
from textgym.app.config import BenchConfig, DemoConfig, SFTConfig, TrainConfig, validate
from textgym.app.files import in_fresh_process, peak_rss_mib

COLUMNS = ("case", "agent", "seed", "reward", "kl_to_reference", "perplexity_heldout", "distinct_2", "judge",
           "judge_metric", "tokens_per_s", "peak_rss_mib", "seconds")


def cases() -> dict[str, tuple[str, str, str]]:
    """Every benchmark case: name -> (task, env id, reward spec), in the tasks' order."""
    from textgym.tasks import TASKS

    return {case: (task.name, steps.env_id(task), spec) for task in TASKS.values()
            for case, spec in task.bench_cases.items()}


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def prepare(task_name: str, cfg: BenchConfig) -> Path:
    """The SFT model and reward model of a task's ``rm:{rm}`` case (built once, reused by later runs).

    Both with the demo's defaults (:class:`~textgym.app.config.SFTConfig`, 3000 pairs), seed 0.
    """
    from textgym.tasks import get_task

    task, folder, sft = get_task(task_name), Path(cfg.out) / "runs" / f"{task_name}-prep", SFTConfig()
    if not (folder / "reward_model" / "config.json").is_file():
        print(f"preparing {task_name}: SFT, then a reward model from rankings", flush=True)
        steps.supervised_fine_tuning(task, folder / "sft", sft.examples, sft.epochs, seed=0)
        steps.reward_model(task, folder / "sft", folder / "reward_model", DemoConfig().rm_pairs, seed=0)
    return folder


def _run_one(job: dict[str, Any]) -> dict[str, Any]:
    """One (case, agent, seed) in this (fresh) process; returns its row."""
    import datasets
    import torch

    from textgym.app.harness import check_config
    from textgym.models import load_causal_lm, load_tokenizer
    from textgym.tasks.evaluation import evaluate_policy
    from textgym.tasks.rewards import make_reward

    run: TrainConfig = job["run"]
    datasets.disable_progress_bars()
    torch.set_num_threads(run.threads)
    began = time.perf_counter()
    if job["agent"] == "reference":  # the run's config gives the env's sizes; nothing trains
        if run.reward is None:
            raise ValueError(f"case {job['case']} names no reward to evaluate the reference with")
        derived = check_config(run)
        model = load_causal_lm(derived["model"])
        values = evaluate_policy(model, load_tokenizer(derived["model"]), derived["task"], make_reward(run.reward),
                                 model, num_prompts=run.eval_prompts, seed=run.seed)
        speed = values["tokens_per_s"]
    else:
        result = steps.reinforce(run)
        values, speed = result["eval"]["policy"], result["tokens_per_s"]
    judge = next((k for k in values if k.startswith("judge/")), "")
    return {"case": job["case"], "agent": job["agent"], "seed": run.seed, "reward": values["reward"]["mean"],
            "kl_to_reference": values["kl_to_reference"], "perplexity_heldout": values.get("perplexity_heldout"),
            "distinct_2": values["distinct_2"], "judge": values.get(judge), "judge_metric": judge,
            "tokens_per_s": speed, "peak_rss_mib": peak_rss_mib(),
            "seconds": time.perf_counter() - began}


def run_benchmark(cfg: BenchConfig) -> list[dict[str, Any]]:
    """Run every (case, agent, seed), one fresh process each; write the rows, the summary and the plot."""
    from agents import agent_class
    from textgym.tasks import get_task

    validate(cfg)
    known = cases()
    chosen, agents, seeds = _split(cfg.cases) or list(known), _split(cfg.agents), [int(s) for s in _split(cfg.seeds)]
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise ValueError(f"unknown case {unknown}; cases: {', '.join(known)}")
    for agent in agents:
        if agent != "reference":
            agent_class(agent)  # an unknown agent fails here, before any run
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs: list[dict[str, Any]] = []
    preps: dict[str, Path] = {}
    for case in chosen:
        task, _, reward = known[case]
        model = None
        if "{rm}" in reward:
            preps[task] = preps.get(task) or prepare(task, cfg)
            model, reward = str(preps[task] / "sft"), reward.format(rm=preps[task] / "reward_model")
        for seed in seeds:
            for agent in agents:
                run = steps.rl_config(get_task(task), cfg.rl, "ppo" if agent == "reference" else agent, model=model,
                                      reward=reward, out=out / "runs" / f"{case}-{agent}-{seed}", seed=seed,
                                      threads=cfg.threads, eval_prompts=cfg.eval_prompts)
                jobs.append({"case": case, "agent": agent, "run": run})
    rows = []
    for number, job in enumerate(jobs, 1):
        shutil.rmtree(job["run"].out, ignore_errors=True)
        row = in_fresh_process(_run_one, job)
        rows.append(row)
        print(f"[{number}/{len(jobs)}] {row['case']:<21} {row['agent']:<9} seed {row['seed']}: reward "
              f"{row['reward']:+.3f}, KL {row['kl_to_reference']:.3f}, {row['judge_metric']} {row['judge']:.3f} "
              f"({row['seconds']:.0f} s)", flush=True)
    write_results(cfg, rows, preps.get("helpfulness"))
    return rows


def base_perplexity(prep: Path | None) -> float | None:
    """Perplexity of held-out chosen answers under the pretrained base model (the helpfulness bar's yardstick)."""
    if prep is None:
        return None
    from textgym.eval.text import perplexity
    from textgym.models import load_causal_lm, load_tokenizer
    from textgym.tasks.evaluation import heldout_texts

    texts, prompts = heldout_texts("helpfulness")
    return perplexity(load_causal_lm("textgym/tiny-lm"), load_tokenizer("textgym/tiny-lm"), texts, prompts)


def quality_bars(rows: list[dict[str, Any]], base_ppl: float | None) -> list[str]:
    """The bars of the quality check, one line each, with PASS or FAIL: every trained agent against the start."""
    from textgym.tasks.evaluation import judge_higher_is_better

    lines = []
    by = {(r["case"], r["agent"], r["seed"]): r for r in rows}
    for case in dict.fromkeys(r["case"] for r in rows):
        for agent in dict.fromkeys(r["agent"] for r in rows if r["case"] == case and r["agent"] != "reference"):
            seeds = sorted({r["seed"] for r in rows if r["case"] == case and r["agent"] == agent})
            pairs = [(by[(case, agent, s)], by[(case, "reference", s)]) for s in seeds if (case, "reference", s) in by]
            if not pairs:
                continue
            up = sum(p["reward"] > ref["reward"] for p, ref in pairs)
            metric = pairs[0][0]["judge_metric"]
            sign = 1 if judge_higher_is_better(metric) else -1
            agree = sum(sign * (p["judge"] - ref["judge"]) > 0 for p, ref in pairs)
            ok = up == agree == len(pairs)
            lines.append(f"{'PASS' if ok else 'FAIL'} {case}, {agent}: reward above the starting model's in "
                         f"{up}/{len(pairs)} seeds; judge ({metric}) agrees in {agree}/{len(pairs)}")
            if case == "helpfulness-rm" and base_ppl:
                worst = max(p["perplexity_heldout"] for p, _ in pairs)
                not_above = sum(p["perplexity_heldout"] <= ref["perplexity_heldout"] for p, ref in pairs)
                drop = 1 - worst / base_ppl
                ok = drop >= 0.15 and not_above == len(pairs)
                versus = f"{drop:.1%} below" if drop >= 0 else f"{-drop:.1%} above"
                lines.append(f"{'PASS' if ok else 'FAIL'} helpfulness perplexity of held-out chosen answers, {agent}: "
                             f"base {base_ppl:.3f}, at most {worst:.3f} ({versus} base; the bar: 15% below); not "
                             f"above the SFT model's in {not_above}/{len(pairs)} seeds")
    return lines


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds of each (case, agent)."""
    import numpy as np

    summary = []
    for key in dict.fromkeys((r["case"], r["agent"]) for r in rows):
        group = [r for r in rows if (r["case"], r["agent"]) == key]
        entry: dict[str, Any] = {"case": key[0], "agent": key[1], "seeds": len(group),
                                 "judge_metric": group[0]["judge_metric"]}
        for column in ("reward", "kl_to_reference", "perplexity_heldout", "distinct_2", "judge", "tokens_per_s",
                       "peak_rss_mib"):
            values = [r[column] for r in group if r[column] is not None]
            if values:
                entry[column], entry[column + "_std"] = float(np.mean(values)), float(np.std(values))
        summary.append(entry)
    return summary


def write_results(cfg: BenchConfig, rows: list[dict[str, Any]], prep: Path | None) -> None:
    """rewards.csv / rewards.json (one row per run), rewards.md (summary and bars), rewards.png."""
    out = Path(cfg.out)
    with open(out / "rewards.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    summary, bars = summarize(rows), quality_bars(rows, base_perplexity(prep))
    (out / "rewards.json").write_text(json.dumps({"config": asdict(cfg), "rows": rows, "summary": summary,
                                                  "quality_bars": bars}, indent=2))
    table = ["| case | agent | reward | KL | perplexity | distinct-2 | judge | tokens/s | peak MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        table.append(f"| {s['case']} | {s['agent']} | {_cell(s, 'reward', '.3f')} | "
                     f"{_cell(s, 'kl_to_reference', '.2f')} | {_cell(s, 'perplexity_heldout', '.3f')} | "
                     f"{_cell(s, 'distinct_2', '.2f')} | {s['judge_metric'].removeprefix('judge/')} "
                     f"{_cell(s, 'judge', '.3f')} | {_cell(s, 'tokens_per_s', '.0f')} | "
                     f"{s.get('peak_rss_mib', 0):.0f} |")
    seeds = len({r["seed"] for r in rows})
    text = [f"# Benchmark across reward functions ({seeds} seeds, mean ± std)", "", *table, "", "## Quality bars",
            "", *[f"- {b}" for b in bars], "", "![rewards](rewards.png)", ""]
    (out / "rewards.md").write_text("\n".join(text))
    _plot(summary, out / "rewards.png")
    print("\n".join(table + [""] + bars), flush=True)


def _cell(entry: dict[str, Any], key: str, fmt: str) -> str:
    return f"{entry[key]:{fmt}} ± {entry[key + '_std']:{fmt}}" if key in entry else ""


def _plot(summary: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cases = list(dict.fromkeys(s["case"] for s in summary))
    agents = list(dict.fromkeys(s["agent"] for s in summary))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, column, title in ((axes[0], "reward", "mean reward"), (axes[1], "judge", "independent judge")):
        width = 0.8 / len(agents)
        for i, agent in enumerate(agents):
            found = [next((s for s in summary if s["case"] == c and s["agent"] == agent), {}) for c in cases]
            ax.bar(np.arange(len(cases)) + i * width, [f.get(column, 0) for f in found], width,
                   yerr=[f.get(column + "_std", 0) for f in found], label=agent)
        ax.set_xticks(np.arange(len(cases)) + 0.4 - width / 2, cases, rotation=20, fontsize=8)
        ax.set(title=title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
