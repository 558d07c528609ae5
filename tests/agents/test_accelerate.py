"""Several processes through accelerate: identical weights, and the same update as one process.

The processes are two CPU processes on gloo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).parent.parent.parent
pytestmark = pytest.mark.slow


def launch(*args: str, processes: int = 2, port: int = 29531, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``accelerate launch`` with ``processes`` CPU processes (ACCELERATE_USE_CPU: gloo, no GPU needed)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(port), *args]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(command, cwd=cwd or ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_processes_train_and_keep_identical_weights(tmp_path):
    """Train on two processes: both ranks end with bit-identical weights that differ from the initial ones."""
    out = tmp_path / "checksums.json"
    launch(str(ROOT / "examples" / "distributed_train.py"), "--steps", "320", "--out", str(out))
    result = json.loads(out.read_text())
    assert result["world_size"] == 2 and result["updates"] >= 2
    first, second = result["checksums"]
    assert first == second  # bit-identical after the updates
    assert first != result["initial_rank0"]  # and the updates did change them


@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_an_update_on_two_processes_equals_one_process_on_both_batches(tmp_path, algorithm):
    """One update split over two processes gives the same weights as one process on all the episodes."""
    worker = str(ROOT / "tests" / "agents" / "ddp_worker.py")
    subprocess.run([sys.executable, worker, algorithm, str(tmp_path / "one.safetensors")], check=True, cwd=ROOT,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, timeout=300)
    launch(worker, algorithm, str(tmp_path / "two.safetensors"), port=29532)
    one, two = load_file(tmp_path / "one.safetensors"), load_file(tmp_path / "two.safetensors")
    start = load_file(tmp_path / "one.safetensors")  # only to list the keys
    moved = 0
    for key in start:
        torch.testing.assert_close(two[key], one[key], atol=2e-6, rtol=1e-5)
        moved += 1
    assert moved > 0


def test_textgym_train_runs_unchanged_on_two_processes(tmp_path):
    """``textgym train`` on two processes writes metrics rows, the policy and eval.json from the main process."""
    launch("-m", "textgym.app.cli", "train", "--env", "Sentiment-v0", "--num-envs", "8", "--batch-episodes", "8",
           "--max-new-tokens", "6", "--total-steps", "384", "--checkpoint-every", "2", "--eval-prompts", "4",
           "--threads", "1", "--no-tensorboard", "--out", str(tmp_path / "run"), port=29533)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) >= 3  # a header and an update row per update, written once (by the main process)
    assert (tmp_path / "run" / "policy" / "model.safetensors").is_file() and (tmp_path / "run" / "eval.json").is_file()


def test_the_cpu_flag_that_starts_one_process_is_refused_with_the_command_that_works(tmp_path):
    """Refuse ``--cpu`` with the ``ACCELERATE_USE_CPU=1 ... --multi_gpu`` command to use, before creating the run."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines",
               "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "textgym.app.cli", "train", "--out",
               str(tmp_path / "run")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu" in result.stderr
    assert not (tmp_path / "run").exists()
