"""A new algorithm is one file: the RAFT example trains on textgym/Sentiment-v0 and raises the reward."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "custom_algorithm.py"


@pytest.mark.slow
def test_raft_from_the_example_raises_the_sentiment_reward(capsys):
    """RAFT, written against the public API only, lifts the sentiment score well above its start."""
    module = runpy.run_path(str(EXAMPLE), run_name="custom_algorithm")
    scores = module["main"](steps=12_288)
    assert scores["after"] > scores["before"] + 1.0, scores
    assert "RAFT: sentiment score" in capsys.readouterr().out
