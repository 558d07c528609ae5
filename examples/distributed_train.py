"""Data-parallel PPO for a language model on CPUs: ``torchrun --nproc-per-node 2 examples/distributed_train.py``.

Each process rolls out its own episodes of the embedded sentiment task; gradients are averaged
across processes (gloo), so the weights stay identical. Rank 0 prints the scores and writes every
rank's weight checksum to ``--out`` (JSON). Run alone (``python examples/distributed_train.py``) it
trains in one process.
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
import torch
import torch.distributed as dist

import textgym  # noqa: F401
from agents import distributed
from agents.lm_ppo import LMPPO, CausalLMWithValueHead
from agents.ppo import PPOConfig
from textgym.models import load_causal_lm


def main() -> None:
    """Train a few updates on every rank, then compare the weights."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="environment steps per process")
    parser.add_argument("--out", default="distributed_checksums.json")
    args = parser.parse_args()
    rank, world = distributed.init()
    torch.set_num_threads(1)
    torch.manual_seed(rank)  # different initial value heads on purpose: the broadcast must align them
    envs = gym.make_vec("textgym/Sentiment-v0", num_envs=8, vectorization_mode="vector_entry_point",
                        max_new_tokens=12, ref_scoring="episode")
    agent = LMPPO(CausalLMWithValueHead(load_causal_lm("textgym/tiny-lm")),
                  PPOConfig(learning_rate=1e-4, batch_episodes=8, num_minibatches=2, update_epochs=1, kl_coef=0.05))
    initial = sum(float(p.detach().double().sum()) for p in agent.policy.parameters())
    rows = agent.learn(envs, args.steps)
    checksum = torch.tensor([sum(float(p.detach().double().sum()) for p in agent.policy.parameters())],
                            dtype=torch.float64)
    gathered = [torch.zeros_like(checksum) for _ in range(world)]
    if distributed.active():
        dist.all_gather(gathered, checksum)
    else:
        gathered = [checksum]
    if rank == 0:
        sums = [float(x) for x in gathered]
        print(f"{world} process(es), {len(rows)} updates each; score {rows[0]['objective/score']:.2f} -> "
              f"{rows[-1]['objective/score']:.2f}; weight checksums per rank: {sums}")
        with open(args.out, "w") as handle:
            json.dump({"world_size": world, "checksums": sums, "initial_rank0": initial, "updates": len(rows)}, handle)
    if distributed.active():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
