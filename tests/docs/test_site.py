"""The docs site: it builds with warnings as errors, and the benchmarks page covers every result file."""

from __future__ import annotations

import doctest
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def load(module: str):
    """A module of docs/ (not a package), imported by path."""
    spec = importlib.util.spec_from_file_location(module, ROOT / "docs" / f"{module}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_benchmarks_page_has_a_section_and_the_machine_for_every_result():
    """One section per ``benchmarks/results/*.json``, each saying which machine it records (or none)."""
    page = load("gen_benchmarks").render()
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        section = page.split(f"\n## {path.stem}\n", 1)[1].split("\n## ", 1)[0]
        assert "**Recorded machine:**" in section
        if "cpu" in json.dumps(json.loads(path.read_text())):
            assert "cpu" in section.split("**Recorded machine:**", 1)[1].split("\n", 1)[0]


def test_a_new_result_file_gets_a_section(tmp_path):
    """A result file the script does not know still gets its tables, and its CPU flags."""
    rows = {"machine": {"cpu": "Some CPU", "cpu_flags": {"avx2": True, "avx512f": False}},
            "rows": [{"method": "a", "seconds": 1.23456, "curve": list(range(50))}]}
    (tmp_path / "new.json").write_text(json.dumps(rows))
    page = load("gen_benchmarks").render(tmp_path)
    assert "## new" in page and "cpu Some CPU; cpu_flags avx2." in page
    assert "| method | seconds |" in page and "| a | 1.235 |" in page


@pytest.mark.parametrize("module", ["gen_benchmarks", "griffe_doctest"])
def test_the_docs_scripts_doctests(module):
    """The doctests of docs/'s scripts (pytest collects only the packages and tests/)."""
    if module == "griffe_doctest":
        pytest.importorskip("griffe")
    result = doctest.testmod(load(module))
    assert result.attempted and not result.failed


@pytest.mark.slow
def test_the_site_builds_with_warnings_as_errors(tmp_path):
    """``mkdocs build --strict`` (what ``make docs`` runs): no broken link, anchor or docstring."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "benchmarks.html").exists()
    assert "TextGenerationEnv" in (tmp_path / "site" / "api" / "envs.html").read_text()
