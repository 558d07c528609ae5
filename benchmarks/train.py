"""End-to-end training speed: textgym PPO, RLOO and GRPO vs TRL's GRPO and RLOO trainers.

Same random GPT-2 (saved to disk, 8192-token vocabulary), same 16-token prompts, 32 new tokens, 16
completions per update (RLOO and GRPO: 4 prompts x 4 completions, as TRL's ``num_generations=4``;
PPO: 16 prompts), a fixed reward (a keyword count), one update epoch in one minibatch, KL
coefficient 0.05, no entropy bonus (TRL's losses have none), fp32, CPU, 1 torch thread.
Completions/s counts rollout + reward + update, timed after a warm-up update. Ratios compare each
textgym algorithm with TRL's implementation of the same one (PPO with the faster of TRL's).

Beside the ratios: the model FLOPs per second each method reaches, and the machine's matrix-product
peak measured in the same run (fp32 ``torch.mm`` on square matrices, at the benchmark's one thread).
Model FLOPs count the work every method must do for a completion, whatever it recomputes: the
forward of the prompt and the sampled tokens while sampling, the reference's forward, and the
policy's forward and backward (twice the forward) in the update; the output head only where a
token's distribution is needed. So FLOPs/s are completions/s in the units of the hardware, and their
share of the peak says how far a method is from compute-bound. Writes
``benchmarks/results/train.json`` with the CPU's name and flags; needs the ``bench`` extra (TRL).

Run: ``python benchmarks/train.py`` (``--quick`` for one small smoke case).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import TrainerCallback

from agents import agent_class
from agents.lm import LMConfig
from textgym.app.files import cpu_flags, cpu_name
from textgym.envs import TextGenerationVectorEnv
from textgym.models import load_causal_lm
from textgym.models.tiny import random_causal_lm, word_tokenizer
from textgym.rewards import KeywordReward

COMPLETIONS, GROUP, NEW_TOKENS, PROMPT_TOKENS, VOCAB, KL, LR = 16, 4, 32, 16, 8192, 0.05, 1e-5


def model_flops_per_completion(layers: int, width: int) -> float:
    """Model FLOPs of one completion (module docstring): 5 forwards' worth of matrix products, GPT-2 shapes."""
    positions = PROMPT_TOKENS + NEW_TOKENS - 1  # every token but the last sampled one goes through the trunk
    per_position = layers * (24 * width ** 2 + 4 * width * (positions + 1) / 2)  # projections, MLP, attention
    head = 2 * width * VOCAB * NEW_TOKENS  # a distribution per sampled token
    return 5 * (positions * per_position + head)  # sampling, reference, update (forward + 2x backward)


def matmul_peak(seconds: float = 2.0) -> float:
    """FLOPs/s of the fastest of a few fp32 ``torch.mm`` sizes, at the current thread count."""
    best = 0.0
    for n in (256, 512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)  # warm-up
        count, began = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - began) < seconds / 4:
            torch.mm(a, b)
            count += 1
        best = max(best, 2 * n ** 3 * count / elapsed)
    return best


