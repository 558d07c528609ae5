"""Rebuild the embedded models from the synthetic tasks, deterministically.

Run ``python -m textgym.tasks.build`` (about 5 minutes on 2 CPU cores). It writes, under
``textgym/models/embedded/``:

- ``tiny-lm``: a byte-level BPE tokenizer trained with ``tokenizers`` on the synthetic corpus, and
  a small GPT-2 pretrained on all three tasks (the default base model);
- ``sentiment-classifier`` (negative / positive), ``toxicity-classifier`` (toxic / polite) and
  ``helpfulness-classifier`` (unhelpful / helpful): small GPT-2 sequence classifiers, one per task
  that declares one (:attr:`textgym.tasks.Task.classifier`);
- ``tictactoe-lm``: a word-level tokenizer and a small GPT-2 pretrained on transcripts of random
  tic-tac-toe (``textgym/TextTicTacToe-v0``'s reference and starting policy);
- ``metrics.json``: held-out perplexity and accuracies, sizes and build time.

``--only tictactoe-lm`` rebuilds one part and keeps the others.

Same seed, same library versions and same thread count give the same weights.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from textgym.data import synthetic
from textgym.envs.text_tictactoe import WORDS, random_transcripts
from textgym.models import EMBEDDED_DIR
from textgym.models.build import (
    BuildConfig,
    accuracy,
    encode,
    fit,
    lm_loss,
    perplexity,
    save,
    train_classifier,
    train_lm,
    train_tokenizer,
)
from textgym.models.tiny import word_tokenizer
from textgym.tasks import TASKS


def build_tiny_lm(cfg: BuildConfig, out: Path, metrics: dict) -> PreTrainedTokenizerFast:
    """The BPE tokenizer and ``tiny-lm``, pretrained on the corpus of the language tasks; returns the tokenizer."""
    texts = synthetic.corpus(seed=cfg.seed)
    print(f"corpus: {len(texts)} texts; training the tokenizer", flush=True)
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    lm = train_lm(cfg, tokenizer, texts)
    reviews, dialogues, replies = (synthetic.reviews(seed=cfg.seed), synthetic.dialogues(seed=cfg.seed),
                                   synthetic.replies(seed=cfg.seed))
    held_out = (list(reviews["test"]["text"]) + list(dialogues["test"]["chosen"])
                + [p + " " + t for p, t in zip(replies["test"]["prompt"], replies["test"]["text"], strict=True)])
    metrics.setdefault("perplexity", {})["tiny-lm held-out"] = perplexity(
        lm, encode(tokenizer, held_out, cfg.max_length, eos=True))
    metrics.setdefault("size_mib", {})["tiny-lm"] = save(lm, tokenizer, out / "tiny-lm")
    return tokenizer


def build_classifiers(cfg: BuildConfig, out: Path, metrics: dict, tokenizer: PreTrainedTokenizerFast) -> None:
    """Every task's embedded classifier (:attr:`textgym.tasks.Task.classifier`), on tiny-lm's tokenizer."""
    for spec in [task.classifier for task in TASKS.values() if task.classifier is not None]:
        (texts, labels), (test_texts, test_labels) = spec.data("train"), spec.data("test")
        clf = train_classifier(cfg, tokenizer, texts, labels, spec.labels, spec.name)
        metrics.setdefault("accuracy", {})[spec.name] = accuracy(clf, tokenizer, test_texts, test_labels)
        metrics.setdefault("size_mib", {})[spec.name] = save(clf, tokenizer, out / spec.name)
        print(f"  {spec.name}: held-out accuracy {metrics['accuracy'][spec.name]:.4f}", flush=True)


def build_tictactoe_lm(cfg: BuildConfig, out: Path, metrics: dict, games: int = 20_000) -> None:
    """``tictactoe-lm``: a word-level tokenizer and a small GPT-2 pretrained on transcripts of random play.

    It learns the transcripts' form and which moves are legal, not how to win.
    """
    tokenizer, texts = word_tokenizer(WORDS), random_transcripts(games, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_layer=2, n_embd=64, n_head=4, n_positions=128,
                                       bos_token_id=0, eos_token_id=0, pad_token_id=0))
    seqs = encode(tokenizer, texts, 128, eos=False)
    fit(model, lambda idx: lm_loss(model, [seqs[i] for i in idx])[0], len(seqs), 3, 64, cfg.seed, 3e-3,
        "tictactoe-lm")
    held = encode(tokenizer, random_transcripts(500, seed=cfg.seed + 1), 128, eos=False)
    metrics.setdefault("perplexity", {})["tictactoe-lm held-out"] = perplexity(model.eval(), held)
    metrics.setdefault("size_mib", {})["tictactoe-lm"] = save(model, tokenizer, out / "tictactoe-lm")


#: What ``python -m textgym.tasks.build --only PART`` rebuilds on its own.
PARTS = ("tiny-lm+classifiers", "tictactoe-lm")


def build(cfg: BuildConfig, out: Path = EMBEDDED_DIR, only: str | None = None) -> dict:
    """Build and save the embedded models (all, or one of :data:`PARTS`); update and return the metrics."""
    if only is not None and only not in PARTS:
        raise ValueError(f"unknown part {only!r}; parts: {', '.join(PARTS)}")
    torch.set_num_threads(cfg.threads)
    began = time.perf_counter()
    path = out / "metrics.json"
    metrics: dict = json.loads(path.read_text()) if only and path.is_file() else {}
    metrics["config"] = asdict(cfg)
    if only in (None, PARTS[0]):
        build_classifiers(cfg, out, metrics, build_tiny_lm(cfg, out, metrics))
    if only in (None, PARTS[1]):
        build_tictactoe_lm(cfg, out, metrics)
    seconds = metrics.get("build_seconds")
    metrics["build_seconds"] = {**(seconds if isinstance(seconds, dict) else {}), only or "all": time.perf_counter()
                                - began}
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main() -> None:
    """CLI: ``python -m textgym.tasks.build [--seed N] [--out DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=EMBEDDED_DIR)
    parser.add_argument("--only", choices=PARTS, help="rebuild one part, keep the others")
    args = parser.parse_args()
    metrics = build(BuildConfig(seed=args.seed), args.out, args.only)
    print(json.dumps({k: v for k, v in metrics.items() if k != "config"}, indent=2))


if __name__ == "__main__":
    main()
