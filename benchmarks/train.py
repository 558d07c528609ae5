"""End-to-end training speed: textgym PPO, RLOO and GRPO vs TRL's GRPO and RLOO trainers.

Same random GPT-2 (saved to disk, 8192-token vocabulary), same 16-token prompts, 32 new tokens, 16
completions per update (RLOO and GRPO: 4 prompts x 4 completions, as TRL's ``num_generations=4``;
PPO: 16 prompts), a fixed reward (a keyword count), one update epoch in one minibatch, KL
coefficient 0.05, no entropy bonus (TRL's losses have none), fp32, CPU, 1 torch thread.
Completions/s counts rollout + reward + update, timed after a warm-up update. Ratios compare each
textgym algorithm with TRL's implementation of the same one (PPO with the faster of TRL's). Writes
``benchmarks/results/train.json``; needs the ``bench`` extra (TRL).

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
from textgym.envs import TextGenerationVectorEnv
from textgym.models import load_causal_lm
from textgym.models.tiny import random_causal_lm, word_tokenizer
from textgym.rewards import KeywordReward

COMPLETIONS, GROUP, NEW_TOKENS, PROMPT_TOKENS, VOCAB, KL, LR = 16, 4, 32, 16, 8192, 0.05, 1e-5


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
    """Alternate every method per round; report medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["2x128", "6x384"])
    parser.add_argument("--updates", type=int, default=4, help="timed updates per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each method (median reported)")
    parser.add_argument("--output", default="benchmarks/results/train.json")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.models, args.updates, args.rounds = ["2x128"], 2, 1
    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.models:
            path, prompts, reward = setup(size, Path(tmp) / size)
            runs: dict[str, list[float]] = {name: [] for name in ("textgym_ppo", "textgym_rloo", "textgym_grpo",
                                                                   "trl_grpo", "trl_rloo")}
            for _ in range(args.rounds):
                for algorithm in ("ppo", "rloo", "grpo"):
                    runs[f"textgym_{algorithm}"].append(textgym_run(path, prompts, reward, algorithm, args.updates))
                for algorithm in ("grpo", "rloo"):
                    runs[f"trl_{algorithm}"].append(trl_run(path, prompts, reward, algorithm, args.updates,
                                                            f"{tmp}/out"))
            medians = {k: statistics.median(v) for k, v in runs.items()}
            ratios = {"grpo": medians["textgym_grpo"] / medians["trl_grpo"],
                      "rloo": medians["textgym_rloo"] / medians["trl_rloo"],
                      "ppo_over_best_trl": medians["textgym_ppo"] / max(medians["trl_grpo"], medians["trl_rloo"])}
            results[size] = {"completions_per_s": medians, "runs": runs, "ratios": ratios}
            print(f"{size}: " + ", ".join(f"{k} {v:.1f}" for k, v in medians.items()) + " completions/s; ratios "
                  + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()), flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"results": results, "args": vars(args), "torch": torch.__version__},
                                            indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
