"""textgym label: a person ranks through a real pseudo-terminal; a judge ranks in the same format."""

from __future__ import annotations

import json
import sys

import pexpect
import pytest

from textgym.app.cli import main
from textgym.app.feedback import Item, Principle, label_with_judge, parse_ranking
from textgym.data.loaders import write_jsonl
from textgym.data.preferences import load_preferences, read_rankings
from textgym.rewards import KeywordReward, LengthReward, WeightedSum

ITEMS = [{"prompt": f"question {i}?", "completions": [f"a great answer {i}", f"an answer {i}", "no"]}
         for i in range(3)]


def spawn(args, cwd):
    """Spawn ``textgym label`` with ``args`` in ``cwd`` behind a real pseudo-terminal."""
    return pexpect.spawn(sys.executable, ["-m", "textgym.app.cli", "label", *args], cwd=str(cwd), encoding="utf-8",
                         timeout=60)


@pytest.mark.slow
def test_person_ranks_undoes_skips_interrupts_and_resumes(tmp_path):
    """Rank, retry a bad answer, undo, tie, skip, Ctrl-C (exit 130, answers kept), then resume the rest."""
    write_jsonl(tmp_path / "in.jsonl", ITEMS)
    args = ["--input", "in.jsonl", "--output", "out.jsonl"]
    child = spawn(args, tmp_path)
    child.expect(r"\[1/3\] prompt:\r\nquestion 0\?")
    child.expect("> ")
    child.sendline("2 1 3")
    child.expect(r"\[2/3\]")
    child.expect("> ")
    child.sendline("4 1")
    child.expect("could not read '4 1'")
    child.expect("> ")
    child.sendline("u")
    child.expect("undone")
    child.expect(r"\[1/3\]")
    child.expect("> ")
    child.sendline("1 2=3")
    child.expect(r"\[2/3\]")
    child.expect("> ")
    child.sendline("s")
    child.expect(r"\[3/3\]")
    child.expect("> ")
    child.sendintr()  # Ctrl-C: what was answered is on disk
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    rows = read_rankings(tmp_path / "out.jsonl")
    assert [(r["id"], r["ranking"], r.get("skipped", False)) for r in rows] == [(0, [1, 2, 2], False),
                                                                               (1, None, True)]
    child = spawn(args, tmp_path)
    child.expect("resuming: 2 answered, 1 to go")
    child.expect(r"\[1/1\] prompt:\r\nquestion 2\?")
    child.expect("> ")
    child.sendline("3 2 1")
    child.expect("1 answers saved")
    child.expect(pexpect.EOF)
    rows = read_rankings(tmp_path / "out.jsonl")
    assert rows[-1]["ranking"] == [3, 2, 1] and rows[-1]["source"] == "human"
    assert len(load_preferences(tmp_path / "out.jsonl")) == 2 + 3  # tie gives 2 pairs, full ranking 3


def test_parse_ranking_rejects_bad_orders():
    """Reject rankings that miss an item, repeat one, name one out of range, or are not numbers."""
    for bad in ("1 2", "1 1 2", "1 2 4", "a b c"):
        with pytest.raises(ValueError):
            parse_ranking(bad, 3)


def test_judge_writes_the_same_format(tmp_path):
    """A judge writes the human row format, with source ``ai:<judge>`` and each completion's score."""
    out = tmp_path / "ai.jsonl"
    items = [Item(0, "q", ["good good", "good", "bad"])]
    label_with_judge(items, out, KeywordReward(["good"]))
    row = read_rankings(out)[0]
    assert row["ranking"] == [1, 2, 3] and row["source"] == "ai:keyword[good]"
    assert row["scores"] == {"keyword[good]": [2.0, 1.0, 0.0]}


