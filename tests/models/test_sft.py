"""Supervised fine-tuning on transformers' Trainer: deterministic, quiet, a folder that loads on its own."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from textgym.data import synthetic
from textgym.models import load_tokenizer
from textgym.models.build import encode, perplexity
from textgym.models.sft import CausalCollator, SFTTrainingConfig, encode_texts, train_sft

TEXTS = list(synthetic.dialogues(n=60, seed=0)["train"]["chosen"][:16])


def tiny(tmp_path, name: str, **changes) -> SFTTrainingConfig:
    """A 2-epoch, 2-step-per-epoch fine-tuning of the embedded LM into ``tmp_path / name``."""
    return SFTTrainingConfig(**{"output_dir": str(tmp_path / name), "epochs": 2, "batch_size": 8, **changes})


def test_the_collator_pads_right_and_keeps_each_final_eos_in_the_loss():
    """The pad id is EOS here: only padding, found by the mask, is left out of the labels; every real EOS stays in."""
    tokenizer = load_tokenizer("textgym/tiny-lm")
    rows = encode_texts(tokenizer, ["Hello there.", "Hi."], max_length=128)
    eos = tokenizer.eos_token_id
    assert tokenizer.pad_token_id == eos and all(row["input_ids"][-1] == eos for row in rows)
    batch = CausalCollator(tokenizer)(rows)
    short, long = sorted(len(row["input_ids"]) for row in rows)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, long)
    assert batch["labels"][1, :short].tolist() == rows[1]["input_ids"]  # its EOS is a target
    assert batch["labels"][1, short:].tolist() == [-100] * (long - short)
    assert batch["attention_mask"][1].tolist() == [1] * short + [0] * (long - short)
    assert len(encode_texts(tokenizer, ["word " * 200], max_length=16)[0]["input_ids"]) == 16


def test_same_seed_same_weights_nothing_printed_and_the_folder_loads_on_its_own(tmp_path, capsys, monkeypatch):
    """Two runs at one seed save identical weights, print nothing, write only their folder, and it loads alone."""
    monkeypatch.chdir(tmp_path)
    metrics = train_sft(TEXTS, tiny(tmp_path, "a", epochs=1))
    train_sft(TEXTS, tiny(tmp_path, "b", epochs=1))
    printed = capsys.readouterr()
    assert (printed.out, printed.err) == ("", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no checkpoints, logs or runs/ beside it
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert not [p for p in (tmp_path / "a").iterdir() if p.is_dir()]
    assert json.loads((tmp_path / "a" / "sft_metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert (len(metrics["train_loss"]), metrics["steps"], metrics["texts"]) == (1, 2, 16)
    folder = tmp_path / "a"
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    ids = tokenizer("Human: How do I keep basil alive?\n\nAssistant:", return_tensors="pt")["input_ids"]
    assert model.generate(ids, max_new_tokens=4, do_sample=False).shape[1] > ids.shape[1]


def test_fine_tuning_lowers_the_loss_on_its_texts_and_progress_prints_each_epoch(tmp_path, capsys):
    """The fine-tuned model fits its texts better than the base; ``progress`` prints one line per epoch."""
    from textgym.models import load_causal_lm

    metrics = train_sft(TEXTS, tiny(tmp_path, "sft", learning_rate=3e-3), progress=True)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["  sft epoch 1/2", "  sft epoch 2/2"]
    tokenizer = load_tokenizer("textgym/tiny-lm")
    seqs = encode(tokenizer, TEXTS, 128, eos=True)
    with torch.no_grad():
        before = perplexity(load_causal_lm("textgym/tiny-lm"), seqs)
        after = perplexity(load_causal_lm(tmp_path / "sft"), seqs)
    assert after < before and metrics["train_loss"][1] < metrics["train_loss"][0]


@pytest.mark.parametrize(("texts", "changes", "message"), [
    ([], {}, "no texts"), (TEXTS, {"epochs": 0}, "epochs must be at least 1"),
    (TEXTS, {"batch_size": 0}, "batch_size must be at least 1"),
])
def test_bad_input_is_named_before_training(tmp_path, texts, changes, message):
    """No texts, or a budget of zero, is an error naming it; nothing is written."""
    with pytest.raises(ValueError, match=message):
        train_sft(texts, tiny(tmp_path, "sft", **changes))
    assert not (tmp_path / "sft").exists()
