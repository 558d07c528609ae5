"""Rebuild the embedded models from the synthetic tasks, deterministically.

Run ``python -m textgym.models.build`` (about 5 minutes on 2 CPU cores). It writes, under
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
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, PreTrainedTokenizerFast

from textgym.data import synthetic
from textgym.models import EMBEDDED_DIR, model_device
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
    count = int(mask[:, 1:].sum())
    ids, mask = ids.to(model_device(model)), mask.to(model_device(model))
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # (B, T - 1, V)
    targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)  # (B, T - 1)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100), count


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
                        n_positions=256, id2label=dict(enumerate(label_names)),
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
    metrics.setdefault("size_mib", {})["tiny-lm"] = _save(lm, tokenizer, out / "tiny-lm")
    return tokenizer


def build_classifiers(cfg: BuildConfig, out: Path, metrics: dict, tokenizer: PreTrainedTokenizerFast) -> None:
    """Every task's embedded classifier (:attr:`textgym.tasks.Task.classifier`), on tiny-lm's tokenizer."""
    from textgym.tasks import TASKS

    for spec in [task.classifier for task in TASKS.values() if task.classifier is not None]:
        (texts, labels), (test_texts, test_labels) = spec.data("train"), spec.data("test")
        clf = train_classifier(cfg, tokenizer, texts, labels, spec.labels, spec.name)
        metrics.setdefault("accuracy", {})[spec.name] = accuracy(clf, tokenizer, test_texts, test_labels)
        metrics.setdefault("size_mib", {})[spec.name] = _save(clf, tokenizer, out / spec.name)
        print(f"  {spec.name}: held-out accuracy {metrics['accuracy'][spec.name]:.4f}", flush=True)


def build_tictactoe_lm(cfg: BuildConfig, out: Path, metrics: dict, games: int = 20_000) -> None:
    """``tictactoe-lm``: a word-level tokenizer and a small GPT-2 pretrained on transcripts of random play.

    It learns the transcripts' form and which moves are legal, not how to win.
    """
    from textgym.envs.text_tictactoe import WORDS, random_transcripts
    from textgym.models.tiny import word_tokenizer

    tokenizer, texts = word_tokenizer(WORDS), random_transcripts(games, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_layer=2, n_embd=64, n_head=4, n_positions=128,
                                       bos_token_id=0, eos_token_id=0, pad_token_id=0))
    seqs = encode(tokenizer, texts, 128, eos=False)
    fit(model, lambda idx: lm_loss(model, [seqs[i] for i in idx])[0], len(seqs), 3, 64, cfg.seed, 3e-3,
        "tictactoe-lm")
    held = encode(tokenizer, random_transcripts(500, seed=cfg.seed + 1), 128, eos=False)
    metrics.setdefault("perplexity", {})["tictactoe-lm held-out"] = perplexity(model.eval(), held)
    metrics.setdefault("size_mib", {})["tictactoe-lm"] = _save(model, tokenizer, out / "tictactoe-lm")


#: What ``python -m textgym.models.build --only PART`` rebuilds on its own.
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
    """CLI: ``python -m textgym.models.build [--seed N] [--out DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=EMBEDDED_DIR)
    parser.add_argument("--only", choices=PARTS, help="rebuild one part, keep the others")
    args = parser.parse_args()
    metrics = build(BuildConfig(seed=args.seed), args.out, args.only)
    print(json.dumps({k: v for k, v in metrics.items() if k != "config"}, indent=2))


if __name__ == "__main__":
    main()
