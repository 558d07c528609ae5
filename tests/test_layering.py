"""The layers of the whole package: no import circle anywhere, and no module imports a layer above its own.

Low to high: ``textgym.models`` and ``textgym.data``; ``textgym.rewards``; ``textgym.envs`` and
``textgym.eval``; ``textgym.tasks`` (and the package itself, which registers the tasks' ids);
``textgym.integrations`` and ``agents``, side by side (neither imports the other); ``textgym.app``.
So the environment library never imports the agents, the integrations or the application.

Every import counts: at the top or inside a function, absolute or relative, of a module or of a
name from a package (``from textgym import tasks``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = ("textgym", "agents")
#: Each part of the package, by the prefix of its modules' names, and its layer (low to high).
LAYERS = {"textgym.models": 0, "textgym.data": 0, "textgym.rewards": 1, "textgym.envs": 2, "textgym.eval": 2,
          "textgym.tasks": 3, "textgym": 3, "textgym.integrations": 4, "agents": 4, "textgym.app": 5}
#: Parts on one layer that must not import each other.
APART = [("textgym.integrations", "agents")]


def modules() -> dict[str, Path]:
    """Module name -> file, for every module of the packages (``__init__`` files as their package)."""
    found = {}
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            found[".".join(file.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = file
    return found


MODULES = modules()


def imported(name: str, file: Path) -> set[str]:
    """The package's modules that ``name`` imports, at the top or inside a function, relative imports resolved."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return {n for n in names if n in MODULES and n != name}


GRAPH = {name: imported(name, file) for name, file in MODULES.items()}


def part(name: str) -> str:
    """The longest prefix of :data:`LAYERS` that ``name`` belongs to."""
    return max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len)


def test_relative_and_package_imports_are_seen():
    """The graph resolves ``from . import x`` and ``from textgym import tasks`` (a check of the checker)."""
    assert "textgym.tasks" in GRAPH["textgym"]
    assert "textgym.tasks.base" in GRAPH["textgym.tasks.sentiment"]


def test_every_module_has_a_layer():
    """Each module of the package belongs to one of the layers (a new subpackage gets its place here)."""
    assert all(part(name) in LAYERS for name in MODULES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_upward_import(name):
    """The module imports nothing from a layer above its own, nor from a part kept apart from its own."""
    mine = part(name)
    above = sorted(m for m in GRAPH[name] if LAYERS[part(m)] > LAYERS[mine])
    assert not above, f"{name} (layer {LAYERS[mine]}) imports {above} from above"
    apart = sorted(m for m in GRAPH[name] for pair in APART if {mine, part(m)} == set(pair))
    assert not apart, f"{name} imports {apart}, which is kept apart from {mine}"


def test_no_import_circle():
    """The imports among all modules of the package form no cycle."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        assert name not in path, "import circle: " + " -> ".join([*path[path.index(name):], name])
        if name in done:
            return
        for nxt in sorted(GRAPH[name]):
            visit(nxt, [*path, name])
        done.add(name)

    for name in sorted(GRAPH):
        visit(name, [])
