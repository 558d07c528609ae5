"""Rebuild the embedded models from the synthetic tasks, deterministically.

Run ``python -m textgym.models.build`` (about 5 minutes on 2 CPU cores). It writes, under
``textgym/models/embedded/``:

- ``tiny-lm``: a byte-level BPE tokenizer trained with ``tokenizers`` on the synthetic corpus, and
  a small GPT-2 pretrained on all three tasks (the default base model);
- ``sentiment-classifier`` (negative / positive), ``toxicity-classifier`` (toxic / polite) and
  ``helpfulness-classifier`` (unhelpful / helpful): small GPT-2 sequence classifiers;
- ``metrics.json``: held-out perplexity and accuracies, sizes and build time.

Same seed, same library versions and same thread count give the same weights.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, PreTrainedTokenizerFast

from textgym.data import synthetic
from textgym.models import EMBEDDED_DIR
from textgym.models.kv import left_pad
from textgym.models.tiny import EOS_TOKEN


@dataclass
class BuildConfig:
    """Sizes and budgets of the embedded models."""

    seed: int = 0
    """Seed of the data and of every initialisation."""
    vocab_size: int = 2048
    """BPE vocabulary size."""
    lm_layers: int = 3
    """Blocks of the tiny LM."""
    lm_width: int = 128
    """Hidden width of the tiny LM."""
    lm_epochs: int = 3
    """Passes over the pretraining corpus."""
    clf_layers: int = 2
    """Blocks of each classifier."""
    clf_width: int = 64
    """Hidden width of each classifier."""
    clf_epochs: int = 2
    """Passes over each classifier's training split."""
    batch_size: int = 32
    """Texts per optimisation step."""
    max_length: int = 128
    """Longest training text in tokens (longer ones are cut)."""
    threads: int = 2
    """torch threads (part of what makes a rebuild bit-identical)."""


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE tokenizer; ``<|endoftext|>`` (id 0) is EOS, BOS and pad."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS_TOKEN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS_TOKEN, bos_token=EOS_TOKEN,
                                   pad_token=EOS_TOKEN, unk_token=EOS_TOKEN)


def encode(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], max_length: int, eos: bool) -> list[torch.Tensor]:
    """Token tensors of ``texts`` (each followed by EOS if ``eos``), cut to ``max_length``."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [torch.tensor((seq + [tokenizer.eos_token_id] if eos else seq)[:max_length]) for seq in ids]


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=generator).split(batch_size))


def _right_pad(seqs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = left_pad([s.flip(0) for s in seqs], pad_id=0)
    return ids.flip(1), mask.flip(1)


def lm_loss(model: GPT2LMHeadModel, seqs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Mean next-token loss over real tokens, and how many there are.

    Padding is found by the mask, never by the pad id: pad == EOS here, and the final EOS of each
    text must be learned.
    """
    ids, mask = _right_pad(seqs)  # (B, T)
    labels = ids.masked_fill(mask == 0, -100)
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    return out.loss, int(mask[:, 1:].sum())


def perplexity(model: GPT2LMHeadModel, seqs: Sequence[torch.Tensor], batch_size: int = 64) -> float:
    """Exp of the mean per-token loss over ``seqs``."""
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(seqs), batch_size):
            loss, n = lm_loss(model, seqs[start:start + batch_size])
            total, count = total + loss.item() * n, count + n
    return math.exp(total / count)


def train_lm(cfg: BuildConfig, tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]) -> GPT2LMHeadModel:
    """Pretrain the tiny GPT-2 on ``texts`` (each followed by EOS)."""
    torch.manual_seed(cfg.seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=cfg.lm_layers, n_embd=cfg.lm_width,
                        n_head=cfg.lm_width // 32, n_positions=256, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model = GPT2LMHeadModel(config)
    seqs = encode(tokenizer, texts, cfg.max_length, eos=True)
    fit(model, lambda idx: lm_loss(model, [seqs[i] for i in idx])[0], len(seqs), cfg.lm_epochs, cfg.batch_size,
        cfg.seed, 3e-3, "tiny-lm")
    return model.eval()


def train_classifier(
    cfg: BuildConfig, tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], labels: Sequence[int],
    label_names: tuple[str, str], name: str,
) -> GPT2ForSequenceClassification:
    """A two-class sequence classifier (label 1 is the reward's positive class)."""
    torch.manual_seed(cfg.seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=cfg.clf_layers, n_embd=cfg.clf_width, n_head=2,
                        n_positions=256, num_labels=2, id2label=dict(enumerate(label_names)),
                        label2id={n: i for i, n in enumerate(label_names)}, pad_token_id=0, bos_token_id=0,
                        eos_token_id=0)
    model = GPT2ForSequenceClassification(config)
    seqs = encode(tokenizer, texts, cfg.max_length, eos=False)
    targets = torch.tensor(labels)

    def loss(idx: torch.Tensor) -> torch.Tensor:
        ids, mask = _right_pad([seqs[i] for i in idx])
        return model(input_ids=ids, attention_mask=mask, labels=targets[idx]).loss

    fit(model, loss, len(seqs), cfg.clf_epochs, cfg.batch_size, cfg.seed, 3e-3, name)
    return model.eval()


