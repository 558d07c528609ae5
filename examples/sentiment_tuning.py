"""Sentiment tuning: PPO makes the tiny LM write positive reviews (seed 002's task, offline).

The environment is ``textgym/Sentiment-v0``: prompts are review openings, the reward is the
embedded sentiment classifier's positive logit, and the env pays ``kl_coef * log pi_ref`` each
step. Before and after, an independent judge (VADER's lexicon) scores the same held-out openings.

Run: ``python examples/sentiment_tuning.py`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch

import textgym  # noqa: F401  (registers the environments)
from agents.lm import LMConfig
from agents.lm_ppo import LMPPO
from textgym.eval.report import metrics_table
from textgym.models import load_causal_lm, load_tokenizer
from textgym.tasks import get_task
from textgym.tasks.evaluation import evaluate_policy


def main() -> None:
    """Train, then compare the reference and the policy on held-out openings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24_576, help="environment steps (generated tokens)")
    parser.add_argument("--kl-coef", type=float, default=0.05)
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = load_tokenizer("textgym/tiny-lm")
    envs = gym.make_vec("textgym/Sentiment-v0", num_envs=16, vectorization_mode="vector_entry_point",
                        kl_coef=args.kl_coef, ref_scoring="episode")
    agent = LMPPO(load_causal_lm("textgym/tiny-lm"), tokenizer,  # the KL coefficient is the env's
                  LMConfig(learning_rate=5e-5, batch_episodes=32, num_minibatches=2, update_epochs=2))
    rows = agent.learn(envs, args.steps)
    print(f"training score {rows[0]['objective/score']:+.2f} -> {rows[-1]['objective/score']:+.2f} "
          f"({len(rows)} updates)")
    reference, reward = envs.unwrapped.reference, get_task("sentiment").reward()
    results = {name: evaluate_policy(model, tokenizer, "sentiment", reward, reference, num_prompts=32)
               for name, model in (("before", reference), ("after", agent.model))}
    print("\n".join(metrics_table(results)))
    for prompt, before, after in list(zip(results["before"]["prompts"], results["before"]["samples"],
                                          results["after"]["samples"], strict=True))[:3]:
        print(f"\n{prompt}\n  before: {before}\n  after:  {after}")


if __name__ == "__main__":
    main()
