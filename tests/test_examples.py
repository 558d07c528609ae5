"""Every example script runs end to end (on its smallest budget)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))
QUICK_ARGS: dict[str, list[str]] = {
    "train_reward_model.py": ["--max-pairs", "64", "--test-pairs", "64"],
    "reward_hacking.py": ["--steps", "2048"],
    "kl_sweep.py": ["--steps", "1024", "--kl-coefs", "0", "0.5"],
    "tictactoe_lesson.py": ["--steps", "4096"],
    "text_tictactoe_lesson.py": ["--steps", "1024"],
    "custom_algorithm.py": ["--steps", "512"],
    "remax.py": ["--steps", "512"],
    "distributed_train.py": ["--steps", "48"],
    "sentiment_tuning.py": ["--steps", "512"],
    "detoxification.py": ["--steps", "512"],
    "helpfulness.py": ["--steps", "512"],
    "rlhf_pipeline.py": ["--sft-examples", "32", "--rm-pairs", "64", "--ppo-steps", "512"],
}


#: The examples that take several seconds even on their smallest budget (``make test-quick`` skips them).
SLOW = {"text_tictactoe_lesson.py", "detoxification.py", "rlhf_pipeline.py", "helpfulness.py", "sentiment_tuning.py",
        "tictactoe_lesson.py", "train_reward_model.py"}
RUNS = [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW else p for p in EXAMPLES]

PLOTS = {"reward_hacking.py": ["reward_hacking.png"], "kl_sweep.py": ["kl_sweep.png"],
         "tictactoe_lesson.py": ["tictactoe_lesson.png"], "text_tictactoe_lesson.py": ["text_tictactoe_lesson.png"]}


@pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.name)
def test_example_runs(path, monkeypatch, tmp_path, capsys):
    """The example runs as a script on its smallest budget, prints something, and writes its plots."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(path), *QUICK_ARGS.get(path.name, [])])
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip()
    for image in PLOTS.get(path.name, []):
        assert (tmp_path / image).stat().st_size > 1000


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_help_prints_usage_and_runs_nothing(path, monkeypatch, tmp_path, capsys):
    """``python examples/X.py --help`` prints its usage and exits 0 without running the example."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(path), "--help"])
    with pytest.raises(SystemExit) as caught:
        runpy.run_path(str(path), run_name="__main__")
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")
    assert not list(tmp_path.iterdir())  # nothing written
