"""The layers: the environment library never imports the agents or the application; no import circles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
LIBRARY = ["textgym/__init__.py", "textgym/envs", "textgym/rewards", "textgym/models", "textgym/data", "textgym/eval",
           "textgym/tasks"]


def modules(*places: str) -> dict[str, Path]:
    """Module name -> file, for the files under ``places``."""
    found = {}
    for place in places:
        path = ROOT / place
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            name = ".".join(file.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = file
    return found


def imported(file: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("name", sorted(modules(*LIBRARY)))
def test_the_environment_library_imports_neither_agents_nor_the_application(name):
    """The library module imports neither ``agents``, ``textgym.app`` nor an integration, even inside a function."""
    file = modules(*LIBRARY)[name]
    above = ("agents.", "textgym.app", "textgym.integrations")
    wrong = {m for m in imported(file) if m == "agents" or m.startswith(above)}
    assert not wrong, f"{name} imports {sorted(wrong)}"


@pytest.mark.parametrize("name", sorted(modules("textgym/integrations")))
def test_integrations_sit_on_the_library_below_agents_and_the_application(name):
    """An integration with another library uses the environment library only: no ``agents``, no ``textgym.app``."""
    wrong = {m for m in imported(modules("textgym/integrations")[name])
             if m == "agents" or m.startswith(("agents.", "textgym.app"))}
    assert not wrong, f"{name} imports {sorted(wrong)}"


def test_agents_do_not_import_the_application():
    """No module of ``agents`` imports ``textgym.app``."""
    for name, file in modules("agents").items():
        assert not {m for m in imported(file) if m.startswith("textgym.app")}, name


def test_no_import_circles_in_the_application_and_the_agents():
    """The imports among ``textgym.app`` and ``agents`` form no cycle."""
    graph = {name: {m for m in imported(file) if m.startswith(("textgym.app", "agents"))}
             for name, file in modules("textgym/app", "agents").items()}

    def visit(name, path):
        assert name not in path, " -> ".join([*path, name])
        for nxt in graph.get(name, ()):
            visit(nxt, [*path, name])

    for name in graph:
        visit(name, [])
