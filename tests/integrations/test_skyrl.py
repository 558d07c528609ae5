"""textgym envs as SkyRL-gym envs: checked against SkyRL-gym's own base class, registry and metrics."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

skyrl_gym = pytest.importorskip("skyrl_gym")

from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput  # noqa: E402

import textgym  # noqa: E402,F401
from textgym.integrations.skyrl import ENV_NAME, TextgymTextEnv, register  # noqa: E402


def make(env_id: str, seed: int = 0, **config) -> TextgymTextEnv:
    """The adapter made through SkyRL-gym's registry, as SkyRL's generator makes envs."""
    register()
    return skyrl_gym.make(ENV_NAME, env_config={"env_id": env_id, **config}, extras={"seed": seed, "data_source": "x"})


def free_cells(text: str) -> list[str]:
    """The free cells (1-9) of the last board in a TextTicTacToe reply (``board O . . / . X . / . . . move``)."""
    board = text.rsplit("board", 1)[1].split("move")[0].split()
    cells = [c for c in board if c != "/"]
    return [str(i + 1) for i, c in enumerate(cells) if c == "."]


def token_level(env_id: str, seed: int, ids: list[int]) -> tuple[list[float], list[dict]]:
    """Rewards and infos of stepping ``ids`` into the token-level env from the same seed."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    rewards, infos = [], []
    for token in ids:
        _, reward, terminated, truncated, info = env.step(token)
        rewards.append(float(reward))
        infos.append(info)
        if terminated or truncated:
            break
    env.close()
    return rewards, infos


def test_the_adapter_is_skyrl_gyms_env_made_by_its_registry():
    """``register`` is idempotent; ``skyrl_gym.make`` builds a ``BaseTextEnv`` whose outputs have its keys."""
    register()
    register()
    env = make("textgym/TinyLanguage-v0")
    assert isinstance(env, BaseTextEnv) and isinstance(env, skyrl_gym.Env)
    assert skyrl_gym.registry[ENV_NAME].entry_point == "textgym.integrations.skyrl:TextgymTextEnv"
    messages, _ = env.init([])
    assert [set(m) for m in messages] == [{"role", "content"}]
    out = env.step("the cat sees a dog")
    assert set(out) == set(BaseTextEnvStepOutput.__annotations__) - {"postprocessed_action"}
    env.close()


def test_a_single_turn_response_is_tokenised_once_and_equals_the_token_level_episode():
    """One step = the response's ids plus EOS; its reward is the token-level episode's return (KL terms + score)."""
    env = make("textgym/TinyLanguage-v0", seed=3, env_kwargs={"kl_coef": 0.1})
    env.init([])
    text = "the small cat likes a red ball"
    out = env.step(text)
    ids = env.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert out["metadata"]["token_ids"] == [*ids, env.tokenizer.eos_token_id]
    local = gym.make("textgym/TinyLanguage-v0", kl_coef=0.1)
    local.reset(seed=3)
    rewards, infos = [], []
    for token in out["metadata"]["token_ids"]:
        _, reward, terminated, truncated, info = local.step(token)
        rewards.append(float(reward))
        infos.append(info)
    assert terminated and out["done"] and out["observations"] == []
    assert out["reward"] == pytest.approx(sum(rewards), abs=1e-12)
    assert out["metadata"]["ref_logprobs"] == [i["ref_logprob"] for i in infos]
    assert out["metadata"]["score"] == infos[-1]["score"] and out["metadata"]["completion"] == infos[-1]["completion"]
    metrics = TextgymTextEnv.aggregate_metrics([env.get_metrics()])  # SkyRL-gym's own aggregator
    assert metrics == pytest.approx({"turns": 1.0, "return": sum(rewards), "score": infos[-1]["score"]})
    with pytest.raises(RuntimeError, match="call init first"):
        env.step("a dog")


def test_a_multi_turn_game_equals_its_token_level_twin_turn_by_turn():
    """TextTicTacToe: each step's reward is its turn's token rewards, its observation the env's reply."""
    env = make("textgym/TextTicTacToe-v0", seed=1)
    messages, _ = env.init([])
    replies, outs = [messages[0]["content"]], []
    while not (outs and outs[-1]["done"]):
        outs.append(env.step(free_cells(replies[-1])[0]))
        replies.append(outs[-1]["observations"][0]["content"] if outs[-1]["observations"] else "")
    ids = [t for out in outs for t in out["metadata"]["token_ids"]]
    rewards, infos = token_level("textgym/TextTicTacToe-v0", 1, ids)
    assert len(rewards) == len(ids)
    start = 0
    for out in outs:
        n = len(out["metadata"]["token_ids"])
        assert out["reward"] == pytest.approx(sum(rewards[start:start + n]), abs=1e-12)
        if not out["done"]:
            assert out["observations"][0]["content"] == infos[start + n - 1]["reply"]
        start += n
    final = infos[-1]
    assert outs[-1]["metadata"]["score"] == final["score"] and final["score"] in (-1.0, 0.0, 1.0)
    assert np.count_nonzero(final["agent_mask"]) == len(ids)  # only the stepped ids are the agent's
    assert env.get_metrics()["turns"] == len(outs)


def test_tokens_written_after_the_env_answers_are_dropped_and_reported():
    """A response longer than its turn: the ids after the env's reply are not stepped."""
    env = make("textgym/TextTicTacToe-v0", seed=0)
    messages, _ = env.init([])
    first, second = free_cells(messages[0]["content"])[:2]
    out = env.step(f"{first} {second}")
    assert out["metadata"]["token_ids"] == env.tokenizer(first, add_special_tokens=False)["input_ids"]
    assert out["metadata"]["dropped_tokens"] == env.tokenizer(second, add_special_tokens=False)["input_ids"]
    assert out["observations"] and not out["done"]


def test_bad_settings_and_actions_are_refused_by_name():
    """No env id, an unknown setting, a non-text env, a non-text action."""
    register()
    with pytest.raises(ValueError, match="needs env_config\\['env_id'\\]"):
        skyrl_gym.make(ENV_NAME, env_config={})
    with pytest.raises(ValueError, match="unknown setting\\(s\\) \\['temperature'\\]"):
        skyrl_gym.make(ENV_NAME, env_config={"env_id": "textgym/TinyLanguage-v0", "temperature": 1.0})
    with pytest.raises(ValueError, match="not a text env"):
        skyrl_gym.make(ENV_NAME, env_config={"env_id": "textgym/TicTacToe-v0"})
    env = make("textgym/TinyLanguage-v0")
    env.init([])
    with pytest.raises(TypeError, match="response text"):
        env.step([9, 15])


@pytest.mark.parametrize("ref_scoring", ["step", "episode"])
def test_reference_logprobs_are_reported_in_either_scoring_mode(ref_scoring):
    """Per turn where the env scores as it goes; for the whole completion at the end, in both modes (never 0s)."""
    env = make("textgym/TinyLanguage-v0", env_kwargs={"ref_scoring": ref_scoring})
    env.init([])
    out = env.step("the cat sees a dog")
    stepped, completion = out["metadata"]["token_ids"], out["metadata"]["completion_ref_logprobs"]
    assert out["done"] and len(completion) == len(stepped) and all(lp < 0 for lp in completion)
    assert out["metadata"]["ref_logprobs"] == (completion if ref_scoring == "step" else [])
    env.close()
