"""PPO on the toy environments: it learns tic-tac-toe, batch layout does not change the update, it saves and loads."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym  # noqa: F401
from agents.base import Agent, RandomAgent
from agents.ppo import PPO, MLPPolicy, PPOConfig, rollout_batch
from agents.recipes import (
    TICTACTOE_ENVS,
    TICTACTOE_PPO,
    TINY_LANGUAGE_ENVS,
    TINY_LANGUAGE_PPO,
    tictactoe_policy,
    tiny_language_policy,
)
from textgym.eval.tictactoe import exact_outcomes


def make_envs(num_envs=TICTACTOE_ENVS, opponent="mix"):
    """Make a vector TicTacToe env of ``num_envs`` boards against ``opponent``."""
    return gym.make_vec("textgym/TicTacToe-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                        opponent=opponent)


def scores(agent):
    """Return the greedy agent's exact mean outcomes against the random and the minimax opponents."""
    greedy = lambda obs, mask: agent.act(obs, action_mask=mask, deterministic=True)  # noqa: E731
    return exact_outcomes(greedy, "random")["mean"], exact_outcomes(greedy, "minimax")["mean"]


@pytest.mark.slow
def test_ppo_learns_tictactoe():
    """A fixed budget (24,576 steps) and bars with margin: PPO reaches 0.93-0.95 wins and 0-0.02 losses there.

    The benchmark (``benchmarks/toy.py``) holds the strict bar: >= 95% wins against random and no loss
    against minimax.
    """
    agent = PPO(tictactoe_policy(seed=4), dataclasses.replace(TICTACTOE_PPO, seed=4))
    before = scores(agent)
    rows = agent.learn(make_envs(), total_steps=24_576)
    vs_random, vs_minimax = scores(agent)
    assert before[0]["win"] < 0.8 and before[1]["loss"] > 0.2
    assert vs_random["win"] >= 0.85 and vs_minimax["loss"] <= 0.1
    assert rows[-1]["charts/episodic_return"] > rows[0]["charts/episodic_return"]


def test_ppo_beats_random_quickly_without_symmetries():
    """A plain MLP PPO wins 15 points more against random than untrained, and logs the usual metrics."""
    torch.manual_seed(0)
    untrained = PPO(MLPPolicy(18, 9, (64, 64)), PPOConfig(seed=0, num_steps=16))
    torch.manual_seed(0)
    agent = PPO(MLPPolicy(18, 9, (64, 64)), PPOConfig(seed=0, num_steps=16))
    rows = agent.learn(make_envs(32, opponent="random"), total_steps=16_384)
    assert scores(agent)[0]["win"] > scores(untrained)[0]["win"] + 0.15
    assert {"losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl", "losses/clipfrac",
            "charts/SPS", "charts/episodic_return", "global_step"} <= set(rows[-1])


def test_one_env_by_eight_steps_equals_eight_envs_by_one_step():
    """The same eight transitions, laid out (T=8, N=1) or (T=1, N=8), make the same batch and the same update.

    The transitions differ from each other (observations, actions, rewards, episode ends), so an
    observation flattened in another order than its action or its advantage changes the result.
    """
    rng = np.random.default_rng(0)
    obs = torch.as_tensor(rng.integers(0, 2, (8, 18)), dtype=torch.float32)
    actions = torch.as_tensor(rng.integers(0, 9, 8))
    rewards, values = rng.normal(size=8), torch.as_tensor(rng.normal(size=8), dtype=torch.float32)
    cfg = PPOConfig(num_minibatches=2, update_epochs=2, gamma=0.9, gae_lambda=0.8)
    results = []
    for steps, envs in ((8, 1), (1, 8)):
        torch.manual_seed(0)
        agent = PPO(MLPPolicy(18, 9), cfg)
        with torch.no_grad():
            logprobs = torch.distributions.Categorical(logits=agent.module(obs)[0]).log_prob(actions)
        split = lambda x, steps=steps, envs=envs: list(x.reshape(steps, envs, *x.shape[1:]))  # noqa: E731
        buf = {"obs": split(obs), "masks": [None] * steps, "actions": split(actions), "logprobs": split(logprobs),
               "values": split(values), "rewards": list(rewards.reshape(steps, envs)),
               "dones": list(np.ones((steps, envs), dtype=bool))}  # every transition ends its episode
        batch = rollout_batch(buf, np.zeros(envs), cfg, torch.device("cpu"))
        stats = agent.update(batch)
        results.append((batch, stats, [p.detach().clone() for p in agent.module.parameters()]))
    (b1, s1, w1), (b2, s2, w2) = results
    for field in ("actions", "logprobs", "values", "advantages", "returns"):
        torch.testing.assert_close(getattr(b1, field), getattr(b2, field))
    torch.testing.assert_close(b1.obs, b2.obs)
    assert s1 == s2 and all(torch.equal(a, b) for a, b in zip(w1, w2, strict=True))


