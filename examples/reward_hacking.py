"""Reward hacking, shown exactly: PPO on the tiny language with and without the KL penalty.

The reward pays 1 for every "good". With ``kl_coef=0`` nothing holds the policy to the language:
it learns to repeat "good" and never end a sentence (reward up, KL to the reference exploding,
distinct-2 collapsing). With ``kl_coef=0.3`` it uses "good" more while still writing the language.
The reference is an exact bigram table, so KL and expected reward are computed exactly, not sampled.

Run: ``python examples/reward_hacking.py`` (seconds). Writes ``reward_hacking.png``.
"""

from __future__ import annotations

import argparse
import dataclasses

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import textgym  # noqa: E402, F401
from agents.ppo import PPO  # noqa: E402
from agents.recipes import TINY_LANGUAGE_ENVS, TINY_LANGUAGE_PPO, tiny_language_policy  # noqa: E402
from textgym.models.bigram import WORDS, bigram_table, exact_rollout_stats, tiny_language  # noqa: E402
from textgym.rewards import DistinctN  # noqa: E402

GOOD = WORDS.index("good") + 1


def train(kl_coef: float, steps: int, seed: int = 0):
    """PPO on the tiny language; returns the policy and the exact stats after every update."""
    envs = gym.make_vec("textgym/TinyLanguage-v0", num_envs=TINY_LANGUAGE_ENVS, vectorization_mode="vector_entry_point",
                        kl_coef=kl_coef)
    policy = tiny_language_policy()
    agent = PPO(policy, dataclasses.replace(TINY_LANGUAGE_PPO, seed=seed))  # the KL coefficient is the env's
    reference = bigram_table()
    history = [{"step": 0, **exact_rollout_stats(policy.probs().numpy(), reference, GOOD, 12)}]
    agent.learn(envs, steps, lambda row: history.append(
        {"step": row["global_step"], **exact_rollout_stats(policy.probs().numpy(), reference, GOOD, 12)}) and False)
    return policy, history


def samples(policy, n: int = 4, seed: int = 0) -> list[str]:
    """Sentences sampled from the policy table, from BOS."""
    _, tokenizer = tiny_language()
    probs, rng, out = policy.probs().numpy(), np.random.default_rng(seed), []
    for _ in range(n):
        token, words = 0, []
        for _ in range(12):
            token = int(rng.choice(len(probs), p=probs[token] / probs[token].sum()))
            words.append(token)
            if token == 0:
                break
        out.append(tokenizer.decode(words))
    return out


def main() -> None:
    """Train with and without the KL penalty; print and plot."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40_000, help="environment steps per run")
    parser.add_argument("--out", default="reward_hacking.png")
    args = parser.parse_args()
    torch.manual_seed(0)
    fig, (ax_reward, ax_kl) = plt.subplots(1, 2, figsize=(10, 4))
    for kl_coef in (0.0, 0.3):
        policy, history = train(kl_coef, args.steps)
        final = history[-1]
        texts = samples(policy)
        print(f"kl_coef={kl_coef}: E[#good]={final['reward']:.2f} (reference {history[0]['reward']:.3f}), "
              f"exact KL={final['kl']:.2f} nats, length={final['length']:.1f}, "
              f"distinct-2={DistinctN(2)([''] * len(texts), texts).mean():.2f}")
        for text in texts:
            print(f"    {text}")
        steps = [h["step"] for h in history]
        ax_reward.plot(steps, [h["reward"] for h in history], label=f"kl_coef={kl_coef}")
        ax_kl.plot(steps, [h["kl"] for h in history], label=f"kl_coef={kl_coef}")
    ax_reward.set(title='expected "good" per sentence (exact)', xlabel="environment steps")
    ax_kl.set(title="KL(policy || reference), nats (exact)", xlabel="environment steps", yscale="symlog")
    ax_reward.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
