"""One loading path: embedded names, local folders, clear errors; the embedded kit's quality."""

from __future__ import annotations

import json

import pytest
import torch

from textgym.models import EMBEDDED_DIR, embedded_names, load_causal_lm, load_classifier, load_tokenizer, resolve

KIT = ["textgym/helpfulness-classifier", "textgym/sentiment-classifier", "textgym/tictactoe-lm", "textgym/tiny-lm",
       "textgym/toxicity-classifier"]


def test_embedded_kit_is_installed_as_safetensors():
    """The kit's five models are installed as safetensors only, under 8 MiB in all."""
    assert embedded_names() == KIT
    for name in KIT:
        folder = EMBEDDED_DIR / name.removeprefix("textgym/")
        assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    sizes = json.loads((EMBEDDED_DIR / "metrics.json").read_text())["size_mib"]
    assert sum(sizes.values()) < 8  # a few MB in all


def test_embedded_lm_generates_corpus_like_text():
    """The tiny LM shares EOS and pad (id 0) and greedily continues a review with real words."""
    lm, tok = load_causal_lm("textgym/tiny-lm"), load_tokenizer("textgym/tiny-lm")
    assert tok.eos_token_id == tok.pad_token_id == 0 and lm.config.vocab_size == len(tok)
    ids = tok("I bought this kettle last week and", return_tensors="pt")["input_ids"]
    out = lm.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12, pad_token_id=0)
    words = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).split()
    assert len(words) >= 3 and all(w.strip(".,!?").isalpha() for w in words)


def test_embedded_metrics_meet_the_bars():
    """The recorded metrics meet the bars: classifiers at least 95% accurate, LM perplexity under 10."""
    metrics = json.loads((EMBEDDED_DIR / "metrics.json").read_text())
    assert metrics["accuracy"]["sentiment-classifier"] >= 0.95
    assert metrics["accuracy"]["toxicity-classifier"] >= 0.95
    assert metrics["perplexity"]["tiny-lm held-out"] < 10


def test_local_folder_roundtrip(tmp_path):
    """A classifier saved to a local folder loads from it with its labels."""
    load_classifier("textgym/sentiment-classifier").save_pretrained(tmp_path)
    model = load_classifier(str(tmp_path))
    assert model.config.id2label == {0: "negative", 1: "positive"}


def test_unknown_embedded_name_lists_known_ones():
    """An unknown ``textgym/`` name is refused with the known names."""
    with pytest.raises(ValueError, match="unknown embedded model 'textgym/huge-lm'.*textgym/tiny-lm"):
        load_causal_lm("textgym/huge-lm")


def test_missing_local_path_is_an_error_at_once_never_a_hub_download(tmp_path, monkeypatch):
    """Missing local paths raise at once, never downloading; a real hub name passes through unchanged."""
    with pytest.raises(FileNotFoundError, match="no such folder: './no/such/model'"):
        resolve("./no/such/model")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_tokenizer("/no/such/folder")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for name in ("runs/x/policy", "runs/my-rm", "models/a/b"):  # no hub name has two slashes or a local first part
        with pytest.raises(FileNotFoundError, match=f"no such folder: '{name}'"):
            resolve(name)
    assert resolve("Qwen/Qwen2-0.5B") == "Qwen/Qwen2-0.5B"  # a hub name for online users


def test_loading_prints_nothing(capfd):
    """Making the text envs and loading a classifier print nothing to stdout or stderr."""
    import gymnasium as gym

    import textgym  # noqa: F401

    for env_id in ("textgym/Sentiment-v0", "textgym/Helpfulness-v0", "textgym/Detox-v0"):
        gym.make(env_id)
    load_classifier("textgym/toxicity-classifier")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_a_model_loaded_by_name_remembers_the_name_not_this_machines_path():
    """A model loaded by its embedded name keeps that name as ``name_or_path``, not a local path."""
    assert load_causal_lm("textgym/tiny-lm").name_or_path == "textgym/tiny-lm"


def test_a_word_level_tokenizer_beside_a_qwen2_config_loads_as_saved(tmp_path):
    """A word-level tokenizer stays word-level (transformers would rebuild Qwen2's pre-tokenizer: no tokens)."""
    from transformers import Qwen2Config

    from textgym.models.tiny import word_tokenizer

    Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1).save_pretrained(tmp_path)
    word_tokenizer([f"w{i}" for i in range(1, 64)]).save_pretrained(tmp_path)
    assert load_tokenizer(tmp_path)("w1 w2 w3")["input_ids"] == [1, 2, 3]
