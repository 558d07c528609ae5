"""One update of an LM algorithm on fixed episodes, alone or in several processes (tests/agents/test_accelerate.py).

    python tests/agents/ddp_worker.py ALGORITHM OUT.safetensors
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 tests/agents/ddp_worker.py ALGORITHM OUT

Every process builds the same 8 episodes and the same model; process r of P trains on episodes
r*8/P .. (r+1)*8/P - 1. The main process saves the weights after the update.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import save_file

from agents import agent_class
from agents.lm import LMConfig
from agents.rollout import Episode, EpisodeBatch, evaluate
from textgym.models.tiny import random_causal_lm, word_tokenizer

EPISODES = 8


def episodes(policy: torch.nn.Module) -> list[Episode]:
    """Fixed episodes of different lengths, groups of two; behaviour log-probs are the policy's own."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(EPISODES):
        prompt, completion = rng.integers(1, 30, rng.integers(1, 4)), rng.integers(0, 30, rng.integers(1, 6))
        out.append(Episode(prompt, completion, rng.normal(-3, 1, len(completion)), float(rng.normal()),
                           values=rng.normal(0, 0.5, len(completion)), group=i // 2))
    with torch.no_grad():
        for episode in out:
            logprobs, _, _ = evaluate(policy, EpisodeBatch.from_episodes([episode], 0))
            episode.logprobs = logprobs[0].double().numpy()
    return out


def main() -> None:
    """Update once on this process's share of the episodes; save the weights."""
    algorithm, out = sys.argv[1], sys.argv[2]
    accelerator = Accelerator()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tokenizer = word_tokenizer([f"w{i}" for i in range(1, 30)])
    agent = agent_class(algorithm)(random_causal_lm(len(tokenizer), 1, 16, n_positions=32), tokenizer,
                                   LMConfig(learning_rate=1e-2, num_minibatches=1, update_epochs=2), accelerator)
    share = EPISODES // accelerator.num_processes
    mine = episodes(agent.module)[accelerator.process_index * share:(accelerator.process_index + 1) * share]
    agent.kl_coef = 0.1  # no environment: the coefficient the update applies
    agent.update(EpisodeBatch.from_episodes(mine, 0, accelerator.device))
    if accelerator.is_main_process:
        save_file({k: v.clone() for k, v in agent.module.state_dict().items()}, out)  # tied weights: copies
    agent.close()


if __name__ == "__main__":
    main()
