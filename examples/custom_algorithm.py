"""A new RL algorithm for language models in one file: RAFT, reward-ranked fine-tuning (Dong et al., 2023).

Each prompt is answered ``group_size`` times; the best answer of each group is trained on with the
plain language-model loss, the others not at all (expert iteration on the policy's own samples).
Everything else comes from the public API: :class:`agents.lm.LMAgent` collects episodes in prompt
groups (:class:`agents.rollout.Rollout`), batches them (:class:`agents.rollout.EpisodeBatch`), runs
the update loop, saves, loads and resumes; :func:`agents.rollout.evaluate` scores a minibatch in one
teacher-forced forward. The algorithm is :meth:`RAFT.advantages` and :meth:`RAFT.loss`.

The harness trains it like a built-in algorithm, with checkpoints, resume and evaluation::

    textgym train --agent examples/custom_algorithm.py:RAFT --env Sentiment-v0

Run: ``python examples/custom_algorithm.py`` (a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch

import textgym  # noqa: F401  (registers the environments)
from agents.lm import LMAgent, LMConfig
from agents.rollout import EpisodeBatch, evaluate
from textgym.eval.report import fixed


class RAFT(LMAgent):
    """Reward-ranked fine-tuning: the language-model loss on the best completion of each prompt group."""

    group_size = 4  # textgym train's default for this agent

    def advantages(self, batch: EpisodeBatch, rewards: torch.Tensor) -> None:
        """1 on every token of each group's best episode (by return), 0 elsewhere."""
        returns = rewards.sum(1)  # (B,)
        rivals = batch.groups[:, None] == batch.groups[None, :]  # (B, B): same prompt
        best = ((returns[:, None] >= returns[None, :]) | ~rivals).all(1)  # (B,): no rival scored higher
        batch.advantages = best.float()[:, None] * batch.token_mask  # (B, T)

    def loss(self, mb: EpisodeBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean negative log-likelihood of the chosen episodes' tokens."""
        logprobs, _, _ = evaluate(self.policy, mb, self.num_actions)  # (b, T): one forward
        chosen = mb.advantages
        loss = -(logprobs * chosen).sum() / self.reduce(chosen.sum()).clamp(min=1) * self.accelerator.num_processes
        return loss, {"losses/policy_loss": loss.detach()}


def main(steps: int = 12_288) -> dict[str, float]:
    """Train RAFT on textgym/Sentiment-v0; print and return the score before and after."""
    torch.manual_seed(0)
    envs = gym.make_vec("textgym/Sentiment-v0", num_envs=16, group_size=4, vectorization_mode="vector_entry_point",
                        max_new_tokens=16, ref_scoring="episode")
    agent = RAFT("textgym/tiny-lm", config=LMConfig(learning_rate=1e-4, batch_episodes=32, update_epochs=1))
    rows = agent.learn(envs, steps)
    first, last = rows[0]["objective/score"], sum(r["objective/score"] for r in rows[-3:]) / len(rows[-3:])
    print(f"RAFT: sentiment score {first:+.2f} -> {last:+.2f} over {len(rows)} updates "
          f"(KL to the reference {fixed(rows[-1]['objective/kl'], 2)} nats)")
    return {"before": first, "after": last}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12_288, help="environment steps (generated tokens)")
    main(parser.parse_args().steps)