def test_constitution_of_principles(tmp_path):
    """A weighted sum of principles scores each principle by name and ranks by the weighted total."""
    judge = WeightedSum({Principle("on-topic", KeywordReward(["rice"])): 1.0,
                         Principle("concise", LengthReward(3)): 0.5})
    out = tmp_path / "cai.jsonl"
    label_with_judge([Item(0, "q", ["rinse the rice", "rice rice rice rice rice rice", "no idea"])], out, judge)
    row = read_rankings(out)[0]
    assert set(row["scores"]) == {"on-topic", "concise"}
    assert row["ranking"] == [2, 1, 3]  # 1.0 ; 6 - 1.5 = 4.5 ; -0.5 * 1 = -0.5


def test_cli_judge_and_errors(tmp_path, capsys):
    """``label --judge`` ranks by the named reward, ties kept; an unknown judge exits 2 listing known rewards."""
    write_jsonl(tmp_path / "in.jsonl", ITEMS)
    out = tmp_path / "out.jsonl"
    assert main(["label", "--input", str(tmp_path / "in.jsonl"), "--output", str(out), "--judge", "keyword:great"]) == 0
    assert [r["ranking"] for r in read_rankings(out)][0] == [1, 2, 2]
    assert main(["label", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o2.jsonl"),
                 "--judge", "vibes"]) == 2
    assert "unknown reward 'vibes'; known rewards:" in capsys.readouterr().err


def test_cli_samples_from_a_model(tmp_path):
    """``label --model`` samples k completions for HH-style prompts and ranks them by the given principles."""
    out = tmp_path / "rm.jsonl"
    assert main(["label", "--model", "textgym/tiny-lm", "--num", "2", "-k", "3", "--output", str(out),
                 "--principle", "helpful=helpfulness", "--principle", "polite=toxicity@0.5"]) == 0
    rows = read_rankings(out)
    assert len(rows) == 2 and all(len(r["completions"]) == 3 and r["source"].startswith("ai:") for r in rows)
    assert json.loads(out.read_text().splitlines()[0])["prompt"].startswith("\n\nHuman:")


def test_an_output_in_the_readmes_format_without_ids_resumes(tmp_path, capsys):
    """An output written by hand without ids resumes: its row is not asked again and the rest follow in order."""
    write_jsonl(tmp_path / "in.jsonl", ITEMS)
    first = {k: ITEMS[0][k] for k in ("prompt", "completions")}
    write_jsonl(tmp_path / "out.jsonl", [{**first, "ranking": [1, 2, 3]}])  # written by hand: no id
    assert main(["label", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.jsonl"),
                 "--judge", "length:3"]) == 0
    assert "resuming: 1 answered, 2 to go" in capsys.readouterr().out
    prompts = [row["prompt"] for row in read_rankings(tmp_path / "out.jsonl")]
    assert prompts == ["question 0?", "question 1?", "question 2?"]  # the hand-written row was not asked again


def test_rankings_that_are_all_ties_are_a_clear_error_for_the_reward_model(tmp_path):
    """Training a reward model on rankings that are all ties raises a clear "no train pairs" error."""
    from textgym.rewards.training import RewardTrainingConfig, train_reward_model

    write_jsonl(tmp_path / "ties.jsonl", [{**item, "ranking": [1, 1, 1]} for item in ITEMS])
    pairs = load_preferences(tmp_path / "ties.jsonl")
    with pytest.raises(ValueError, match="no train pairs: every ranking is a tie or was skipped"):
        train_reward_model(pairs, pairs, RewardTrainingConfig(output_dir=str(tmp_path / "rm")))


def test_sampling_answers_to_rank_prints_nothing():
    """Sampling the answers to rank is silent: no transformers warning about a mask that was passed."""
    import logging

    from textgym.app.feedback import sample_items
    from textgym.models import load_causal_lm, load_tokenizer

    logging.Logger.warning_once.cache_clear()  # transformers warns once per process: make this process fresh
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logging.getLogger("transformers").addHandler(handler)
    try:
        model, tokenizer = load_causal_lm("textgym/tiny-lm"), load_tokenizer("textgym/tiny-lm")
        items = list(sample_items(model, tokenizer, ["The film was", "I bought this kettle and"], k=4,
                                  max_new_tokens=40))
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert len(items) == 2 and all(len(item.completions) == 4 for item in items)
    assert not [message for message in seen if "attention_mask" in message]
