"""Quickstart: make the text-generation env, step it with a sampling agent, read reward and info.

Run: ``python examples/quickstart.py``. Works offline on the embedded kit.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import textgym  # noqa: F401  (registers the textgym/... environments)
from agents.sampling import LMSampler
from textgym.models import load_causal_lm


def main() -> None:
    """Sample one completion per task from the embedded tiny LM and print rewards and info."""
    policy = load_causal_lm("textgym/tiny-lm")
    for env_id in ("textgym/Sentiment-v0", "textgym/Helpfulness-v0", "textgym/Detox-v0"):
        env = gym.make(env_id, render_mode="ansi")
        agent = LMSampler(policy, num_envs=1, pad_id=env.unwrapped.tokenizer.pad_token_id, seed=0)
        obs, info = env.reset(seed=1)
        start, done, rewards = True, False, []
        while not done:
            action = agent.act(obs, np.array([start]))[0]
            obs, reward, terminated, truncated, info = env.step(action)
            start, done = False, terminated or truncated
            rewards.append(reward)
        print(f"{env_id}: {len(rewards)} tokens, {'EOS' if terminated else 'truncated'}")
        print(f"  text         {env.render()!r}")
        print(f"  per-step     {', '.join(f'{r:+.2f}' for r in rewards[:6])}, ...  (kl_coef * log pi_ref)")
        print(f"  score        {info['score']:+.3f}  ({env.unwrapped.reward_fn.name})")
        print(f"  reward terms {info['reward_terms']}  return {sum(rewards):+.3f}\n")


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
