"""Rollout throughput: textgym's env-stepped rollout vs the best hand-written pipeline.

Generated tokens/s, on the same models, prompts, batch size and length, alternated in one run:

  (a) ``LMSampler`` (policy KV cache) driving ``TextGenerationVectorEnv``, which supplies the
      reference log-probs and the rewards; once per reference-scoring mode (``step``, ``episode``);
  (b) ``model.generate`` then one teacher-forced reference forward and the reward call;
  (c) a naive loop re-encoding the whole context every step, for policy and reference.

Prints a table and writes ``benchmarks/results/rollout.json`` with every figure and the ratios
a/b and c/b. Run: ``python benchmarks/rollout.py`` (``--quick`` for a short smoke run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.sampling import LMSampler
from textgym.envs import TextGenerationVectorEnv
from textgym.models.sampling import sample_tokens
from textgym.models.tiny import random_causal_lm, word_tokenizer
from textgym.rewards import KeywordReward, score_batch


@dataclass
class Config:
    """Benchmark settings (every field is a CLI flag)."""

    models: list[str] = field(default_factory=lambda: ["2x128", "6x384"])
    """GPT-2 sizes as LAYERSxWIDTH."""
    batches: list[int] = field(default_factory=lambda: [1, 8, 32])
    """Batch sizes (number of envs)."""
    new_tokens: list[int] = field(default_factory=lambda: [32, 128])
    """Tokens generated per episode."""
    prompt_tokens: int = 16
    """Prompt length in tokens."""
    vocab_size: int = 8192
    """Vocabulary size of the models."""
    repeats: int = 3
    """Timed repetitions of (a) and (b); the median is reported."""
    naive_repeats: int = 1
    """Timed repetitions of the slow naive loop (c)."""
    threads: int = 1
    """torch threads, the same for every pipeline."""
    output: str = "benchmarks/results/rollout.json"
    """Where to write the figures."""


def pipeline_env(policy, reference, tok, prompts, reward, batch, new_tokens, mode, seed) -> int:
    """(a) the sampler acts, the vector env scores; returns tokens generated."""
    envs = TextGenerationVectorEnv(
        num_envs=batch, model=reference, tokenizer=tok, prompts=prompts, reward_fn=reward,
        max_context=len(prompts[0].split()) + new_tokens, max_new_tokens=new_tokens, ref_scoring=mode,
    )
    agent = LMSampler(policy, batch, pad_id=0, seed=seed)
    obs, _ = envs.reset(seed=seed)
    starts = np.ones(batch, dtype=bool)
    for _ in range(new_tokens):
        obs, _, terminated, truncated, _ = envs.step(agent.act(obs, starts))
        starts = terminated | truncated
    return batch * new_tokens


@torch.no_grad()
def pipeline_generate(policy, reference, tok, prompts, reward, batch, new_tokens, mode, seed) -> int:
    """(b) ``generate``, then one teacher-forced reference pass and the reward call."""
    ids = torch.tensor([tok(p)["input_ids"] for p in prompts[:batch]])  # (B, P), equal lengths
    out = policy.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, max_new_tokens=new_tokens,
                          min_new_tokens=new_tokens, pad_token_id=0)  # (B, P + T)
    mask = torch.ones_like(out)
    logits = reference(out, attention_mask=mask, logits_to_keep=new_tokens + 1).logits[:, :-1]  # (B, T, V)
    ref_lp = torch.log_softmax(logits.float(), -1).gather(-1, out[:, ids.shape[1]:, None])  # (B, T, 1)
    texts = tok.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
    score_batch(reward, prompts[:batch], texts)
    assert ref_lp.shape == (batch, new_tokens, 1)
    return batch * (out.shape[1] - ids.shape[1])


@torch.no_grad()
def pipeline_naive(policy, reference, tok, prompts, reward, batch, new_tokens, mode, seed) -> int:
    """(c) re-encode the whole context every step, for the policy and the reference."""
    ctx = torch.tensor([tok(p)["input_ids"] for p in prompts[:batch]])  # (B, P)
    ref_lps = []
    for _ in range(new_tokens):
        mask = torch.ones_like(ctx)
        action = sample_tokens(policy(ctx, attention_mask=mask).logits[:, -1])  # (B,)
        ref_logits = reference(ctx, attention_mask=mask).logits[:, -1].float()  # (B, V)
        ref_lps.append(torch.log_softmax(ref_logits, -1)[torch.arange(batch), action])
        ctx = torch.cat([ctx, action[:, None]], 1)
    texts = tok.batch_decode(ctx[:, -new_tokens:], skip_special_tokens=True)
    score_batch(reward, prompts[:batch], texts)
    return batch * new_tokens


def timed(fn, *args) -> float:
    """Tokens per second of one call."""
    start = time.perf_counter()
    tokens = fn(*args)
    return tokens / (time.perf_counter() - start)


def run_case(cfg: Config, size: str, batch: int, new_tokens: int) -> dict:
    """Every pipeline on one (model, batch, length), alternated; median tokens/s each."""
    layers, width = (int(x) for x in size.split("x"))
    words = [f"w{i}" for i in range(1, cfg.vocab_size)]
    tok = word_tokenizer(words)
    n_positions = cfg.prompt_tokens + max(cfg.new_tokens) + 1
    policy = random_causal_lm(cfg.vocab_size, layers, width, n_positions=n_positions, seed=1)
    reference = random_causal_lm(cfg.vocab_size, layers, width, n_positions=n_positions, seed=2)
    rng = np.random.default_rng(0)
    prompts = [" ".join(rng.choice(words, cfg.prompt_tokens)) for _ in range(batch)]
    reward = KeywordReward(words[: len(words) // 2])  # about half the tokens score 1
    args = (policy, reference, tok, prompts, reward, batch, new_tokens)
    pipelines = {"a_step": (pipeline_env, "step"), "a_episode": (pipeline_env, "episode"),
                 "b_generate": (pipeline_generate, None)}
    for fn, mode in pipelines.values():  # warm-up
        fn(*args, mode, 0)
    runs: dict[str, list[float]] = {name: [] for name in [*pipelines, "c_naive"]}
    for rep in range(cfg.repeats):
        for name, (fn, mode) in pipelines.items():
            runs[name].append(timed(fn, *args, mode, rep))
        if rep < cfg.naive_repeats:
            runs["c_naive"].append(timed(pipeline_naive, *args, None, rep))
    tps = {name: statistics.median(values) for name, values in runs.items()}
    base = tps["b_generate"]
    return {"model": size, "batch": batch, "new_tokens": new_tokens, "tokens_per_s": tps,
            "ratios": {f"{name}/b": value / base for name, value in tps.items() if name != "b_generate"}}


def add_config_flags(parser: argparse.ArgumentParser, defaults: Any) -> None:
    """One ``--flag`` per field of the settings dataclass ``defaults`` (a list field takes several values)."""
    for name, value in asdict(defaults).items():
        kind = type(value[0]) if isinstance(value, list) else type(value)
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, nargs="+" if isinstance(value, list) else None,
                            default=value)


def main() -> None:
    """Parse flags, run every case, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, Config())
    parser.add_argument("--quick", action="store_true", help="one small case, one repeat (smoke test)")
    ns = vars(parser.parse_args())
    quick = ns.pop("quick")
    cfg = Config(**ns)
    if quick:
        cfg = Config(models=["2x128"], batches=[8], new_tokens=[32], repeats=1, output=cfg.output)
    torch.set_num_threads(cfg.threads)
    rows = []
    header = f"{'model':>6} {'batch':>5} {'new':>4} | {'a_step':>8} {'a_episode':>9} {'b_generate':>10} "
    print(header + f"{'c_naive':>8} | {'a_step/b':>8} {'a_ep/b':>7} {'c/b':>6}   (generated tokens/s)")
    for size in cfg.models:
        for new_tokens in cfg.new_tokens:
            for batch in cfg.batches:
                row = run_case(cfg, size, batch, new_tokens)
                rows.append(row)
                t, r = row["tokens_per_s"], row["ratios"]
                print(f"{size:>6} {batch:>5} {new_tokens:>4} | {t['a_step']:>8.0f} {t['a_episode']:>9.0f} "
                      f"{t['b_generate']:>10.0f} {t['c_naive']:>8.0f} | {r['a_step/b']:>8.2f} "
                      f"{r['a_episode/b']:>7.2f} {r['c_naive/b']:>6.2f}", flush=True)
    length_ratios = _length_ratios(rows)
    for key, value in length_ratios.items():
        print(f"a_episode tokens/s at {max(cfg.new_tokens)} vs {min(cfg.new_tokens)} new tokens, {key}: {value:.2f}")
    Path(cfg.output).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.output).write_text(json.dumps({"config": asdict(cfg), "torch": torch.__version__, "rows": rows,
                                            "length_ratios": length_ratios}, indent=2))
    print(f"wrote {cfg.output}")


def _length_ratios(rows: list[dict]) -> dict[str, float]:
    """a_episode's tokens/s at the longest length over the shortest, per (model, batch)."""
    out = {}
    for row in rows:
        longer = [r for r in rows if (r["model"], r["batch"]) == (row["model"], row["batch"])]
        if row["new_tokens"] == min(r["new_tokens"] for r in longer) and len(longer) > 1:
            long_row = max(longer, key=lambda r: r["new_tokens"])
            out[f"{row['model']} batch {row['batch']}"] = (
                long_row["tokens_per_s"]["a_episode"] / row["tokens_per_s"]["a_episode"])
    return out


if __name__ == "__main__":
    main()
