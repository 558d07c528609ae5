"""Training the embedded models: the tokenizer, the tiny causal LMs and the sequence classifiers.

Deterministic building blocks (same seed, same library versions and same thread count give the same
weights); ``python -m textgym.tasks.build`` builds the kit from the tasks' data with them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from textgym.models import model_device
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


def encode(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, eos: bool) -> list[torch.Tensor]:
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


def save(model, tokenizer, folder: Path) -> float:
    """Save ``model`` and ``tokenizer`` to ``folder`` (safetensors); returns the weights' size in MiB."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return (folder / "model.safetensors").stat().st_size / 2**20
