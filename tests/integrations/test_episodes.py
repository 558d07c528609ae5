"""play_episodes: one episode per slot, sampled with a KV cache, equal to the env played token by token."""

from __future__ import annotations

import ast
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym  # noqa: F401
from agents.sampling import LMSampler
from textgym.integrations.episodes import play_episodes
from textgym.models import load_causal_lm, load_tokenizer

ROOT = Path(__file__).parent.parent.parent
ID = "textgym/TextTicTacToe-v0"


@pytest.fixture(scope="module")
def kit():
    """The kit's tic-tac-toe LM and its tokenizer."""
    return load_causal_lm("textgym/tictactoe-lm"), load_tokenizer("textgym/tictactoe-lm")


def test_each_episode_replays_token_by_token_in_a_single_env(kit):
    """Slot i's episode, its agent tokens stepped into a single env seeded seed + i, gives the same numbers."""
    model, tokenizer = kit
    envs = gym.make_vec(ID, num_envs=6, vectorization_mode="vector_entry_point", model=model, tokenizer=tokenizer,
                        opponent="random", kl_coef=0.1)
    episodes = play_episodes(envs, model, [""] * 6, seed=7, generator=torch.Generator().manual_seed(0))
    assert any(0 in e.agent_mask for e in episodes)  # the env wrote turns
    for slot, episode in enumerate(episodes):
        env = gym.make(ID, model=model, tokenizer=tokenizer, opponent="random", kl_coef=0.1)
        obs, _ = env.reset(seed=7 + slot, options={"prompt": ""})
        assert obs["input_ids"][obs["attention_mask"] == 1].tolist() == episode.prompt_ids
        agent = np.array(episode.agent_mask) == 1
        steps = [env.step(int(t)) for t in np.array(episode.completion_ids)[agent]]
        final = steps[-1][4]
        assert np.allclose(np.array(episode.rewards)[agent], [step[1] for step in steps])
        assert final["completion_ids"].tolist() == episode.completion_ids and final["score"] == episode.score
        np.testing.assert_allclose(final["ref_logprobs"], episode.ref_logprobs, atol=1e-5)  # batched vs single
        assert final["agent_mask"].tolist() == episode.agent_mask
        assert final["turn_rewards"].tolist() == episode.turn_rewards
        assert np.all(np.array(episode.rewards)[~agent] == 0) and np.all(np.array(episode.logprobs)[~agent] == 0)


def test_it_samples_what_the_agents_sampler_samples(kit):
    """Same model, env seed and sampler seed: the same games as agents.sampling.LMSampler plays (first episodes)."""
    model, tokenizer = kit
    make = dict(num_envs=8, vectorization_mode="vector_entry_point", model=model, tokenizer=tokenizer,
                opponent="random", illegal="mask")
    episodes = play_episodes(gym.make_vec(ID, **make), model, [""] * 8, seed=3,
                             generator=torch.Generator().manual_seed(3))
    envs, sampler = gym.make_vec(ID, **make), LMSampler(model, 8, 0, seed=3)
    obs, info = envs.reset(seed=3, options={"prompt": [""] * 8})
    start, first = np.ones(8, bool), [None] * 8
    while any(f is None for f in first):
        actions = sampler.act(obs, start, info.get("action_mask"))
        obs, _, terminated, truncated, info = envs.step(actions)
        start = terminated | truncated
        for slot in np.flatnonzero(start):
            if first[slot] is None:
                first[slot] = info["final_info"]["completion_ids"][slot].tolist()
    assert [e.completion_ids for e in episodes] == first


def test_bad_calls_are_refused(kit):
    """One prompt per slot, prompts are texts, the temperature is a finite number > 0 (numpy numbers too)."""
    model, tokenizer = kit
    envs = gym.make_vec(ID, num_envs=2, vectorization_mode="vector_entry_point", model=model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="3 prompts for 2 env slots"):
        play_episodes(envs, model, ["", "", ""])
    with pytest.raises(TypeError, match="prompts must be texts"):
        play_episodes(envs, model, [[1, 2], [3]])
    for bad in (0, -1.0, float("inf"), "1"):
        with pytest.raises(ValueError, match="temperature"):
            play_episodes(envs, model, ["", ""], temperature=bad)
    assert len(play_episodes(envs, model, ["", ""], temperature=np.float32(0.7))) == 2


def test_the_env_library_does_not_import_the_integrations():
    """textgym.integrations sits above envs, rewards, models, data, eval and tasks."""
    for place in ("envs", "rewards", "models", "data", "eval", "tasks"):
        for file in sorted((ROOT / "textgym" / place).rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    assert not node.module.startswith("textgym.integrations"), file
                if isinstance(node, ast.Import):
                    assert not any(a.name.startswith("textgym.integrations") for a in node.names), file
