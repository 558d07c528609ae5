"""The three-step RLHF pipeline as one script: SFT -> reward model from rankings -> PPO with a KL penalty.

1. Supervised fine-tuning of the tiny LM on demonstrations (hh-rlhf-format dialogues, mostly curt).
2. A reward model: rankings of five answers -> pairwise comparisons -> a scalar head trained with
   ``-log sigmoid(r_chosen - r_rejected)``.
3. PPO through ``textgym/Helpfulness-v0``: the SFT model starts the policy and is the frozen
   reference; the learned reward model scores each answer.
4. Evaluation on held-out questions: reward, KL, perplexity of held-out chosen answers, distinct-2
   and the independent helpfulness judge.

``textgym demo`` runs the same steps with a report folder and plots. Run:
``python examples/rlhf_pipeline.py`` (about two minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import torch

import textgym  # noqa: F401  (registers the environments)
from agents.lm import LMConfig
from agents.lm_ppo import LMPPO
from textgym.data import synthetic
from textgym.data.preferences import rankings_to_pairs
from textgym.eval.report import metrics_table
from textgym.models import load_causal_lm, load_tokenizer
from textgym.models.sft import SFTTrainingConfig, train_sft
from textgym.rewards import RewardModel
from textgym.rewards.training import RewardTrainingConfig, train_reward_model
from textgym.tasks.evaluation import evaluate_policy


def main() -> None:
    """Run the three steps and the evaluation."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/rlhf-pipeline")
    parser.add_argument("--sft-examples", type=int, default=3000)
    parser.add_argument("--rm-pairs", type=int, default=3000)
    parser.add_argument("--ppo-steps", type=int, default=24_000)
    args = parser.parse_args()
    out, data = Path(args.out), synthetic.dialogues()
    torch.manual_seed(0)

    print("1. supervised fine-tuning on demonstrations")
    train_sft(data["train"]["demonstration"][: args.sft_examples],
              SFTTrainingConfig(base_model="textgym/tiny-lm", output_dir=str(out / "sft"), epochs=6), progress=True)
    tokenizer = load_tokenizer(out / "sft")

    print("2. reward model from rankings")
    pairs = rankings_to_pairs(data["train"]).shuffle(seed=0)
    held_out = rankings_to_pairs(data["test"]).shuffle(seed=0).select(range(200))
    metrics = train_reward_model(pairs.select(range(min(args.rm_pairs, len(pairs)))), held_out,
                                 RewardTrainingConfig(base_model=str(out / "sft"), output_dir=str(out / "rm")))
    print(f"   held-out pairwise accuracy {metrics['before']['accuracy']:.2f} -> {metrics['after']['accuracy']:.2f}")

    print("3. PPO with a KL penalty to the SFT model")
    reward = RewardModel(str(out / "rm"))
    envs = gym.make_vec("textgym/Helpfulness-v0", num_envs=16, vectorization_mode="vector_entry_point",
                        model=load_causal_lm(out / "sft"), tokenizer=tokenizer, reward_fn=reward, kl_coef=0.1,
                        ref_scoring="episode")
    agent = LMPPO(load_causal_lm(out / "sft"), tokenizer,  # kl_coef is the env's
                  LMConfig(learning_rate=3e-5, batch_episodes=32, num_minibatches=2, update_epochs=2))
    rows = agent.learn(envs, args.ppo_steps)
    print(f"   reward {rows[0]['objective/score']:+.2f} -> {rows[-1]['objective/score']:+.2f}")

    print("4. evaluation on held-out questions")
    sft = envs.unwrapped.reference
    results = {name: evaluate_policy(policy, tokenizer, "helpfulness", reward, sft, num_prompts=64)
               for name, policy in (("SFT", sft), ("PPO", agent.model))}
    print("\n".join(metrics_table(results)))


if __name__ == "__main__":
    main()
