"""textgym demo: the whole pipeline on a tiny budget writes its report, table and plots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from textgym.app.cli import main
from textgym.app.config import DemoConfig, RLConfig, SFTConfig
from textgym.app.pipeline import run_demo


@pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
@pytest.mark.slow
def test_demo_runs_end_to_end_on_a_tiny_budget(tmp_path, capsys):
    """The demo writes its report, plots, policy, reward model and each stage's metrics, printing only its progress."""
    cfg = DemoConfig(out=str(tmp_path / "demo"), sft=SFTConfig(examples=64), rm_pairs=64,
                     rl=RLConfig(total_steps=512), eval_prompts=6, max_new_tokens=10)
    metrics = run_demo(cfg)
    out = tmp_path / "demo"
    for name in ("report.md", "metrics.json", "config.json", "training.csv", "training_curves.png",
                 "reward_scores.png"):
        assert (out / name).stat().st_size > 100, name
    assert (out / "rl" / "policy" / "model.safetensors").is_file() and (out / "reward_model" / "config.json").is_file()
    assert (out / "rl" / "config.json").is_file() and (out / "rl" / "metrics.csv").is_file()  # the harness ran it
    for stage in ("sft", "rl"):
        assert set(metrics[stage]) >= {"reward", "kl_to_reference", "perplexity_heldout", "distinct_2",
                                       "judge/p_helpful", "off_topic_tips_rate", "off_topic_tip_share"}
    assert metrics["sft"]["kl_to_reference"] == pytest.approx(0.0, abs=1e-4)  # the SFT model is the reference
    assert json.loads((out / "config.json").read_text())["rl"]["total_steps"] == 512
    assert "off_topic_tips_rate" in (out / "report.md").read_text()  # the task's metrics, in the table
    kinds = json.loads((out / "metrics.json").read_text())["reward_model"]["accuracy_by_rejected_kind"]
    assert set(kinds) == {"curt", "off-topic tips", "off-topic fact", "dismissive", "wrong advice"}
    printed = capsys.readouterr()
    assert "[1/4]" in printed.out and "[4/4]" in printed.out and "Samples" in (out / "report.md").read_text()
    assert "Writing model shards" not in printed.err and "LOAD REPORT" not in printed.err  # only its own progress


def test_cli_help(capsys):
    """``textgym --help`` lists ``demo``, and ``textgym demo --help`` lists ``--rl.total-steps``."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--rl.total-steps" in capsys.readouterr().out


def test_reward_model_audit_counts_each_kind_of_bad_answer():
    """The audit reports accuracy per rejected kind: a length scorer beats the short kinds but not off-topic tips."""
    from textgym.data import synthetic
    from textgym.tasks import get_task

    accuracy_by_rejected_kind = get_task("helpfulness").audit
    rows = synthetic.dialogues(n=120, seed=3)["test"]

    def longest_wins(prompts, completions):  # prefers long answers: beats every short bad kind, not off-topic tips
        return np.array([len(c) for c in completions], dtype=float)

    accuracy = accuracy_by_rejected_kind(longest_wins, rows)
    assert set(accuracy) == {"curt", "off-topic tips", "off-topic fact", "dismissive", "wrong advice"}
    assert accuracy["curt"] == accuracy["dismissive"] == accuracy["off-topic fact"] == 1.0
    assert 0.2 < accuracy["off-topic tips"] < 0.8
