"""The RLHF pipeline of the seeds, end to end and offline: ``textgym demo``.

1. Supervised fine-tuning of the embedded base LM on demonstrations (hh-rlhf-format dialogues; most
   demonstrations are curt, one tip where the rankings prefer two or three with a friendly frame).
2. A reward model from rankings: each ranking of five answers becomes its pairwise comparisons;
   a scalar head on the SFT model learns ``-log sigmoid(r_chosen - r_rejected)``.
3. PPO through ``textgym/Helpfulness-v0``: the SFT model is the policy's start and the frozen
   reference, the learned reward model scores, ``kl_coef`` holds the policy near the reference.
4. Evaluation on held-out questions, SFT model vs PPO policy: reward, KL to the reference,
   perplexity of held-out chosen answers (base, SFT, PPO), distinct-2, and an independent judge
   (the embedded helpfulness classifier, trained on labels, not on the pairs). Writes a report
   folder: ``report.md`` (table and before/after samples), ``metrics.json``, ``config.json``,
   ``training.csv`` and the plots ``training_curves.png`` and ``reward_scores.png``.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from textgym.data import synthetic
from textgym.data.preferences import rankings_to_pairs
from textgym.eval.report import evaluate_policy, heldout_texts, plot_scores
from textgym.eval.text import perplexity
from textgym.models import load_causal_lm, load_tokenizer
from textgym.models.build import encode, fit, lm_loss
from textgym.rewards import RewardModel
from textgym.rewards.training import RewardTrainingConfig, train_reward_model


@dataclass
class DemoConfig:
    """Budgets of the demo (the defaults take a few minutes on 2 CPU cores)."""

    out: str = "reports/demo"
    """Report folder (models go in its subfolders)."""
    seed: int = 0
    """Seed of every step."""
    sft_examples: int = 3000
    """Demonstrations for supervised fine-tuning (most of them curt: one tip, no more)."""
    sft_epochs: int = 6
    """Passes over them."""
    rm_pairs: int = 3000
    """Pairwise comparisons (from rankings) for the reward model."""
    ppo_steps: int = 24_000
    """Environment steps (tokens generated) of PPO."""
    kl_coef: float = 0.1
    """Beta of the KL penalty to the SFT reference."""
    ppo_learning_rate: float = 3e-5
    """Adam learning rate of PPO."""
    eval_prompts: int = 64
    """Held-out questions evaluated before and after PPO."""
    max_new_tokens: int = 48
    """Longest answer in tokens."""
    threads: int = 2
    """torch threads."""


def _say(message: str) -> None:
    print(message, flush=True)


def supervised_fine_tuning(cfg: DemoConfig, out: Path):
    """Step 1: fine-tune the base LM on demonstrations; saves ``out/sft``."""
    tokenizer = load_tokenizer("textgym/tiny-lm")
    model = load_causal_lm("textgym/tiny-lm").train()
    rows = synthetic.dialogues()["train"].shuffle(seed=cfg.seed).select(range(cfg.sft_examples))
    seqs = encode(tokenizer, list(rows["demonstration"]), 128, eos=True)
    fit(model, lambda idx: lm_loss(model, [seqs[i] for i in idx])[0], len(seqs), cfg.sft_epochs, 32, cfg.seed,
        1e-3, "sft")
    model.eval().save_pretrained(out / "sft")
    tokenizer.save_pretrained(out / "sft")
    return model, tokenizer


def reward_model(cfg: DemoConfig, out: Path) -> dict:
    """Step 2: rankings -> pairs -> a reward model on the SFT trunk; saves ``out/reward_model``."""
    data = synthetic.dialogues()
    train = rankings_to_pairs(data["train"]).shuffle(seed=cfg.seed).select(range(cfg.rm_pairs))
    test = rankings_to_pairs(data["test"]).shuffle(seed=cfg.seed).select(range(500))
    k = len(data["train"][0]["completions"])
    _say(f"  {len(data['train'])} rankings of {k} answers -> {len(train)} training pairs (of "
         f"{k * (k - 1) // 2 * len(data['train'])})")
    metrics = train_reward_model(train, test, RewardTrainingConfig(base_model=str(out / "sft"),
                                                                   output_dir=str(out / "reward_model"), seed=cfg.seed))
    metrics["accuracy_by_rejected_kind"] = accuracy_by_rejected_kind(RewardModel(str(out / "reward_model")),
                                                                     data["test"])
    return metrics


def accuracy_by_rejected_kind(reward, rows) -> dict[str, float]:
    """Share of held-out dialogues where ``reward`` scores the helpful answer above each kind of bad one.

    The kinds: ``curt`` (one tip for the question), ``off-topic tips`` (a helpful-looking answer to
    another question), ``off-topic fact``, ``dismissive`` and ``wrong advice``. A reward model that
    only learned what helpful answers look like scores near 0.5 on off-topic tips: PPO can then raise
    its reward with answers to other questions.
    """
    ranks = synthetic.RANKS
    names = {ranks["curt"]: "curt", ranks["dismissive"]: "dismissive", ranks["wrong"]: "wrong advice"}
    rows = list(rows)
    helpful = [row["completions"][row["ranking"].index(ranks["helpful"])] for row in rows]
    helpful_scores = np.asarray(reward([row["prompt"] for row in rows], helpful))  # once per row
    which, prompts, others, kinds = [], [], [], []
    for i, row in enumerate(rows):
        for completion, rank in zip(row["completions"], row["ranking"], strict=True):
            if rank == ranks["helpful"]:
                continue
            if rank == ranks["off_topic"]:
                kind = "off-topic fact" if completion.strip() in synthetic.OFF_TOPIC else "off-topic tips"
            else:
                kind = names[rank]
            which.append(i)
            prompts.append(row["prompt"])
            others.append(completion)
            kinds.append(kind)
    wins = helpful_scores[which] > np.asarray(reward(prompts, others))
    kinds = np.asarray(kinds)
    return {kind: float(wins[kinds == kind].mean()) for kind in
            ("curt", "off-topic tips", "off-topic fact", "dismissive", "wrong advice") if (kinds == kind).any()}


def _audit_line(rm_metrics: dict) -> str:
    """The reward-model audit in words: "off-topic tips 0.49, off-topic fact 1.00, ..."."""
    return ", ".join(f"{kind} {acc:.2f}" for kind, acc in rm_metrics["accuracy_by_rejected_kind"].items())


def ppo(cfg: DemoConfig, out: Path) -> list[dict]:
    """Step 3: PPO through the helpfulness env with the learned reward; saves ``out/policy``."""
    from agents.lm_ppo import LMPPO, CausalLMWithValueHead
    from agents.ppo import PPOConfig

    envs = gym.make_vec("textgym/Helpfulness-v0", num_envs=16, vectorization_mode="vector_entry_point",
                        model=load_causal_lm(out / "sft"), tokenizer=load_tokenizer(out / "sft"),
                        reward_fn=RewardModel(str(out / "reward_model")), kl_coef=cfg.kl_coef,
                        max_new_tokens=cfg.max_new_tokens, ref_scoring="episode")
    agent = LMPPO(CausalLMWithValueHead(load_causal_lm(out / "sft")),
                  PPOConfig(learning_rate=cfg.ppo_learning_rate, batch_episodes=32, num_minibatches=2, update_epochs=2,
                            kl_coef=cfg.kl_coef, gamma=1.0, gae_lambda=1.0, ent_coef=0.0, seed=cfg.seed))

    def progress(row: dict) -> bool:
        _say(f"  step {row['global_step']:>6}/{cfg.ppo_steps}: reward {row['objective/score']:+.2f}, "
             f"KL {row['objective/kl']:.2f}, {row['charts/SPS']:.0f} tokens/s")
        return False

    rows = agent.learn(envs, cfg.ppo_steps, progress)
    agent.save(out / "policy")
    with open(out / "training.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def evaluate(cfg: DemoConfig, out: Path) -> dict:
    """Step 4: SFT vs PPO on held-out questions (:func:`textgym.eval.report.evaluate_policy`)."""
    tokenizer = load_tokenizer(out / "sft")
    reference = load_causal_lm(out / "sft")
    reward = RewardModel(str(out / "reward_model"))
    metrics = {name: evaluate_policy(model, tokenizer, "helpfulness", reward, reference, num_prompts=cfg.eval_prompts,
                                     max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
               for name, model in (("sft", reference), ("ppo", load_causal_lm(out / "policy")))}
    held, held_prompts = heldout_texts("helpfulness")
    metrics["base"] = {"perplexity_heldout": perplexity(load_causal_lm("textgym/tiny-lm"), tokenizer, held,
                                                        held_prompts)}
    samples = {name: metrics[name].pop("samples") for name in ("sft", "ppo")}
    prompts = metrics["sft"].pop("prompts")
    metrics["ppo"].pop("prompts")
    return {"metrics": metrics, "samples": samples, "prompts": prompts}


def write_report(cfg: DemoConfig, out: Path, rm_metrics: dict, rows: list[dict], result: dict, seconds: float) -> None:
    """``report.md``, ``metrics.json`` and the two plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = result["metrics"]
    steps = [r["global_step"] for r in rows]
    fig, (ax_r, ax_k) = plt.subplots(1, 2, figsize=(10, 4))
    ax_r.plot(steps, [r["objective/score"] for r in rows])
    ax_r.set(title="reward-model score during PPO", xlabel="environment steps")
    ax_k.plot(steps, [r["objective/kl"] for r in rows], color="tab:orange")
    ax_k.set(title="KL(policy || SFT reference) per answer, nats", xlabel="environment steps")
    fig.tight_layout()
    fig.savefig(out / "training_curves.png", dpi=100)
    plt.close(fig)
    plot_scores({"before PPO (SFT)": m["sft"], "after PPO": m["ppo"]}, out / "reward_scores.png",
                "reward of held-out answers")
    table = ["| | base | SFT (before PPO) | PPO (after) |", "|---|---|---|---|",
             f"| mean reward (reward model) | | {m['sft']['reward']['mean']:+.3f} | "
             f"{m['ppo']['reward']['mean']:+.3f} |",
             f"| KL to the SFT reference, nats per answer | | {m['sft']['kl_to_reference']:.3f} | "
             f"{m['ppo']['kl_to_reference']:.3f} |",
             f"| perplexity of held-out chosen answers | {m['base']['perplexity_heldout']:.3f} | "
             f"{m['sft']['perplexity_heldout']:.3f} | {m['ppo']['perplexity_heldout']:.3f} |",
             f"| distinct-2 | | {m['sft']['distinct_2']:.3f} | {m['ppo']['distinct_2']:.3f} |",
             f"| judge: P(helpful) (independent classifier) | | {m['sft']['judge/p_helpful']:.3f} | "
             f"{m['ppo']['judge/p_helpful']:.3f} |",
             f"| answers with tips for another question (of those giving tips) | | "
             f"{m['sft']['off_topic_tips_rate']:.3f} | {m['ppo']['off_topic_tips_rate']:.3f} |"]
    lines = ["# textgym demo: SFT -> reward model -> PPO", "",
             f"Finished in {seconds / 60:.1f} minutes. Reward model: held-out pairwise accuracy "
             f"{rm_metrics['after']['accuracy']:.3f} (before training {rm_metrics['before']['accuracy']:.3f}); "
             f"it prefers the helpful answer over {_audit_line(rm_metrics)} of the time.",
             "", *table, "", "![training curves](training_curves.png)", "",
             "![reward scores before and after](reward_scores.png)", "", "## Samples (same held-out questions)", ""]
    for prompt, before_text, after_text in list(zip(result["prompts"], result["samples"]["sft"],
                                                    result["samples"]["ppo"], strict=True))[:8]:
        lines += [f"**Question:** {prompt.strip()}", "", f"- before PPO: {before_text.strip()}",
                  f"- after PPO: {after_text.strip()}", ""]
    (out / "report.md").write_text("\n".join(lines))
    (out / "metrics.json").write_text(json.dumps({"reward_model": rm_metrics, **m}, indent=2))
    _say("\n" + "\n".join(table))


def run_demo(cfg: DemoConfig) -> dict:
    """Run the four steps with progress; returns the evaluation metrics."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    began = time.perf_counter()
    _say("[1/4] supervised fine-tuning of textgym/tiny-lm on demonstrations")
    supervised_fine_tuning(cfg, out)
    _say("[2/4] reward model from rankings")
    rm_metrics = reward_model(cfg, out)
    _say(f"  held-out pairwise accuracy {rm_metrics['after']['accuracy']:.3f}; helpful answer preferred over "
         f"{_audit_line(rm_metrics)}")
    _say("[3/4] PPO with a KL penalty to the SFT model, through textgym/Helpfulness-v0")
    rows = ppo(cfg, out)
    _say("[4/4] evaluation on held-out questions")
    result = evaluate(cfg, out)
    write_report(cfg, out, rm_metrics, rows, result, time.perf_counter() - began)
    _say(f"\nreport: {out / 'report.md'} ({(time.perf_counter() - began) / 60:.1f} minutes)")
    return result["metrics"]
