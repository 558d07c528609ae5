"""The application's layers: orchestrators side by side over the steps, the steps over the file utilities."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).parent.parent.parent / "textgym" / "app"
#: Each module of the application by layer, lowest first; a module imports only from its layer and those below.
LAYERS = [
    {"config", "files"},
    {"harness", "steps", "feedback", "web"},  # the steps: the RL run (the harness), SFT, reward models, feedback
    # the orchestrators: siblings, none imports another
    {"pipeline", "loop", "personalize", "bench", "overoptimization"},
    {"cli"},
]
ORCHESTRATORS = LAYERS[2]


def app_imports(module: str) -> set[str]:
    """The ``textgym.app`` modules that ``module`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse((APP / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "textgym.app":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("textgym.app."):
            found.add(node.module.removeprefix("textgym.app."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("textgym.app.") for a in node.names if a.name.startswith("textgym.app.")}
    return found


def layer(module: str) -> int:
    """The layer of ``module``, 0 the lowest."""
    return next(i for i, names in enumerate(LAYERS) if module in names)


def test_every_module_of_the_application_has_a_layer():
    """A new module of ``textgym/app`` is placed in a layer here."""
    assert {p.stem for p in APP.glob("*.py")} - {"__init__"} == set().union(*LAYERS)


@pytest.mark.parametrize("module", sorted(set().union(*LAYERS)))
def test_no_module_imports_from_a_layer_above(module):
    """Steps never import an orchestrator, file utilities never a step."""
    above = {name for name in app_imports(module) if layer(name) > layer(module)}
    assert not above, f"textgym.app.{module} imports {sorted(above)} from a layer above"


@pytest.mark.parametrize("module", sorted(ORCHESTRATORS))
def test_orchestrators_are_siblings(module):
    """No orchestrator imports another (or another's private helpers): what they share is a step."""
    assert not app_imports(module) & (ORCHESTRATORS - {module})


def test_the_rl_run_config_is_built_in_one_place():
    """Only ``steps.rl_config`` builds the RL run's ``TrainConfig``; the orchestrators ask it."""
    builders = [p.stem for p in APP.glob("*.py") if "TrainConfig(" in p.read_text()]
    assert sorted(builders) == ["config", "steps"]
