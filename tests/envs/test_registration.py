"""Environment ids work the way users reach them: by module-qualified id, and from the environment guide's snippets."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

import textgym  # noqa: F401  (registers the ids)

GUIDE = Path(__file__).parent.parent.parent / "docs" / "guides" / "environment.md"


@pytest.mark.slow
def test_module_qualified_id_needs_no_import():
    """``gym.make("textgym:textgym/TicTacToe-v0")`` imports textgym itself (cleanrl's --env-id form)."""
    code = ("import gymnasium as gym; env = gym.make('textgym:textgym/TicTacToe-v0'); obs, info = env.reset(seed=0); "
            "print(env.spec.id, obs.shape)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["textgym/TicTacToe-v0", "(18,)"]


def test_the_guide_vector_env_snippet_runs():
    """The environment guide's vector-env snippet defines everything it uses and steps all 8 slots."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    snippet = next(block for block in blocks if "gym.make_vec(" in block and "KeywordReward([\"great\"])" in block)
    namespace: dict = {}
    exec("import gymnasium as gym\nimport textgym\nfrom textgym.rewards import KeywordReward\n" + snippet, namespace)
    envs = namespace["envs"]
    obs, _ = envs.reset(seed=0)
    obs, rewards, *_ = envs.step(envs.action_space.sample())
    assert obs["input_ids"].shape == (8, 24) and rewards.shape == (8,)


@pytest.mark.parametrize("env_id", ["textgym/Sentiment-v0", "textgym/TextTicTacToe-v0"])
def test_an_unknown_keyword_beside_a_model_object_is_one_short_line(env_id):
    """gym.make with a model object and a misspelt keyword: a short error naming it, not the model's repr."""
    from textgym.models import load_causal_lm, load_tokenizer

    name = "textgym/tictactoe-lm" if "TicTacToe" in env_id else "textgym/tiny-lm"
    with pytest.raises(ValueError, match="takes no argument 'kl_coeff' \\(did you mean 'kl_coef'\\?\\)") as caught:
        gym.make(env_id, model=load_causal_lm(name), tokenizer=load_tokenizer(name), kl_coeff=0.1)
    assert len(str(caught.value)) < 400 and "GPT2" not in str(caught.value)