def setup(size: str, folder: Path) -> tuple[str, list[str], KeywordReward]:
    """Save the model and tokenizer to ``folder``; return its path, the prompts and the reward."""
    layers, width = (int(x) for x in size.split("x"))
    words = [f"w{i}" for i in range(1, VOCAB)]
    tokenizer = word_tokenizer(words)
    random_causal_lm(VOCAB, layers, width, n_positions=128, seed=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    rng = np.random.default_rng(0)
    prompts = [" ".join(rng.choice(words, PROMPT_TOKENS)) for _ in range(64)]
    return str(folder), prompts, KeywordReward(words[: VOCAB // 2])


def textgym_run(path: str, prompts: list[str], reward: KeywordReward, algorithm: str, updates: int) -> float:
    """Completions/s of a textgym algorithm (``ppo``, ``rloo``, ``grpo``) over ``updates`` timed updates."""
    from textgym.models import load_tokenizer

    tokenizer = load_tokenizer(path)
    envs = TextGenerationVectorEnv(num_envs=COMPLETIONS, group_size=1 if algorithm == "ppo" else GROUP,
                                   model=load_causal_lm(path), tokenizer=tokenizer, prompts=prompts, reward_fn=reward,
                                   max_context=PROMPT_TOKENS + NEW_TOKENS, max_new_tokens=NEW_TOKENS, kl_coef=KL,
                                   ref_scoring="episode")
    cfg = LMConfig(learning_rate=LR, batch_episodes=COMPLETIONS, num_minibatches=1, update_epochs=1,
                   ent_coef=0.0)  # TRL's GRPO and RLOO losses have no entropy bonus: same gradient work
    agent = agent_class(algorithm)(load_causal_lm(path), tokenizer, cfg)
    stamps: list[float] = []  # the end of every update
    budget = (updates + 1) * COMPLETIONS * NEW_TOKENS
    agent.learn(envs, budget, lambda row: stamps.append(time.perf_counter()) and False)
    return COMPLETIONS * (len(stamps) - 1) / (stamps[-1] - stamps[0])


class _Stamps(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())


def trl_run(path: str, prompts: list[str], reward: KeywordReward, trainer_name: str, updates: int, out: str) -> float:
    """Completions/s of TRL's GRPO or RLOO trainer, 16 completions (4 prompts x 4) per optimizer step."""
    import trl

    def reward_func(completions, **kwargs):
        return reward([""] * len(completions), list(completions)).tolist()

    config_class, trainer_class = ((trl.GRPOConfig, trl.GRPOTrainer) if trainer_name == "grpo"
                                   else (trl.RLOOConfig, trl.RLOOTrainer))
    args = config_class(output_dir=out, per_device_train_batch_size=COMPLETIONS, num_generations=GROUP,
                        max_completion_length=NEW_TOKENS, beta=KL, num_iterations=1, learning_rate=LR, use_cpu=True,
                        bf16=False, report_to=[], logging_steps=10_000, save_strategy="no", max_steps=updates + 1,
                        disable_dropout=True, seed=0)
    stamps = _Stamps()
    trainer = trainer_class(model=path, reward_funcs=reward_func, args=args, callbacks=[stamps],
                            train_dataset=datasets.Dataset.from_dict({"prompt": prompts}))
    trainer.train()
    return COMPLETIONS * (len(stamps.times) - 1) / (stamps.times[-1] - stamps.times[0])


def main() -> None:
    """Run every method once per round, in an order rotated each round; report medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["2x128", "6x384"])
    parser.add_argument("--updates", type=int, default=4, help="timed updates per run")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each method (median reported)")
    parser.add_argument("--output", default="benchmarks/results/train.json")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.models, args.updates, args.rounds = ["2x128"], 2, 1
    torch.set_num_threads(1)
    peak = matmul_peak()
    print(f"matmul peak: {peak / 1e9:.1f} GFLOP/s (fp32, 1 thread)", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.models:
            path, prompts, reward = setup(size, Path(tmp) / size)
            runs: dict[str, list[float]] = {name: [] for name in ("textgym_ppo", "textgym_rloo", "textgym_grpo",
                                                                   "trl_grpo", "trl_rloo")}
            names = list(runs)
            for round_ in range(args.rounds):  # each round starts with the next method: drift hits all alike
                for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                    library, algorithm = name.split("_")
                    speed = (textgym_run(path, prompts, reward, algorithm, args.updates) if library == "textgym"
                             else trl_run(path, prompts, reward, algorithm, args.updates, f"{tmp}/out"))
                    runs[name].append(speed)
            medians = {k: statistics.median(v) for k, v in runs.items()}
            ratios = {"grpo": medians["textgym_grpo"] / medians["trl_grpo"],
                      "rloo": medians["textgym_rloo"] / medians["trl_rloo"],
                      "ppo_over_best_trl": medians["textgym_ppo"] / max(medians["trl_grpo"], medians["trl_rloo"])}
            flops = model_flops_per_completion(*(int(x) for x in size.split("x")))
            results[size] = {"completions_per_s": medians, "ratios": ratios,
                             "model_gflops_per_s": {k: v * flops / 1e9 for k, v in medians.items()},
                             "share_of_matmul_peak": {k: v * flops / peak for k, v in medians.items()},
                             "model_gflops_per_completion": flops / 1e9, "runs": runs}
            print(f"{size}: " + ", ".join(f"{k} {v:.1f} ({v * flops / peak:.0%} of peak)" for k, v in medians.items())
                  + " completions/s; ratios " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()), flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpu": cpu_name(), "cpu_flags": cpu_flags(), "threads": 1, "torch": torch.__version__,
               "matmul_peak_gflops_per_s": peak / 1e9}
    Path(args.output).write_text(json.dumps({"results": results, "args": vars(args), "machine": machine}, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
