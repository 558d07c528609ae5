"""Supervised fine-tuning of a causal LM on texts, with transformers' ``Trainer``.

Each text is a whole demonstration (for a dialogue task, the prompt and its answer in one
transcript); the loss is the mean next-token loss over every real token of the batch, the final
EOS included, so the model learns where an answer stops. The result is a plain
``save_pretrained`` folder (model and tokenizer) that :func:`textgym.models.load_causal_lm` and
``AutoModelForCausalLM.from_pretrained`` load on their own.

Why ``Trainer`` and not TRL's ``SFTTrainer``: transformers is already a dependency and the reward
model trains on it too (:mod:`textgym.rewards.training`), while TRL is an optional extra; and none of
what ``SFTTrainer`` adds over ``Trainer`` (chat templates, packing, completion-only loss, PEFT) is
wanted here, where a demonstration is one plain text learned whole. The only part written by hand is
the collator: the embedded models pad with EOS, so padding is found by the attention mask, never by
the pad id, or every final EOS would be masked out of the loss.

Why ``Trainer`` and not the hand-written loop the embedded models are built with
(:func:`textgym.models.build.fit`): ``benchmarks/sft.py`` runs both on the demo's data with the same
optimiser, learning rate, warm-up length, clipping and batch size, and finds them level: the same
CPU time per epoch (ratio 1.00) and the same held-out loss (ratio 0.99, inside the spread of two
seeds; ``benchmarks/results/sft.json``). At a tie the maintained trainer wins: its loop, logging,
devices and mixed precision are kept by others, and the hand-written loop stays with the kit
builder, which trains models from scratch.

Same seed, same library versions and same thread count give the same weights. Training prints
nothing unless ``progress`` is asked for (then one line per epoch, as the kit builder prints).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import (
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from textgym.models import load_causal_lm, load_tokenizer, no_progress_bars, quiet_transformers


@dataclass
class SFTTrainingConfig:
    """How to fine-tune a causal LM on demonstrations."""

    base_model: str = "textgym/tiny-lm"
    """Model to fine-tune (embedded name, hub name or path)."""
    output_dir: str = "runs/sft"
    """Where the fine-tuned model, its tokenizer and ``sft_metrics.json`` are saved (nothing else is written)."""
    epochs: int = 6
    """Passes over the texts."""
    batch_size: int = 32
    """Texts per optimisation step."""
    learning_rate: float = 1e-3
    """Peak AdamW learning rate (linear warm-up over a tenth of the steps, at most 100, then cosine decay)."""
    weight_decay: float = 0.01
    """AdamW weight decay (``Trainer`` spares biases and layer norms)."""
    max_length: int = 128
    """Longest text in tokens, its EOS included (longer ones keep their first tokens)."""
    seed: int = 0
    """Seed of the data order and of dropout."""


def warmup_steps(steps: int) -> int:
    """Linear warm-up steps of a run of ``steps`` optimisation steps: a tenth of them, at least 1, at most 100.

    >>> warmup_steps(564), warmup_steps(5), warmup_steps(10_000)
    (56, 1, 100)
    """
    return min(100, max(1, steps // 10))


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[dict]:
    """One ``{"input_ids": [...]}`` row per text: its tokens, then EOS, cut to ``max_length``."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [{"input_ids": (seq + [tokenizer.eos_token_id])[:max_length]} for seq in ids]


class CausalCollator:
    """Right-pads rows of ``input_ids`` into a batch whose ``labels`` are the ids, ``-100`` on padding.

    Padding is found by the attention mask, not by the pad id: where pad == EOS, a collator that
    masks the pad id (``DataCollatorForLanguageModeling``) would also mask every real final EOS.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        """Collate ``rows`` into ``input_ids``, ``attention_mask`` and ``labels``, each (B, T)."""
        batch = self.tokenizer.pad([{"input_ids": row["input_ids"]} for row in rows], padding=True,
                                   padding_side="right", return_tensors="pt")
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)  # (B, T)
        return dict(batch)


class _EpochLog(TrainerCallback):
    """Records each epoch's mean training loss and seconds; prints them when ``name`` is given."""

    def __init__(self, epochs: int, name: str | None) -> None:
        self.epochs, self.name = epochs, name
        self.losses: list[float] = []
        self.seconds: list[float] = []
        self.began = 0.0

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.began = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:  # logged once per epoch, at its end: the mean loss of its steps
            self.losses.append(float(logs["loss"]))
            self.seconds.append(time.perf_counter() - self.began)
            if self.name is not None:
                print(f"  {self.name} epoch {len(self.losses)}/{self.epochs}: loss {self.losses[-1]:.3f} "
                      f"({self.seconds[-1]:.0f}s)", flush=True)


def train_sft(texts: Sequence[str], cfg: SFTTrainingConfig, progress: bool = False) -> dict:
    """Fine-tune ``cfg.base_model`` on ``texts``, save it to ``cfg.output_dir``; returns the metrics.

    Args:
        texts: The demonstrations, each learned whole (an EOS is appended to each).
        cfg: Model, budget, seed and output folder.
        progress: Print one line per epoch (its mean loss and seconds); otherwise print nothing.

    Returns:
        ``{"train_loss": [per epoch], "epoch_seconds": [per epoch], "texts", "steps", "config"}``,
        also saved as ``sft_metrics.json`` in the output folder.
    """
    if not texts:
        raise ValueError("there are no texts to fine-tune on")
    for name in ("epochs", "batch_size", "max_length"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    tokenizer, model = load_tokenizer(cfg.base_model), load_causal_lm(cfg.base_model)
    steps = cfg.epochs * math.ceil(len(texts) / cfg.batch_size)
    args = TrainingArguments(
        output_dir=cfg.output_dir, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, lr_scheduler_type="cosine",
        warmup_steps=warmup_steps(steps), max_grad_norm=1.0, seed=cfg.seed, report_to=[], save_strategy="no",
        logging_strategy="epoch", disable_tqdm=True, remove_unused_columns=False, dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    log = _EpochLog(cfg.epochs, "sft" if progress else None)
    with quiet_transformers():  # e.g. "loss_type=None ... unrecognized": the default causal LM loss is the one meant
        trainer = Trainer(model=model, args=args, train_dataset=encode_texts(tokenizer, texts, cfg.max_length),
                          data_collator=CausalCollator(tokenizer), callbacks=[log])
        trainer.remove_callback(PrinterCallback)  # the epoch lines above are all it prints
        trainer.train()
    out = Path(cfg.output_dir)
    with no_progress_bars():
        model.eval().save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    metrics = {"train_loss": log.losses, "epoch_seconds": log.seconds, "texts": len(texts), "steps": steps,
               "config": asdict(cfg)}
    (out / "sft_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
