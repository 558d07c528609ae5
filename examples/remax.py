"""A second new algorithm in one file: ReMax (Li et al., 2023), REINFORCE with the greedy answer as the baseline.

Each prompt is answered once by sampling. The baseline of that answer is the reward of the policy's
greedy answer to the same prompt, which the environment scores exactly as it scores every episode
(:func:`agents.rollout.complete`): no value head, no groups of samples. Everything else comes from the
public API: :class:`agents.reinforce.REINFORCE` gives the loss and one on-policy step per batch,
:class:`agents.lm.LMAgent` collects, batches, updates, saves and resumes; the batch carries each
episode's prompt (``batch.prompts``) and the hook finds the environment in ``self.envs``. The
algorithm is :meth:`ReMax.advantages`.

The harness trains it like a built-in algorithm::

    textgym train --agent examples/remax.py:ReMax --env Sentiment-v0

Run: ``python examples/remax.py`` (16 updates, about 4 minutes of CPU time; the score rises from +2.6 to about +4).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch

import textgym  # noqa: F401  (registers the environments)
from agents.lm import LMConfig
from agents.reinforce import REINFORCE
from agents.rollout import EpisodeBatch, complete


class ReMax(REINFORCE):
    """REINFORCE whose baseline is the reward of the policy's greedy answer to the same prompt."""

    def advantages(self, batch: EpisodeBatch, rewards: torch.Tensor) -> None:
        """Return minus the greedy answer's score, on every agent token."""
        greedy = complete(self.envs, self.sampler, batch.prompts)  # resets the env: the next batch starts afresh
        baseline = torch.tensor([episode.score for episode in greedy], device=rewards.device)  # (B,)
        batch.advantages = (rewards.sum(1) - baseline)[:, None] * batch.token_mask  # (B, T)


def main(steps: int = 8192) -> dict[str, float]:
    """Train ReMax on textgym/Sentiment-v0; print and return the score before and after."""
    torch.manual_seed(0)
    envs = gym.make_vec("textgym/Sentiment-v0", num_envs=16, vectorization_mode="vector_entry_point",
                        max_new_tokens=16, ref_scoring="episode")
    agent = ReMax("textgym/tiny-lm", config=LMConfig(learning_rate=5e-4, batch_episodes=32, norm_adv=False))
    rows = agent.learn(envs, steps)
    first, last = rows[0]["objective/score"], sum(r["objective/score"] for r in rows[-3:]) / len(rows[-3:])
    print(f"ReMax: sentiment score {first:+.2f} -> {last:+.2f} over {len(rows)} updates "
          f"(KL to the reference {rows[-1]['objective/kl']:.2f} nats)")
    return {"before": first, "after": last}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8192, help="environment steps (generated tokens)")
    main(parser.parse_args().steps)