def test_a_rollout_keeps_each_observation_with_its_own_action_logprob_and_value():
    """A rollout batch's log-probs and values match the policy on its observations, and every action is legal."""
    agent = PPO(tictactoe_policy(seed=2), dataclasses.replace(TICTACTOE_PPO, seed=2, num_steps=6))
    captured = []
    agent.update = lambda batch: captured.append(batch) or {}
    agent.learn(make_envs(4), total_steps=24)
    batch = captured[0]
    with torch.no_grad():
        logits, values = agent.module(batch.obs, batch.masks)
    torch.testing.assert_close(torch.distributions.Categorical(logits=logits).log_prob(batch.actions), batch.logprobs)
    torch.testing.assert_close(values, batch.values)
    assert batch.masks.gather(1, batch.actions[:, None]).all()  # every action was legal where it was taken


def test_save_and_load_round_trip_for_any_policy(tmp_path):
    """A saved MLP or last-token policy loads as its own type and acts identically, with the same step counts."""
    for policy, envs in ((tictactoe_policy(seed=1), make_envs(8)),
                         (tiny_language_policy(), gym.make_vec("textgym/TinyLanguage-v0", num_envs=8,
                                                               vectorization_mode="vector_entry_point"))):
        agent = PPO(policy, dataclasses.replace(TICTACTOE_PPO, seed=1, num_steps=8))
        agent.learn(envs, total_steps=128)
        agent.save(tmp_path / "ppo")
        loaded = PPO.load(tmp_path / "ppo")
        assert type(loaded.module) is type(policy)  # a last-token policy loads as one, not as an MLP
        obs, info = envs.reset(seed=0)
        mask = info.get("action_mask")
        assert np.array_equal(agent.act(obs, action_mask=mask, deterministic=True),
                              loaded.act(obs, action_mask=mask, deterministic=True))
        assert loaded.global_step == agent.global_step and loaded.updates == agent.updates
        assert isinstance(loaded, Agent)


def test_the_adaptive_kl_controller_steers_the_environments_coefficient():
    """The adaptive controller raises the env's KL coefficient above the setpoint; a fixed one reads it from the env."""
    envs = gym.make_vec("textgym/TinyLanguage-v0", num_envs=TINY_LANGUAGE_ENVS, vectorization_mode="vector_entry_point",
                        kl_coef=0.3)
    agent = PPO(tiny_language_policy(), dataclasses.replace(TINY_LANGUAGE_PPO, kl_setpoint=0.01, kl_horizon=1000))
    rows = agent.learn(envs, total_steps=4096)
    assert envs.kl_coef != 0.3 and rows[-1]["objective/kl_coef"] == envs.kl_coef  # it moved, and it is one value
    assert rows[-1]["objective/kl"] > 0.01 and envs.kl_coef > 0.3  # KL above the setpoint: the penalty grows
    fixed = PPO(tiny_language_policy(), TINY_LANGUAGE_PPO)
    assert fixed.learn(envs, total_steps=512)[-1]["objective/kl_coef"] == envs.kl_coef  # read from the env


def test_random_agent_respects_the_mask():
    """The random agent picks only the actions its mask allows."""
    agent = RandomAgent(9, seed=0)
    mask = np.zeros((100, 9), np.int8)
    mask[:, [1, 7]] = 1
    assert set(agent.act(None, action_mask=mask).tolist()) == {1, 7}
    assert isinstance(agent, Agent)
