"""The benchmark across reward functions: agents x rewards x seeds (``textgym bench``, ``benchmarks/rewards.py``).

Agents: PPO and RLOO (trained by :func:`textgym.train.train`) and reference sampling (the starting
model, untrained: the "before" of every comparison). Rewards, each on its embedded task:

========================  ==============  ===========================================  ===============
case                      env             reward                                       starting model
========================  ==============  ===========================================  ===============
sentiment-classifier      Sentiment-v0    the sentiment classifier's positive logit    tiny-lm
lexicon-sentiment         Sentiment-v0    VADER's compound score                       tiny-lm
helpfulness-rm            Helpfulness-v0  a reward model learned from rankings         SFT of tiny-lm
detox-classifier          Detox-v0        the toxicity classifier's polite logit       tiny-lm
rule                      Sentiment-v0    keyword count (loved, enjoyed, ...)          tiny-lm
========================  ==============  ===========================================  ===============

The helpfulness case first runs steps 1 and 2 of ``textgym demo`` (SFT on chosen answers, a reward
model from rankings) once; its SFT model is the starting policy and the reference. For the others
the embedded tiny-lm, trained on the task's corpus, plays the SFT model.

Each run is a fresh process (so its peak memory is its own) and gives one row: mean reward, KL to
the reference, perplexity of held-out preferred texts, distinct-2, the task's independent judge,
tokens/s (training for PPO/RLOO, sampling for the reference) and peak resident memory. The summary
(``rewards.md``, ``rewards.png``) averages the seeds and checks the quality bars: PPO above the
starting model on reward and on the judge for every seed, and on helpfulness the perplexity of
held-out chosen answers at least 15% below the pretrained base model's and not above the SFT model's.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from textgym.eval.report import JUDGE_HIGHER_IS_BETTER

#: case -> (env id, reward spec; ``{rm}`` is the learned reward model's folder).
CASES: dict[str, tuple[str, str]] = {
    "sentiment-classifier": ("textgym/Sentiment-v0", "sentiment"),
    "lexicon-sentiment": ("textgym/Sentiment-v0", "lexicon-sentiment"),
    "helpfulness-rm": ("textgym/Helpfulness-v0", "rm:{rm}"),
    "detox-classifier": ("textgym/Detox-v0", "toxicity"),
    "rule": ("textgym/Sentiment-v0", "keyword:loved,enjoyed,praise,impressed"),
}
AGENTS = ("ppo", "rloo", "reference")
COLUMNS = ("case", "agent", "seed", "reward", "kl_to_reference", "perplexity_heldout", "distinct_2", "judge",
           "judge_metric", "tokens_per_s", "peak_rss_mib", "seconds")


@dataclass
class BenchConfig:
    """What ``textgym bench`` runs; lists are comma-separated."""

    cases: str = ",".join(CASES)
    """Reward cases to run (see textgym.bench.CASES)."""
    agents: str = ",".join(AGENTS)
    """Agents: ppo, rloo, reference (sampling from the starting model)."""
    seeds: str = "0,1,2"
    """Seeds; each (case, agent) runs once per seed."""
    total_steps: int = 12_288
    """Environment steps per training run."""
    kl_coef: float = 0.05
    """Beta of the KL penalty."""
    learning_rate: float = 5e-5
    """Adam learning rate of PPO and RLOO."""
    eval_prompts: int = 64
    """Held-out prompts per evaluation."""
    out: str = "benchmarks/results"
    """Folder of rewards.csv, rewards.json, rewards.md and rewards.png (runs go in out/runs)."""
    threads: int = 2
    """torch threads per run."""


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _prepare_helpfulness(cfg: BenchConfig) -> Path:
    """SFT model and reward model of the helpfulness case (built once, reused by later runs)."""
    from textgym.pipeline import DemoConfig, reward_model, supervised_fine_tuning

    folder = Path(cfg.out) / "runs" / "helpfulness-prep"
    if not (folder / "reward_model" / "config.json").is_file():
        print("preparing helpfulness: SFT, then a reward model from rankings", flush=True)
        demo = DemoConfig(out=str(folder), threads=cfg.threads)
        supervised_fine_tuning(demo, folder)
        reward_model(demo, folder)
    return folder


def _run_one(job: dict[str, Any]) -> dict[str, Any]:
    """One (case, agent, seed) in this (fresh) process; returns its row."""
    import torch

    from textgym.cli import quiet_progress_bars
    from textgym.eval.report import evaluate_policy
    from textgym.models import load_causal_lm, load_tokenizer
    from textgym.rewards.named import make_reward
    from textgym.train import TrainConfig, check_config, peak_rss_mib, train

    quiet_progress_bars()
    torch.set_num_threads(job["threads"])
    began = time.perf_counter()
    agent = "ppo" if job["agent"] == "reference" else job["agent"]  # the reference only needs the env's sizes
    tcfg = TrainConfig(env=job["env"], model=job["model"], reward=job["reward"], agent=agent,
                       total_steps=job["total_steps"], kl_coef=job["kl_coef"], learning_rate=job["learning_rate"],
                       seed=job["seed"], eval_prompts=job["eval_prompts"], out=job["run_dir"], tensorboard=False,
                       threads=job["threads"], checkpoint_every=1_000_000)
    if job["agent"] == "reference":
        derived = check_config(tcfg)
        model = load_causal_lm(derived["model"])
        values = evaluate_policy(model, load_tokenizer(derived["model"]), derived["task"], make_reward(job["reward"]),
                                 model, num_prompts=job["eval_prompts"], seed=job["seed"])
        speed = values["tokens_per_s"]
    else:
        result = train(tcfg)
        values, speed = result["eval"]["policy"], result["tokens_per_s"]
    judge = next((k for k in values if k.startswith("judge/")), "")
    return {"case": job["case"], "agent": job["agent"], "seed": job["seed"], "reward": values["reward"]["mean"],
            "kl_to_reference": values["kl_to_reference"], "perplexity_heldout": values.get("perplexity_heldout"),
            "distinct_2": values["distinct_2"], "judge": values.get(judge), "judge_metric": judge,
            "tokens_per_s": speed, "peak_rss_mib": peak_rss_mib(),
            "seconds": time.perf_counter() - began}


def run_benchmark(cfg: BenchConfig) -> list[dict[str, Any]]:
    """Run every (case, agent, seed), one fresh process each; write the rows, the summary and the plot."""
    cases, agents, seeds = _split(cfg.cases), _split(cfg.agents), [int(s) for s in _split(cfg.seeds)]
    unknown = [c for c in cases if c not in CASES] + [a for a in agents if a not in AGENTS]
    if unknown:
        raise ValueError(f"unknown case or agent {unknown}; cases: {', '.join(CASES)}; agents: {', '.join(AGENTS)}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    prep = _prepare_helpfulness(cfg) if "helpfulness-rm" in cases else None
    jobs = []
    for case in cases:
        env, reward = CASES[case]
        model = str(prep / "sft") if case == "helpfulness-rm" else None
        reward = reward.format(rm=prep / "reward_model") if prep else reward
        for seed in seeds:
            for agent in agents:
                jobs.append({"case": case, "env": env, "reward": reward, "model": model, "agent": agent, "seed": seed,
                             "total_steps": cfg.total_steps, "kl_coef": cfg.kl_coef,
                             "learning_rate": cfg.learning_rate, "eval_prompts": cfg.eval_prompts,
                             "threads": cfg.threads, "run_dir": str(out / "runs" / f"{case}-{agent}-{seed}")})
    rows = []
    context = multiprocessing.get_context("spawn")
    for number, job in enumerate(jobs, 1):
        _clear(Path(job["run_dir"]))
        with context.Pool(1) as pool:
            row = pool.apply(_run_one, (job,))
        rows.append(row)
        print(f"[{number}/{len(jobs)}] {row['case']:<21} {row['agent']:<9} seed {row['seed']}: reward "
              f"{row['reward']:+.3f}, KL {row['kl_to_reference']:.3f}, {row['judge_metric']} {row['judge']:.3f} "
              f"({row['seconds']:.0f} s)", flush=True)
    write_results(cfg, rows, prep)
    return rows


def _clear(run_dir: Path) -> None:
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)


def base_perplexity(prep: Path | None) -> float | None:
    """Perplexity of held-out chosen answers under the pretrained base model (the helpfulness bar's yardstick)."""
    if prep is None:
        return None
    from textgym.eval.report import heldout_texts
    from textgym.eval.text import perplexity
    from textgym.models import load_causal_lm, load_tokenizer

    texts, prompts = heldout_texts("helpfulness")
    return perplexity(load_causal_lm("textgym/tiny-lm"), load_tokenizer("textgym/tiny-lm"), texts, prompts)


def quality_bars(rows: list[dict[str, Any]], base_ppl: float | None) -> list[str]:
    """The bars of the quality check, one line each, with PASS or FAIL."""
    lines = []
    by = {(r["case"], r["agent"], r["seed"]): r for r in rows}
    for case in dict.fromkeys(r["case"] for r in rows):
        seeds = sorted({r["seed"] for r in rows if r["case"] == case and r["agent"] == "ppo"})
        pairs = [(by[(case, "ppo", s)], by.get((case, "reference", s))) for s in seeds]
        pairs = [(p, ref) for p, ref in pairs if ref is not None]
        if not pairs:
            continue
        up = sum(p["reward"] > ref["reward"] for p, ref in pairs)
        metric = pairs[0][0]["judge_metric"]
        sign = 1 if JUDGE_HIGHER_IS_BETTER.get(metric, True) else -1
        agree = sum(sign * (p["judge"] - ref["judge"]) > 0 for p, ref in pairs)
        ok = up == agree == len(pairs)
        lines.append(f"{'PASS' if ok else 'FAIL'} {case}: PPO reward above the starting model's in {up}/{len(pairs)} "
                     f"seeds; judge ({metric}) agrees in {agree}/{len(pairs)}")
        if case == "helpfulness-rm" and base_ppl:
            worst = max(p["perplexity_heldout"] for p, _ in pairs)
            not_above = sum(p["perplexity_heldout"] <= ref["perplexity_heldout"] for p, ref in pairs)
            drop = 1 - worst / base_ppl
            ok = drop >= 0.15 and not_above == len(pairs)
            versus = f"{drop:.1%} below" if drop >= 0 else f"{-drop:.1%} above"
            lines.append(f"{'PASS' if ok else 'FAIL'} helpfulness perplexity of held-out chosen answers: base "
                         f"{base_ppl:.3f}, PPO at most {worst:.3f} ({versus} base; the bar: 15% below); not above "
                         f"the SFT model's in {not_above}/{len(pairs)} seeds")
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
