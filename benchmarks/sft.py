"""Supervised fine-tuning on the demo's data: transformers' ``Trainer`` against the hand-written loop.

Both sides fine-tune the embedded ``tiny-lm`` on the same helpfulness demonstrations (drawn as
``textgym demo`` draws them) with the same budget: AdamW at 1e-3, weight decay 0.01, a linear
warm-up over a tenth of the steps then cosine decay, gradient clipping at 1, 32 texts a step, each
text learned whole with its EOS. What differs is each side's own habit: ``Trainer``'s warm-up starts
at a learning rate of 0 and its cosine spans the steps after the warm-up, and its weight decay
spares biases and layer norms; the hand-written loop's cosine spans every step and decays every
weight.

- ``trainer``: :func:`textgym.models.sft.train_sft` (transformers' ``Trainer``);
- ``handwritten``: the loop the embedded models are built with, :func:`textgym.models.build.fit`
  over :func:`textgym.models.build.lm_loss` (what the demo's SFT step ran before).

For each seed, each side loads the base, trains, saves, and its folder is loaded again and scored:
the perplexity of the task's held-out chosen answers given their questions (the demo's
``perplexity_heldout``; the held-out loss is its log). Reported per side: seconds per epoch
(load, train and save, over the epochs; wall clock, and the process's CPU time, which a shared
machine disturbs less), the saved model's loss on its training texts, the held-out loss and
perplexity; then the ratios trainer / handwritten. The sides alternate which runs first.

    python benchmarks/sft.py     # 2 seeds x 2 sides, 640 texts x 2 epochs (40 steps) each

Writes ``benchmarks/results/sft.json`` with the CPU's name and flags.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from textgym.app.files import cpu_flags, cpu_name
from textgym.eval.text import perplexity
from textgym.models import load_causal_lm, load_tokenizer, no_progress_bars
from textgym.models.build import encode, fit, lm_loss
from textgym.models.sft import SFTTrainingConfig, train_sft
from textgym.tasks import DEFAULT_MODEL, get_task
from textgym.tasks.evaluation import heldout_texts

METHODS = ("handwritten", "trainer")


def handwritten(texts: list[str], cfg: SFTTrainingConfig) -> None:
    """The demo's former SFT step: ``build.fit`` over ``build.lm_loss``, saved as ``train_sft`` saves."""
    torch.manual_seed(cfg.seed)
    tokenizer, model = load_tokenizer(cfg.base_model), load_causal_lm(cfg.base_model).train()
    seqs = encode(tokenizer, texts, cfg.max_length, eos=True)
    with contextlib.redirect_stdout(io.StringIO()):  # fit prints a line per epoch
        fit(model, lambda idx: lm_loss(model, [seqs[i] for i in idx])[0], len(seqs), cfg.epochs, cfg.batch_size,
            cfg.seed, cfg.learning_rate, "sft")
    with no_progress_bars():
        model.eval().save_pretrained(cfg.output_dir)
    tokenizer.save_pretrained(cfg.output_dir)


def last_train_loss(folder: Path, texts: list[str], cfg: SFTTrainingConfig) -> float:
    """The saved model's mean next-token loss on the training texts (the same measure for both sides)."""
    from textgym.models.build import perplexity as token_perplexity

    model, tokenizer = load_causal_lm(folder), load_tokenizer(folder)
    return math.log(token_perplexity(model, encode(tokenizer, texts, cfg.max_length, eos=True)))


def run(method: str, texts: list[str], held: tuple[list[str], list[str]], seed: int, epochs: int,
        folder: Path) -> dict:
    """Train one side at one seed into ``folder``; time it and score what it saved."""
    cfg = SFTTrainingConfig(base_model=DEFAULT_MODEL, output_dir=str(folder), epochs=epochs, seed=seed)
    began, cpu_began = time.perf_counter(), time.process_time()
    if method == "trainer":
        train_sft(texts, cfg)
    else:
        handwritten(texts, cfg)
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu_began
    ppl = perplexity(load_causal_lm(folder), load_tokenizer(folder), *held)
    return {"method": method, "seed": seed, "seconds_per_epoch": seconds / epochs,
            "cpu_seconds_per_epoch": cpu_seconds / epochs,
            "train_loss": last_train_loss(folder, texts, cfg), "heldout_loss": math.log(ppl),
            "heldout_perplexity": ppl}


def main() -> None:
    """Parse flags, run both sides at every seed, print the table and ratios, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=640, help="demonstrations drawn (the demo draws 3000)")
    parser.add_argument("--epochs", type=int, default=2, help="passes over them (the demo makes 6)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--heldout", type=int, default=100, help="held-out answers scored")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default="benchmarks/results/sft.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = {"cpu": cpu_name(), "cpu_flags": cpu_flags(), "threads": args.threads}
    print(f"CPU: {machine['cpu']}; flags: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in
                                                         machine["cpu_flags"].items()), flush=True)
    demonstrations, held = get_task("helpfulness").demonstrations(), heldout_texts("helpfulness", args.heldout)
    base_ppl = perplexity(load_causal_lm(DEFAULT_MODEL), load_tokenizer(DEFAULT_MODEL), *held)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, seed in enumerate(args.seeds):
            texts = random.Random(seed).sample(demonstrations, min(args.texts, len(demonstrations)))
            for method in METHODS if i % 2 == 0 else METHODS[::-1]:
                runs.append(run(method, texts, held, seed, args.epochs, Path(tmp) / f"{method}-{seed}"))
                print(f"{method:>11} seed {seed}: {runs[-1]['seconds_per_epoch']:.2f} s/epoch "
                      f"({runs[-1]['cpu_seconds_per_epoch']:.2f} s of CPU), train loss "
                      f"{runs[-1]['train_loss']:.4f}, held-out loss {runs[-1]['heldout_loss']:.4f} "
                      f"(perplexity {runs[-1]['heldout_perplexity']:.3f})", flush=True)
    keys = ("seconds_per_epoch", "cpu_seconds_per_epoch", "train_loss", "heldout_loss", "heldout_perplexity")
    mean = {m: {k: statistics.mean(r[k] for r in runs if r["method"] == m) for k in keys} for m in METHODS}
    ratios = {f"{k}_trainer_over_handwritten": mean["trainer"][k] / mean["handwritten"][k] for k in keys}
    print(f"base model's held-out perplexity {base_ppl:.3f}")
    print("trainer / handwritten: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    import transformers

    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({
        "config": {k: v for k, v in vars(args).items() if k != "output"}, "machine": machine,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "base_heldout_perplexity": base_ppl, "runs": runs, "mean": mean, "ratios": ratios}, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
