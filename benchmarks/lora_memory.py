"""Peak memory of a PPO training step: LoRA reference sharing vs two full model copies.

On the 6 x 384 GPT-2 (8192-token vocabulary), each setup runs in a fresh process: build the policy
and the reference, sample 16 completions of 32 tokens with the policy's KV cache, score them with
the reference's own KV cache, then update as PPO does: one forward/backward and Adam step per
minibatch of 4 episodes. Activations scale with the minibatch (``--minibatch``); the weights,
gradients and optimizer state are what LoRA sharing saves. Reports the
peak resident memory above the process's baseline (after imports and a warm-up step on a tiny
model, which load the kernels every setup needs), and the ratio LoRA / full.

Run: ``python benchmarks/lora_memory.py``. Writes ``benchmarks/results/lora_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

# Large blocks through mmap, so freed memory leaves the process and peak RSS tracks live tensors
# (glibc otherwise keeps freed heap memory, and the peak measures its allocator, not the models).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def peak_mib() -> float:
    """This process's peak resident set size, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(setup: str, batch: int, new_tokens: int, minibatch: int) -> dict:
    """One training step with ``setup`` = "full" or "lora"; memory figures in MiB."""
    import copy

    import torch

    from agents.lora import AdapterDisabledReference, lora_policy
    from agents.policy import LMPolicy
    from agents.sampling import LMSampler
    from textgym.models.kv import SlotKVCache
    from textgym.models.tiny import random_causal_lm

    torch.set_num_threads(1)
    _warm_up()  # the first matmul, backward and Adam step load kernels: a fixed cost, not the models'
    baseline = peak_mib()
    base = random_causal_lm(8192, 6, 384, n_positions=256, seed=0)
    if setup == "full":
        reference, policy_lm = base, copy.deepcopy(base)
    else:
        policy_lm = lora_policy(base)
        reference = AdapterDisabledReference(policy_lm)
    policy = LMPolicy(policy_lm)
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=1e-4)
    prompts = torch.randint(1, 8192, (batch, 16))
    sampler = LMSampler(policy_lm, batch, pad_id=0, seed=0)
    obs = {"input_ids": prompts.numpy(), "attention_mask": torch.ones_like(prompts).numpy()}
    tokens, start = [], torch.ones(batch, dtype=torch.bool).numpy()
    for _ in range(new_tokens):
        tokens.append(torch.from_numpy(sampler.act(obs, start)))
        start[:] = False
    sequences = torch.cat([prompts, torch.stack(tokens, 1)], 1)  # (B, 16 + T)
    mask = torch.ones_like(sequences)
    ref_cache = SlotKVCache(reference, batch, pad_id=0)  # the reference's own KV cache, as in the env
    ref_cache.start(range(batch), prompts.numpy())
    for column in range(new_tokens):
        ref_cache.step(sequences[:, 16 + column])
    for rows in torch.arange(batch).split(minibatch):  # the update: one forward/backward per minibatch
        logprobs, _, values = policy(sequences[rows], mask[rows], new_tokens)  # (b, T) each
        loss = -logprobs.mean() + values.pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    return {"setup": setup, "peak_above_baseline_mib": peak_mib() - baseline, "trainable_parameters": trainable}


def _warm_up() -> None:
    import torch

    from textgym.models.tiny import random_causal_lm

    tiny = random_causal_lm(64, 1, 32, seed=0)
    torch.optim.Adam(tiny.parameters()).zero_grad()
    loss = tiny(torch.randint(0, 64, (2, 8)), labels=torch.randint(0, 64, (2, 8))).loss
    loss.backward()
    torch.optim.Adam(tiny.parameters()).step()


def main() -> None:
    """Run each setup in its own process and compare."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--minibatch", type=int, default=4, help="episodes per update forward/backward")
    parser.add_argument("--setup", choices=["full", "lora"], help=argparse.SUPPRESS)
    parser.add_argument("--output", default="benchmarks/results/lora_memory.json")
    args = parser.parse_args()
    if args.setup:  # child process
        print(json.dumps(run(args.setup, args.batch, args.new_tokens, args.minibatch)))
        return
    results = {}
    for setup in ("full", "lora"):
        command = [sys.executable, __file__, "--setup", setup, "--batch", str(args.batch), "--new-tokens",
                   str(args.new_tokens), "--minibatch", str(args.minibatch)]
        out = subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ, **MALLOC_ENV})
        results[setup] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{setup:>5}: peak {results[setup]['peak_above_baseline_mib']:.0f} MiB above baseline, "
              f"{results[setup]['trainable_parameters']:,} trainable parameters")
    ratio = results["lora"]["peak_above_baseline_mib"] / results["full"]["peak_above_baseline_mib"]
    print(f"LoRA / two full copies: {ratio:.2f}x peak memory")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"results": results, "ratio_lora_over_full": ratio,
                                             "args": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
