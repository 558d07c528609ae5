"""Real-dataset loaders, run offline on files the project writes in the real formats."""

from __future__ import annotations

import pytest

from textgym.data import export
from textgym.data.loaders import load_hh_rlhf, load_imdb, load_preference_pairs, load_rows, read_jsonl, write_jsonl


def test_hh_rlhf_prompts_cut_between_human_and_assistant(tmp_path):
    """Rows are TRL-ready: the prompt once, the answers without it, prompt + answer = the transcript."""
    folder = export.write_hh_rlhf(tmp_path / "hh", n=60)
    data = load_hh_rlhf(folder, split="test")
    raw = read_jsonl(folder / "test.jsonl")
    for row, original in zip(data, raw, strict=True):
        assert row["prompt"].startswith("\n\nHuman: ") and row["prompt"].endswith("Assistant:")
        assert row["prompt"] + row["chosen"] == original["chosen"]
        assert row["prompt"] + row["rejected"] == original["rejected"]
        assert "Human:" not in row["chosen"] and "Assistant:" not in row["chosen"]
        assert row["question"] == row["prompt"][len("\n\nHuman: "):-len("\n\nAssistant:")]
    assert len(load_hh_rlhf(tmp_path / "hh" / "train.jsonl")) > len(data)


def test_hh_rlhf_multi_turn_keeps_the_earlier_turns_in_the_prompt(tmp_path):
    """A dialogue that differs only in its last answer: the earlier turns are prompt, the answers differ."""
    turns = "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Any tip for sleep?\n\nAssistant:"
    path = write_jsonl(tmp_path / "hh.jsonl", [{"chosen": turns + " Keep a routine.", "rejected": turns + " No."}])
    row = load_hh_rlhf(path)[0]
    assert (row["prompt"], row["chosen"], row["rejected"]) == (turns, " Keep a routine.", " No.")
    assert row["question"] == "Hi"


def test_imdb_openings(tmp_path):
    """IMDb prompts are each review's first four words, and both labels occur."""
    folder = export.write_imdb(tmp_path / "imdb", n=40)
    data = load_imdb(folder, split="train", opening_words=4)
    assert all(len(p.split()) == 4 and t.startswith(p) for p, t in zip(data["prompt"], data["text"], strict=True))
    assert set(data["label"]) == {0, 1}


def test_ultrafeedback_pairs(tmp_path):
    """UltraFeedback loads as prompt/chosen/rejected pairs of non-empty strings without HH turn markers."""
    folder = export.write_ultrafeedback(tmp_path / "uf", n=40)
    data = load_preference_pairs(folder, split="train_prefs")
    assert data.column_names == ["prompt", "chosen", "rejected"]
    assert all(isinstance(x, str) and x for x in list(data["chosen"]) + list(data["rejected"]))
    assert "Human:" not in data[0]["chosen"]


def test_malformed_line_names_file_and_line(tmp_path):
    """Invalid JSON or a line that is not an object is reported with the file name and line number."""
    path = tmp_path / "bad.jsonl"
    path.write_text('{"chosen": "a", "rejected": "b"}\n\n{"chosen": "a", \n')
    with pytest.raises(ValueError, match=r"bad.jsonl:3: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"text": "a", "label": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected a JSON object, got list"):
        load_imdb(path)


def test_missing_columns_and_paths(tmp_path):
    """Missing columns, files and splits, and rows not in the hh-rlhf format, raise errors that name them."""
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "hello"}])
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['label'\]; it has \['text'\]"):
        load_imdb(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_rows(tmp_path / "missing.jsonl", "train", [])
    with pytest.raises(FileNotFoundError, match="no 'validation' split"):
        load_hh_rlhf(export.write_hh_rlhf(tmp_path / "hh", n=20), split="validation")
    with pytest.raises(ValueError, match="hh-rlhf format"):
        load_hh_rlhf(write_jsonl(tmp_path / "y.jsonl", [{"chosen": "no turns", "rejected": "x"}]))
