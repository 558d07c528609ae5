"""The README and every docs page: each Python snippet runs as printed, and the README stays short.

A page's ```python blocks run in order in one namespace (as a reader would paste them), in an empty
folder. A block right after an HTML comment ``<!-- not run: reason -->`` is skipped (it needs the
network or a GPU); the reason shows in the page's source only. Pages whose snippets need a server
or a trainer have their own tests (:data:`DEDICATED`).
"""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import pytest

import textgym

ROOT = Path(__file__).resolve().parent.parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
DEDICATED = {  # page -> the test that runs its snippets against what they need
    "docs/integrations.md": "tests/integrations/test_docs.py",
    "docs/integrations-openenv.md": "tests/integrations/test_openenv_docs.py",
}
SLOW = {"README.md"}  # pages whose snippets train (seconds)
BLOCK = re.compile(r"(<!-- not run: [^>]*-->\n)?```python\n(.*?)```", flags=re.DOTALL)


def snippets(page: Path) -> list[str]:
    """The page's ```python blocks, in order, less those marked as not run."""
    return [code for skip, code in BLOCK.findall(page.read_text()) if not skip]


def name(page: Path) -> str:
    """The page's path from the repository root."""
    return page.relative_to(ROOT).as_posix()


RUNNABLE = [p for p in PAGES if snippets(p) and name(p) not in DEDICATED]


def test_the_readme_is_at_most_200_lines():
    """The README says what textgym is and links to the docs; everything else lives there."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_the_readme_and_the_environment_guide_have_snippets():
    """The collection finds the pages' snippets (a changed fence would silently run nothing)."""
    assert {"README.md", "docs/guides/environment.md"} <= {name(p) for p in RUNNABLE}


def test_every_env_id_the_docs_name_is_registered():
    """Each ``textgym/Name-vN`` in the README or the docs is a registered id."""
    assert textgym.__name__ in gym.registry["textgym/TextGeneration-v0"].entry_point
    named = {m for page in PAGES for m in re.findall(r"textgym/[A-Za-z]+-v\d+", page.read_text())}
    assert named and not {i for i in named if i not in gym.registry}


@pytest.mark.parametrize("page", [pytest.param(p, id=name(p), marks=[pytest.mark.slow] if name(p) in SLOW else [])
                                  for p in RUNNABLE])
def test_the_snippets_run(page, tmp_path, monkeypatch):
    """Each runnable snippet of the page runs, in order, in one namespace."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__snippet__"}
    for index, code in enumerate(snippets(page)):
        exec(compile(code, f"{name(page)}[{index}]", "exec"), namespace)  # noqa: S102
