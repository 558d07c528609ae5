"""LMSampler drives the vector env and samples what the model's softmax says."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym  # noqa: F401
from agents.sampling import LMSampler


@pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
def test_sampler_matches_the_reference_model_it_samples(env_kwargs, lm):
    """Sampling from the reference itself: mean log pi_ref per token ~ minus the reference's entropy."""
    envs = gym.make_vec("textgym/TextGeneration-v0", num_envs=8, vectorization_mode="vector_entry_point",
                        **env_kwargs)
    agent = LMSampler(lm, num_envs=8, pad_id=0, seed=0)
    obs, _ = envs.reset(seed=0)
    starts = np.ones(8, dtype=bool)
    ref_lps, entropies = [], []
    for _ in range(60):
        prompts = [obs["input_ids"][i][obs["attention_mask"][i] == 1] for i in range(8)]
        with torch.no_grad():
            for p in prompts:
                lp = torch.log_softmax(lm(torch.from_numpy(p)[None]).logits[0, -1], -1)
                entropies.append(-(lp.exp() * lp).sum().item())
        obs, _, terminated, truncated, info = envs.step(agent.act(obs, starts))
        ref_lps.extend(info["ref_logprob"][info["_ref_logprob"]])
        ref_lps.extend(info.get("final_info", {}).get("ref_logprob", np.zeros(8))[terminated | truncated])
        starts = terminated | truncated
    assert np.mean(ref_lps) == pytest.approx(-np.mean(entropies), abs=0.08)


def test_first_call_must_start_every_slot(lm):
    """The first call raises unless every slot is starting."""
    agent = LMSampler(lm, num_envs=2, pad_id=0)
    obs = {"input_ids": np.ones((2, 4), np.int64), "attention_mask": np.ones((2, 4), np.int64)}
    with pytest.raises(ValueError, match="every slot"):
        agent.act(obs, np.array([True, False]))


def test_sampler_follows_the_agent_protocol(lm, tmp_path):
    """The sampler is an Agent that honours action masks, acts greedily by the LM's argmax, and saves and loads."""
    from agents.base import Agent

    agent = LMSampler(lm, num_envs=2, pad_id=0, seed=0)
    assert isinstance(agent, Agent) and agent.learn(None, 10) == []
    obs = {"input_ids": np.ones((2, 4), np.int64), "attention_mask": np.ones((2, 4), np.int64)}
    mask = np.zeros((2, 48), np.int8)
    mask[:, 7] = 1
    assert agent.act(obs, np.array([True, True]), action_mask=mask).tolist() == [7, 7]
    greedy = agent.act(obs, np.array([True, True]), deterministic=True)
    with torch.no_grad():
        assert greedy[0] == lm(torch.ones((1, 4), dtype=torch.long)).logits[0, -1].argmax().item()
    agent.save(tmp_path)
    assert (tmp_path / "config.json").is_file()
    loaded = LMSampler.load(tmp_path)
    assert loaded.num_envs == 2 and (loaded.act(obs, np.array([True, True]), deterministic=True).tolist()
                                     == greedy.tolist())
