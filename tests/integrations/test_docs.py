"""docs/integrations.md: every Python snippet runs as printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).parent.parent.parent / "docs" / "integrations.md"


def snippets() -> list[str]:
    """The page's ```python blocks, in order."""
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


def test_the_page_has_a_snippet_per_adapter():
    """Two GRPOTrainer snippets (a game, a single-turn task with the env's KL) and the turn-level one."""
    found = snippets()
    assert len(found) == 3
    assert "TextTicTacToe-v0" in found[0] and "kl_coef=0.05" in found[1] and "TurnLevel(" in found[2]


@pytest.mark.parametrize("index", [pytest.param(0, marks=pytest.mark.slow), pytest.param(1, marks=pytest.mark.slow), 2])
def test_each_snippet_runs(index, tmp_path, monkeypatch, capsys):
    """Each snippet runs in a fresh namespace, in an empty folder (its trainers write their output there)."""
    if "trl" in snippets()[index]:
        pytest.importorskip("trl")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    namespace: dict = {"__name__": "__snippet__"}
    exec(compile(snippets()[index], f"{PAGE.name}[{index}]", "exec"), namespace)  # noqa: S102
    if "trainer" in namespace:
        assert namespace["trainer"].state.global_step == 2
    else:
        assert namespace["info"]["score"] in (-1.0, 0.0, 1.0) and "board" in capsys.readouterr().out
