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


def _damage(folder, how):
    """Copy of the tiny LM's folder, damaged as ``how`` says; returns the file the error must name."""
    if how == "weights cut short":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) * 9 // 10])
    elif how == "weights not safetensors":
        (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    elif how == "weights missing":
        (folder / "model.safetensors").unlink()
    elif how == "config missing":
        (folder / "config.json").unlink()
        return folder / "config.json"
    elif how == "config not json":
        (folder / "config.json").write_text('{"model_type": "gpt2", ')
        return folder / "config.json"
    return folder / "model.safetensors"


DAMAGES = ["weights cut short", "weights not safetensors", "weights missing", "config missing", "config not json"]


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_model_folder_is_one_error_naming_the_file(tmp_path, how):
    """A model folder with a missing or damaged config.json or model.safetensors: one error naming that file."""
    import shutil

    from textgym.rewards.named import make_reward

    for name, loader in (("lm", load_causal_lm), ("rm", lambda path: make_reward(f"rm:{path}"))):
        folder = tmp_path / name
        if name == "lm":
            shutil.copytree(EMBEDDED_DIR / "tiny-lm", folder)
        else:  # a one-label scorer, as `textgym demo` and train_reward_model save one
            load_classifier("textgym/helpfulness-classifier").save_pretrained(folder)
            load_tokenizer("textgym/helpfulness-classifier").save_pretrained(folder)
        broken = _damage(folder, how)
        with pytest.raises((ValueError, FileNotFoundError)) as caught:
            loader(str(folder))
        message = str(caught.value)
        assert str(broken) in message and ("save" in message or "copy" in message), message
        assert "\n" not in message and len(message) < 400


def test_pickled_weights_alone_are_refused_by_name(tmp_path):
    """A folder with only pytorch_model.bin is refused with the way out (use_safetensors=False), not a hub error."""
    import shutil

    shutil.copytree(EMBEDDED_DIR / "tiny-lm", tmp_path / "lm")
    (tmp_path / "lm" / "model.safetensors").unlink()
    (tmp_path / "lm" / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"pickled weights \(pytorch_model.bin\).*use_safetensors=False"):
        load_causal_lm(str(tmp_path / "lm"))


def test_a_damaged_tokenizer_file_is_named(tmp_path):
    """A tokenizer.json that is not JSON is named, not a parse error from inside tokenizers."""
    import shutil

    shutil.copytree(EMBEDDED_DIR / "tiny-lm", tmp_path / "lm")
    (tmp_path / "lm" / "tokenizer.json").write_text('{"version": ')
    with pytest.raises(ValueError, match=f"{tmp_path / 'lm' / 'tokenizer.json'} is not valid JSON"):
        load_tokenizer(str(tmp_path / "lm"))


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, and a hub endpoint on this machine that refuses connections (no network)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused at once
    return tmp_path / "hub"


@pytest.mark.parametrize("offline", [False, True])
def test_a_hub_name_out_of_reach_fails_at_once_naming_it(empty_hub_cache, monkeypatch, offline):
    """A hub name while the hub is unreachable (or HF_HUB_OFFLINE): one error at once with the name tried."""
    import time

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    began = time.perf_counter()
    for loader in (load_causal_lm, load_classifier, load_tokenizer):
        with pytest.raises(FileNotFoundError, match="cannot load 'someone/some-model'.*not in the Hugging Face cache") \
                as caught:
            loader("someone/some-model")
        assert ("offline mode is on" if offline else "http://127.0.0.1:9 is unreachable") in str(caught.value)
    assert time.perf_counter() - began < 10  # transformers alone retries for about a minute


def test_a_cached_hub_model_loads_while_the_hub_is_unreachable(empty_hub_cache):
    """A model downloaded before loads from the Hugging Face cache when the hub cannot be reached."""
    import shutil

    snapshot = empty_hub_cache / "models--someone--tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(EMBEDDED_DIR / "tiny-lm", snapshot)
    (empty_hub_cache / "models--someone--tiny" / "refs").mkdir()
    (empty_hub_cache / "models--someone--tiny" / "refs" / "main").write_text("0" * 40)
    model, tokenizer = load_causal_lm("someone/tiny"), load_tokenizer("someone/tiny")
    assert model.name_or_path == "someone/tiny" and len(tokenizer) == model.config.vocab_size
