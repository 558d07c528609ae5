"""benchmarks/trl_rollout.py runs end to end in its smallest configuration and writes its figures."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

ROOT = Path(__file__).parent.parent.parent


def benchmark(*flags: str) -> subprocess.CompletedProcess:
    """Run ``benchmarks/trl_rollout.py`` with ``flags``, importing this checkout's textgym."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "benchmarks/trl_rollout.py", *flags], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("ref_scoring", ["episode", "step"])
def test_the_trl_rollout_benchmark_runs_quick(tmp_path, ref_scoring):
    """``--quick``: both sides train on the kit model, in turns, with equal completions; the JSON has the ratio."""
    out = tmp_path / "trl_rollout.json"
    run = benchmark("--quick", "--ref-scoring", ref_scoring, "--output", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["config"]["ref_scoring"] == ref_scoring
    (row,) = result["rows"]
    assert row["model"] == "kit" and row["parameters"] > 0
    assert len(row["step_seconds"]["textgym"]) == len(row["step_seconds"]["trl"]) == result["config"]["steps"]
    speed = row["steps_per_s"]
    assert speed["textgym"] > 0 and speed["trl"] > 0
    pairs = [trl / mine for mine, trl in zip(row["step_seconds"]["textgym"], row["step_seconds"]["trl"], strict=True)]
    assert row["ratio"] == pytest.approx(statistics.median(pairs))  # step i of each side: the same prompts
    assert row["round_ratios"] == [pytest.approx(row["ratio"])] and row["ratio_spread"] == row["round_ratios"] * 2
    assert set(result["machine"]["cpu_flags"]) >= {"avx2", "avx512_bf16", "amx_tile"}
    assert "textgym/trl" in run.stdout and f"{row['ratio']:.2f}" in run.stdout


@pytest.mark.slow
def test_a_bad_model_size_is_refused(tmp_path):
    """A size that is neither ``kit`` nor LAYERSxWIDTH stops the run before anything is built, and names it."""
    run = benchmark("--models", "kit", "4by256", "--output", str(tmp_path / "x.json"))
    assert run.returncode == 2 and "4by256" in run.stderr and "LAYERSxWIDTH" in run.stderr
    assert not (tmp_path / "x.json").exists()