def fit(model: torch.nn.Module, loss_fn, n: int, epochs: int, batch_size: int, seed: int, lr: float,
        name: str) -> None:
    """Minimise ``loss_fn(indices)`` over ``n`` examples: AdamW, linear warm-up, cosine decay; progress per epoch."""
    generator = torch.Generator().manual_seed(seed)
    steps = max(1, epochs * math.ceil(n / batch_size))
    warmup = min(100, max(1, steps // 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    model.train()
    for epoch in range(epochs):
        start, total = time.perf_counter(), 0.0
        batches = _batches(n, batch_size, generator)
        for idx in batches:
            loss = loss_fn(idx)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total += loss.item()
        print(f"  {name} epoch {epoch + 1}/{epochs}: loss {total / len(batches):.3f} "
              f"({time.perf_counter() - start:.0f}s)", flush=True)


def accuracy(model: GPT2ForSequenceClassification, tokenizer, texts: Sequence[str], labels: Sequence[int]) -> float:
    """Share of ``texts`` whose argmax class equals the label."""
    seqs = encode(tokenizer, texts, 128, eos=False)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(seqs), 128):
            ids, mask = _right_pad(seqs[start:start + 128])
            predicted = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
            correct += int((predicted == torch.tensor(labels[start:start + 128])).sum())
    return correct / len(seqs)


def _save(model, tokenizer, folder: Path) -> float:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return (folder / "model.safetensors").stat().st_size / 2**20


def build(cfg: BuildConfig, out: Path = EMBEDDED_DIR) -> dict:
    """Build and save every embedded model; return the metrics."""
    torch.set_num_threads(cfg.threads)
    began = time.perf_counter()
    tasks = (synthetic.reviews, synthetic.dialogues, synthetic.replies)
    reviews, dialogues, replies = (task(seed=cfg.seed) for task in tasks)
    texts = synthetic.corpus(seed=cfg.seed)
    print(f"corpus: {len(texts)} texts; training the tokenizer", flush=True)
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    lm = train_lm(cfg, tokenizer, texts)
    held_out = (list(reviews["test"]["text"]) + list(dialogues["test"]["chosen"])
                + [p + " " + t for p, t in zip(replies["test"]["prompt"], replies["test"]["text"], strict=True)])
    metrics: dict = {"config": asdict(cfg), "perplexity": {
        "tiny-lm held-out": perplexity(lm, encode(tokenizer, held_out, cfg.max_length, eos=True))}}
    sizes = {"tiny-lm": _save(lm, tokenizer, out / "tiny-lm")}
    tasks = {
        "sentiment-classifier": (reviews, "text", "label", ("negative", "positive")),
        "toxicity-classifier": (replies, "text", "label", ("toxic", "polite")),
    }
    helpful = {split: _helpfulness_rows(dialogues[split]) for split in ("train", "test")}
    metrics["accuracy"] = {}
    for name, (data, text_col, label_col, names) in {**tasks, "helpfulness-classifier": (helpful, 0, 1, (
            "unhelpful", "helpful"))}.items():
        train, test = data["train"], data["test"]
        clf = train_classifier(cfg, tokenizer, train[text_col], train[label_col], names, name)
        metrics["accuracy"][name] = accuracy(clf, tokenizer, test[text_col], test[label_col])
        sizes[name] = _save(clf, tokenizer, out / name)
        print(f"  {name}: held-out accuracy {metrics['accuracy'][name]:.4f}", flush=True)
    metrics["size_mib"] = sizes
    metrics["build_seconds"] = time.perf_counter() - began
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _helpfulness_rows(split) -> tuple[list[str], list[int]]:
    """(texts, labels): every answer of every dialogue, 1 for the helpful one."""
    texts, labels = [], []
    for row in split:
        for completion, rank in zip(row["completions"], row["ranking"], strict=True):
            texts.append(row["prompt"] + completion)
            labels.append(int(rank == 1))
    return texts, labels


def main() -> None:
    """CLI: ``python -m textgym.models.build [--seed N] [--out DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=EMBEDDED_DIR)
    args = parser.parse_args()
    metrics = build(BuildConfig(seed=args.seed), args.out)
    print(json.dumps({k: v for k, v in metrics.items() if k != "config"}, indent=2))


if __name__ == "__main__":
    main()
