"""Data-parallel RL for a language model on several processes, through accelerate.

    accelerate launch --num_processes 2 --cpu examples/distributed_train.py   # two CPU processes (gloo)
    accelerate launch --num_processes 8 examples/distributed_train.py          # eight GPUs (NCCL), unchanged
    python examples/distributed_train.py                                       # one process

Each process rolls out its own episodes of the embedded sentiment task (its reference model on its
own device); accelerate wraps the policy for data parallelism, so the gradients are averaged and
the weights stay identical on every process. FSDP or DeepSpeed ZeRO come from accelerate's config
(``accelerate launch --config_file ...``), not from this script. The main process prints the score
and writes every process's weight checksum to ``--out`` (JSON). ``textgym train`` runs the same way:
``accelerate launch --num_processes 2 --cpu -m textgym.app.cli train ...``.
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
import torch
from accelerate import Accelerator

import textgym  # noqa: F401
from agents.lm import LMConfig
from agents.lm_ppo import LMPPO
from textgym.models import load_causal_lm, load_tokenizer


def checksum(model: torch.nn.Module) -> float:
    """The sum of every weight, in float64: equal on every process when the weights are."""
    return sum(float(p.detach().double().sum()) for p in model.parameters())


def main() -> None:
    """Train a few updates on every process, then compare the weights."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="environment steps, over all processes")
    parser.add_argument("--out", default="distributed_checksums.json")
    args = parser.parse_args()
    accelerator = Accelerator()
    torch.set_num_threads(1)
    torch.manual_seed(accelerator.process_index)  # different initial value heads on purpose: DDP must align them
    reference = load_causal_lm("textgym/tiny-lm").to(accelerator.device)
    envs = gym.make_vec("textgym/Sentiment-v0", num_envs=8, vectorization_mode="vector_entry_point",
                        model=reference, tokenizer=load_tokenizer("textgym/tiny-lm"), max_new_tokens=12,
                        ref_scoring="episode")
    agent = LMPPO("textgym/tiny-lm", config=LMConfig(learning_rate=1e-4, batch_episodes=8, num_minibatches=2,
                                                     update_epochs=1), accelerator=accelerator)
    initial = checksum(agent.module)
    rows = agent.learn(envs, args.steps)
    sums = accelerator.gather(torch.tensor([checksum(agent.module)], dtype=torch.float64, device=accelerator.device))
    if accelerator.is_main_process:
        sums = sums.tolist()
        print(f"{accelerator.num_processes} process(es), {len(rows)} updates each; score "
              f"{rows[0]['objective/score']:.2f} -> {rows[-1]['objective/score']:.2f}; weight checksums per process: "
              f"{sums}")
        with open(args.out, "w") as handle:
            json.dump({"world_size": accelerator.num_processes, "checksums": sums, "initial_rank0": initial,
                       "updates": len(rows), "global_step": agent.global_step}, handle)
    agent.close()  # instead of accelerator.end_training(): a teardown that cannot deadlock at exit


if __name__ == "__main__":
    main()
