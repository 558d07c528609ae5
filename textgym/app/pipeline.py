"""The RLHF pipeline of the seeds, end to end and offline: ``textgym demo``.

1. Supervised fine-tuning of the embedded base LM on the task's demonstrations (for helpfulness:
   hh-rlhf-format dialogues, most of them curt, one tip where the rankings prefer two or three with
   a friendly frame).
2. A reward model from rankings: each ranking of K answers becomes its pairwise comparisons; a
   scalar head on the SFT model learns ``-log sigmoid(r_chosen - r_rejected)``.
3. RL through the task's environment, run by the harness (:mod:`textgym.app.harness`, any agent):
   the SFT model is the policy's start and the frozen reference, the learned reward model scores,
   ``kl_coef`` holds the policy near the reference.
4. Evaluation on held-out questions, SFT model vs trained policy: reward, KL to the reference,
   perplexity of held-out chosen answers (base, SFT, RL), distinct-2, and the task's independent
   judge. Writes a report folder: ``report.md`` (table and before/after samples), ``metrics.json``,
   ``config.json``, ``training.csv`` and the plots ``training_curves.png`` and ``reward_scores.png``.

Each step is one of :mod:`textgym.app.steps`, which the benchmark, the RLHF loop and personalization
share for any task that has demonstrations and rankings (:class:`textgym.tasks.Task`). The table
reports the task's own metrics of the answers (:attr:`textgym.tasks.Task.metrics`; for helpfulness
the off-topic shares) beside the judge's.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from textgym.app import steps
from textgym.app.config import DemoConfig
from textgym.tasks import DEFAULT_MODEL, Task, get_task


def _say(message: str) -> None:
    print(message, flush=True)


def audit_line(rm_metrics: dict) -> str:
    """The reward-model audit in words: "off-topic tips 0.49, off-topic fact 1.00, ..."."""
    return ", ".join(f"{kind} {acc:.2f}" for kind, acc in rm_metrics.get("accuracy_by_rejected_kind", {}).items())


def reinforce(cfg: DemoConfig, task: Task, policy: Path, reward: Path, out: Path, progress: bool = True) -> list[dict]:
    """Step 3: RL from ``policy`` (also the reference) with the reward model at ``reward``; the training rows."""
    shutil.rmtree(out, ignore_errors=True)
    steps.reinforce(steps.rl_config(task, cfg.rl, cfg.agent, model=policy, reward=f"rm:{reward}", out=out,
                                    seed=cfg.seed, threads=cfg.threads, max_new_tokens=cfg.max_new_tokens),
                    progress=progress)
    with open(out / "metrics.csv") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def evaluate(cfg: DemoConfig, task: Task, out: Path) -> dict:
    """Step 4: SFT vs RL on held-out questions (:func:`textgym.tasks.evaluation.evaluate_policy`)."""
    from textgym.eval.text import perplexity
    from textgym.models import load_causal_lm, load_tokenizer
    from textgym.rewards import RewardModel
    from textgym.tasks.evaluation import evaluate_policy, heldout_texts

    tokenizer, reference = load_tokenizer(out / "sft"), load_causal_lm(out / "sft")
    reward = RewardModel(str(out / "reward_model"))
    metrics = {name: evaluate_policy(model, tokenizer, task.name, reward, reference, num_prompts=cfg.eval_prompts,
                                     max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
               for name, model in (("sft", reference), ("rl", load_causal_lm(out / "rl" / "policy")))}
    held, held_prompts = heldout_texts(task.name)
    metrics["base"] = {"perplexity_heldout": perplexity(load_causal_lm(DEFAULT_MODEL), tokenizer, held, held_prompts)}
    samples = {name: metrics[name].pop("samples") for name in ("sft", "rl")}
    prompts = metrics["sft"].pop("prompts")
    metrics["rl"].pop("prompts")
    own = {name: task.metrics(prompts, samples[name]) if task.metrics is not None else {} for name in samples}
    for name, values in own.items():
        metrics[name].update(values)
    return {"metrics": metrics, "samples": samples, "prompts": prompts, "task_metrics": list(own["sft"])}


def write_report(cfg: DemoConfig, out: Path, rm_metrics: dict, rows: list[dict], result: dict,
                 seconds: float) -> None:
    """``report.md``, ``metrics.json``, ``training.csv`` and the two plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from textgym.eval.report import plot_scores

    m = result["metrics"]
    reported = [k for k in m["sft"] if k.startswith("judge/")] + result["task_metrics"]  # the judge's, the task's
    with open(out / "training.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    global_steps = [r["global_step"] for r in rows]
    fig, (ax_r, ax_k) = plt.subplots(1, 2, figsize=(10, 4))
    ax_r.plot(global_steps, [r["objective/score"] for r in rows])
    ax_r.set(title=f"reward-model score during {cfg.agent.upper()}", xlabel="environment steps")
    ax_k.plot(global_steps, [r["objective/kl"] for r in rows], color="tab:orange")
    ax_k.set(title="KL(policy || SFT reference) per answer, nats", xlabel="environment steps")
    fig.tight_layout()
    fig.savefig(out / "training_curves.png", dpi=100)
    plt.close(fig)
    plot_scores({"before RL (SFT)": m["sft"], "after RL": m["rl"]}, out / "reward_scores.png",
                "reward of held-out answers")
    rl = cfg.agent.upper()
    table = [f"| | base | SFT (before {rl}) | {rl} (after) |", "|---|---|---|---|",
             f"| mean reward (reward model) | | {m['sft']['reward']['mean']:+.3f} | {m['rl']['reward']['mean']:+.3f} |",
             f"| KL to the SFT reference, nats per answer | | {m['sft']['kl_to_reference']:.3f} | "
             f"{m['rl']['kl_to_reference']:.3f} |",
             f"| perplexity of held-out chosen answers | {m['base']['perplexity_heldout']:.3f} | "
             f"{m['sft']['perplexity_heldout']:.3f} | {m['rl']['perplexity_heldout']:.3f} |",
             f"| distinct-2 | | {m['sft']['distinct_2']:.3f} | {m['rl']['distinct_2']:.3f} |",
             *[f"| {name.replace('judge/', 'judge: ')}{' (independent)' if name.startswith('judge/') else ''} | | "
               f"{m['sft'][name]:.3f} | {m['rl'][name]:.3f} |" for name in reported]]
    lines = [f"# textgym demo: SFT -> reward model -> {rl}", "",
             f"Finished in {seconds / 60:.1f} minutes. Reward model: held-out pairwise accuracy "
             f"{rm_metrics['after']['accuracy']:.3f} (before training {rm_metrics['before']['accuracy']:.3f}); "
             f"it prefers the helpful answer over {audit_line(rm_metrics)} of the time. "
             f"Evaluated on {m['sft']['completions']} answers to the task's {m['sft']['prompts_distinct']} "
             "held-out questions.", "", *table, "", "![training curves](training_curves.png)", "",
             "![reward scores before and after](reward_scores.png)", "", "## Samples (same held-out questions)", ""]
    for prompt, before_text, after_text in list(zip(result["prompts"], result["samples"]["sft"],
                                                    result["samples"]["rl"], strict=True))[:8]:
        lines += [f"**Question:** {prompt.strip()}", "", f"- before {rl}: {before_text.strip()}",
                  f"- after {rl}: {after_text.strip()}", ""]
    (out / "report.md").write_text("\n".join(lines))
    (out / "metrics.json").write_text(json.dumps({"reward_model": rm_metrics, **m}, indent=2))
    _say("\n" + "\n".join(table))


def run_demo(cfg: DemoConfig) -> dict:
    """Run the four steps with progress; returns the evaluation metrics."""
    import torch

    from textgym.app.config import validate

    validate(cfg)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    task, out = get_task("helpfulness"), Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    began = time.perf_counter()
    _say(f"[1/4] supervised fine-tuning of {DEFAULT_MODEL} on demonstrations")
    steps.supervised_fine_tuning(task, out / "sft", cfg.sft.examples, cfg.sft.epochs, cfg.seed)
    _say("[2/4] reward model from rankings")
    rm_metrics = steps.reward_model(task, out / "sft", out / "reward_model", cfg.rm_pairs, cfg.seed)
    _say(f"  {rm_metrics['train_pairs']} training pairs; held-out pairwise accuracy "
         f"{rm_metrics['after']['accuracy']:.3f}; helpful answer preferred over {audit_line(rm_metrics)}")
    _say(f"[3/4] {cfg.agent.upper()} with a KL penalty to the SFT model, through {steps.env_id(task)}")
    rows = reinforce(cfg, task, out / "sft", out / "reward_model", out / "rl")
    _say("[4/4] evaluation on held-out questions")
    result = evaluate(cfg, task, out)
    write_report(cfg, out, rm_metrics, rows, result, time.perf_counter() - began)
    _say(f"\nreport: {out / 'report.md'} ({(time.perf_counter() - began) / 60:.1f} minutes)")
    return result["metrics"]
