"""Two CPU processes on gloo train one model: the weights stay identical across ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "distributed_train.py"


def test_two_gloo_processes_keep_identical_weights(tmp_path):
    out = tmp_path / "checksums.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
               str(EXAMPLE), "--steps", "200", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    subprocess.run(command, check=True, cwd=tmp_path, env=env, timeout=300, capture_output=True)
    result = json.loads(out.read_text())
    assert result["world_size"] == 2 and result["updates"] >= 2
    first, second = result["checksums"]
    assert first == second  # bit-identical after the updates
    assert first != result["initial_rank0"]  # and the updates did change them
