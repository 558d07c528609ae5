"""Habits of the package: one version, written once; typing markers shipped; a license and a changelog."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import agents
import textgym

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_version_is_written_once():
    """The project metadata reads it from ``textgym.__version__``; the installed metadata and the changelog agree."""
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "textgym.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", textgym.__version__)
    assert importlib.metadata.version("textgym") == textgym.__version__
    assert f"## [{textgym.__version__}]" in (ROOT / "CHANGELOG.md").read_text()


def test_py_typed_ships_with_both_packages():
    """PEP 561 markers: type checkers read textgym's and agents' annotations once installed."""
    for package in (textgym, agents):
        assert (Path(package.__file__).parent / "py.typed").exists()
        assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"][package.__name__]


def test_the_license_file_matches_pyproject():
    """``license = "Apache-2.0"`` and the LICENSE file is that license's text."""
    assert PYPROJECT["project"]["license"] == "Apache-2.0" and PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert "Apache License\n                           Version 2.0, January 2004" in (ROOT / "LICENSE").read_text()
