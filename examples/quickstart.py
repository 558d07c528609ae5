"""Quickstart: make the text-generation env, step it with a sampling agent, read reward and info.

Run: ``python examples/quickstart.py``. Works offline.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import textgym  # noqa: F401  (registers textgym/TextGeneration-v0)
from agents.sampling import LMSampler
from textgym.models.tiny import random_causal_lm, word_tokenizer
from textgym.rewards import KeywordReward


def main() -> None:
    """Run two episodes and print every step's reward and the final info."""
    tokenizer = word_tokenizer("the a movie film was is great fun dull long plot acting good bad".split())
    model = random_causal_lm(len(tokenizer), n_layer=2, n_embd=64, seed=0)
    env = gym.make(
        "textgym/TextGeneration-v0", model=model, tokenizer=tokenizer,
        prompts=["the movie was", "a film is"], reward_fn=KeywordReward(["great", "fun", "good"]),
        max_context=24, max_new_tokens=8, kl_coef=0.05, render_mode="ansi",
    )
    agent = LMSampler(model, num_envs=1, pad_id=tokenizer.pad_token_id, seed=0)
    for episode in range(2):
        obs, info = env.reset(seed=episode)
        print(f"episode {episode}: prompt {info['prompt']!r}")
        start, done, total = True, False, 0.0
        while not done:
            action = int(agent.act(obs, np.array([start]))[0])
            obs, reward, terminated, truncated, info = env.step(action)
            start, done, total = False, terminated or truncated, total + reward
            print(f"  token {tokenizer.decode([action])!r:>10}  reward {reward:+.3f}  "
                  f"log pi_ref {info['ref_logprob']:+.2f}")
        print(f"  text: {env.render()!r}")
        print(f"  score {info['score']}  reward terms {info['reward_terms']}  return {total:+.3f}\n")


if __name__ == "__main__":
    main()
