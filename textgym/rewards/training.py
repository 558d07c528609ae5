"""Train a preference reward model from pairs: ``loss = -log sigmoid(r_chosen - r_rejected)``.

The model is an ``AutoModelForSequenceClassification`` with one output (a scalar head on a causal
LM's trunk), trained with transformers' ``Trainer`` and saved with ``save_pretrained`` in the
layout TRL's ``RewardTrainer`` also writes and reads, so :class:`textgym.rewards.RewardModel`
scores with a model trained by either.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForSequenceClassification,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainingArguments,
)

from textgym.models import (
    check_model_folder,
    disable_dropout,
    load_tokenizer,
    locate,
    model_device,
    no_progress_bars,
    quiet_transformers,
)
from textgym.rewards.classifier import POOLINGS, answer_starts, pooled_rewards, reward_pooling


@dataclass
class RewardTrainingConfig:
    """How to train a reward model."""

    base_model: str = "textgym/tiny-lm"
    """Model whose trunk gets the scalar head (embedded name, hub name or path)."""
    output_dir: str = "runs/reward-model"
    """Where the trained model, its tokenizer and ``reward_metrics.json`` are saved."""
    epochs: float = 1.0
    """Passes over the training pairs."""
    batch_size: int = 16
    """Pairs per step."""
    learning_rate: float = 5e-4
    """Peak AdamW learning rate (linear decay)."""
    max_length: int = 128
    """Longest text in tokens (longer ones keep their first tokens)."""
    seed: int = 0
    """Seed of the head's initialisation and the data order."""
    disable_dropout: bool = True
    """Train without the model's dropout, as TRL's ``RewardTrainer`` does by default."""
    pooling: str = "last"
    """How the score is read off the head: ``"last"`` (the last token, TRL's layout) or ``"answer-sum"`` (the
    head summed over the answer's tokens, so each part of an answer adds its own share: it learns faster which
    part of an answer a ranking turned on). Saved in the model's config; :class:`RewardModel` reads it."""


def pair_texts(row: dict) -> tuple[str, str]:
    """The full chosen and rejected texts: ``prompt + answer``.

    An answer that already starts with the prompt (an hh-rlhf transcript) is kept whole.
    """
    def full(answer: str) -> str:
        return answer if answer.startswith(row["prompt"]) else row["prompt"] + answer

    return full(row["chosen"]), full(row["rejected"])


class _PairCollator:
    """Tokenises chosen and rejected texts into one right-padded batch: chosen rows first."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int, pooling: str = "last") -> None:
        self.tokenizer, self.max_length, self.pooling = tokenizer, max_length, pooling

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        texts = [pair_texts(r) for r in rows]
        enc = self.tokenizer([c for c, _ in texts] + [r for _, r in texts], padding=True, truncation=True,
                             max_length=self.max_length, padding_side="right", return_tensors="pt")
        batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if self.pooling == "answer-sum":  # both texts of a pair begin with the prompt: the answer starts after it
            batch["answer_start"] = answer_starts(self.tokenizer, [r["prompt"] for r in rows] * 2)
        return batch


def _rewards(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The batch's rewards, (2B,) chosen first, pooled as the model's config says."""
    return pooled_rewards(model, batch["input_ids"], batch["attention_mask"], reward_pooling(model.config),
                          batch.get("answer_start"))


def pairwise_loss(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``-log sigmoid(r_chosen - r_rejected)`` and accuracy, for rewards of shape (2B,), chosen first.

    >>> loss, acc = pairwise_loss(torch.tensor([2.0, 1.0, 0.0, 0.0]))  # margins 2 and 1
    >>> round(loss.item(), 4), acc.item()
    (0.2201, 1.0)
    """
    chosen, rejected = rewards.view(2, -1)  # (2, B)
    margin = chosen - rejected
    return -F.logsigmoid(margin).mean(), (margin > 0).float().mean()


class _PairwiseTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        rewards = _rewards(model, inputs)  # (2B,)
        loss, _ = pairwise_loss(rewards)
        return (loss, {"rewards": rewards}) if return_outputs else loss


@torch.no_grad()
def evaluate_pairs(model, tokenizer, pairs: datasets.Dataset, batch_size: int = 64, max_length: int = 128) -> dict:
    """Held-out pairwise accuracy (r_chosen > r_rejected) and mean loss."""
    model.eval()
    collate, device = _PairCollator(tokenizer, max_length, reward_pooling(model.config)), model_device(model)
    losses: list[float] = []
    correct = 0.0
    for start in range(0, len(pairs), batch_size):
        rows = pairs.select(range(start, min(start + batch_size, len(pairs))))
        batch = {k: v.to(device) for k, v in collate(list(rows)).items()}
        loss, acc = pairwise_loss(_rewards(model, batch))
        losses.append(loss.item() * len(rows))
        correct += acc.item() * len(rows)
    return {"accuracy": correct / len(pairs), "loss": sum(losses) / len(pairs), "pairs": len(pairs)}


def train_reward_model(train: datasets.Dataset, test: datasets.Dataset, cfg: RewardTrainingConfig) -> dict:
    """Train on ``train`` pairs, evaluate on ``test`` pairs, save to ``cfg.output_dir``; returns the metrics.

    Args:
        train: Pairs with ``prompt``, ``chosen``, ``rejected``.
        test: Held-out pairs in the same format.
        cfg: Model, budget and output folder.
    """
    if cfg.pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {cfg.pooling!r}")
    for name, data in (("train", train), ("test", test)):
        missing = {"prompt", "chosen", "rejected"} - set(data.column_names)
        if missing:
            raise ValueError(f"the {name} pairs need the columns prompt, chosen and rejected "
                             f"(missing: {sorted(missing)})")
        if len(data) == 0:
            raise ValueError(f"there are no {name} pairs: every ranking is a tie or was skipped, and tied "
                             "completions make no pair; rank some completions above others")
    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(cfg.base_model)
    folder = locate(cfg.base_model)
    check_model_folder(folder, use_safetensors=False)
    with no_progress_bars(), quiet_transformers():  # the new scalar head is expected to be missing
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1,
                                                                   trust_remote_code=False)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.reward_pooling = cfg.pooling
    if cfg.disable_dropout:
        disable_dropout(model)
    before = evaluate_pairs(model, tokenizer, test, max_length=cfg.max_length)
    args = TrainingArguments(
        output_dir=cfg.output_dir, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, lr_scheduler_type="linear", warmup_steps=max(1, math.ceil(
            0.05 * cfg.epochs * len(train) / cfg.batch_size)), weight_decay=0.01, seed=cfg.seed,
        report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True, remove_unused_columns=False,
        dataloader_num_workers=0, dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer = _PairwiseTrainer(model=model, args=args, train_dataset=train,
                               data_collator=_PairCollator(tokenizer, cfg.max_length, cfg.pooling))
    trainer.remove_callback(PrinterCallback)  # a library call prints nothing
    trainer.train()
    metrics = {"before": before, "after": evaluate_pairs(model, tokenizer, test, max_length=cfg.max_length),
               "train_pairs": len(train), "config": asdict(cfg)}
    out = Path(cfg.output_dir)
    with no_progress_bars():
        model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "reward_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
