"""Every benchmark script imports what it uses and answers ``--help`` (running them takes minutes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_the_benchmark_answers_help(path):
    """``python benchmarks/NAME.py --help`` prints its usage and exits 0: a moved name it imports fails here."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, path.name, "--help"], cwd=path.parent, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and "usage" in run.stdout.lower(), run.stderr[-2000:]
