"""docs/integrations-openenv.md: every Python snippet runs as printed, against a ``textgym serve`` started here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("openenv")
pytest.importorskip("skyrl_gym")

from test_openenv import Server  # noqa: E402

PAGE = Path(__file__).parent.parent.parent / "docs" / "integrations-openenv.md"


def snippets() -> list[str]:
    """The page's ```python blocks, in order."""
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


def run(code: str, name: str) -> dict:
    """Run a snippet in a fresh namespace; the namespace after it."""
    namespace: dict = {"__name__": "__snippet__"}
    exec(compile(code, name, "exec"), namespace)  # noqa: S102
    return namespace


def test_the_page_has_the_client_the_gymnasium_env_and_the_skyrl_snippets():
    """Three snippets: OpenEnv's client, OpenEnvGymEnv, the SkyRL-gym adapter; and the serve command."""
    found = snippets()
    assert len(found) == 3
    assert "GenericEnvClient" in found[0] and "OpenEnvGymEnv" in found[1] and "skyrl_gym.make" in found[2]
    assert "textgym serve textgym/TextTicTacToe-v0 --port 8000" in PAGE.read_text()


@pytest.mark.slow
def test_the_server_snippets_run_against_the_served_env(capsys):
    """The client and Gymnasium-env snippets step ``textgym serve textgym/TextTicTacToe-v0`` as printed."""
    server = Server("textgym/TextTicTacToe-v0", "--max-sessions", "4")
    try:
        first, second = (s.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}") for s in snippets()[:2])
        info = run(first, "client")["info"]
        assert info["score"] in (-1.0, 0.0, 1.0) and len(info["agent_mask"]) == len(info["turn_rewards"])
        obs = run(second, "gymnasium")["obs"]
        assert obs["input_ids"].shape == (2, 96)
        assert server.wait_sessions(0) == 0
    finally:
        server.stop()
    assert "board" in capsys.readouterr().out


def test_the_skyrl_snippet_runs(capsys):
    """The SkyRL-gym snippet plays one turn."""
    out = run(snippets()[2], "skyrl")["out"]
    assert out["metadata"]["token_ids"] and "board" in capsys.readouterr().out
