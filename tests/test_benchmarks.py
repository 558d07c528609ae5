"""Every benchmark script imports what it uses and answers ``--help`` (running them takes minutes)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).parent.parent / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_the_benchmark_answers_help(path, monkeypatch, capsys):
    """``python benchmarks/NAME.py --help`` prints its usage and exits 0: a moved name it imports fails here."""
    monkeypatch.syspath_prepend(str(path.parent))  # the scripts import their neighbours (rollout, scale)
    monkeypatch.setattr(sys, "argv", [str(path), "--help"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(path), run_name="__main__")
    assert stop.value.code in (0, None) and "usage" in capsys.readouterr().out.lower()
