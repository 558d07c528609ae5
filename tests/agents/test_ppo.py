"""PPO learns tic-tac-toe; batching does not change the update; saving and loading round-trip."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import torch

import textgym  # noqa: F401
from agents.base import Agent, RandomAgent
from agents.ppo import PPO, MLPPolicy, PPOConfig, ppo_update
from agents.recipes import TICTACTOE_ENVS, TICTACTOE_PPO, tictactoe_policy
from textgym.eval.tictactoe import exact_outcomes


def make_envs(num_envs=TICTACTOE_ENVS, opponent="mix"):
    return gym.make_vec("textgym/TicTacToe-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                        opponent=opponent)


def scores(agent):
    greedy = lambda obs, mask: agent.act(obs, action_mask=mask, deterministic=True)  # noqa: E731
    return exact_outcomes(greedy, "random")["mean"], exact_outcomes(greedy, "minimax")["mean"]


def test_ppo_learns_tictactoe_to_the_bar():
    """Fixed seed, 50k steps: never loses to minimax, wins >= 95% against random (exactly evaluated)."""
    agent = PPO(tictactoe_policy(seed=4), dataclasses.replace(TICTACTOE_PPO, seed=4))
    before = scores(agent)

    def reached(row):
        if row["global_step"] % 4096 >= TICTACTOE_PPO.num_steps * TICTACTOE_ENVS:
            return False
        vs_random, vs_minimax = scores(agent)
        return vs_random["win"] >= 0.95 and vs_minimax["loss"] == 0.0

    rows = agent.learn(make_envs(), total_steps=50_000, callback=reached)
    vs_random, vs_minimax = scores(agent)
    assert before[0]["win"] < 0.8 and before[1]["loss"] > 0.2
    assert vs_random["win"] >= 0.95 and vs_minimax["loss"] == 0.0
    assert rows[-1]["charts/episodic_return"] > rows[0]["charts/episodic_return"]


def test_ppo_beats_random_quickly_without_symmetries():
    torch.manual_seed(0)
    untrained = PPO(MLPPolicy(18, 9, (64, 64)), PPOConfig(seed=0, num_steps=16))
    torch.manual_seed(0)
    agent = PPO(MLPPolicy(18, 9, (64, 64)), PPOConfig(seed=0, num_steps=16))
    rows = agent.learn(make_envs(32, opponent="random"), total_steps=16_384)
    assert scores(agent)[0]["win"] > scores(untrained)[0]["win"] + 0.15
    assert {"losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl", "losses/clipfrac",
            "charts/SPS", "charts/episodic_return", "global_step"} <= set(rows[-1])


def test_one_env_by_eight_steps_equals_eight_envs_by_one_step():
    """The update sees a flat batch: the same transitions give the same statistics however they were batched."""
    rng = np.random.default_rng(0)
    obs = torch.as_tensor(rng.integers(0, 2, (8, 18)), dtype=torch.float32)
    actions = torch.as_tensor(rng.integers(0, 9, 8))
    rewards = rng.normal(size=8)
    results = []
    for shape in ((8, 1), (1, 8)):
        torch.manual_seed(0)
        policy = MLPPolicy(18, 9)
        agent = PPO(policy, PPOConfig(num_minibatches=1, update_epochs=1, norm_adv=False))
        with torch.no_grad():
            logits, values = policy(obs)
            logprobs = torch.distributions.Categorical(logits=logits).log_prob(actions)
        from agents.ppo_math import compute_gae

        adv, ret = compute_gae(rewards.reshape(shape), values.numpy().reshape(shape), np.ones(shape),
                               np.zeros(shape[1]), 0.99, 0.95)
        batch = {"obs": obs, "actions": actions, "logprobs": logprobs, "values": values,
                 "advantages": torch.as_tensor(adv.reshape(-1), dtype=torch.float32),
                 "returns": torch.as_tensor(ret.reshape(-1), dtype=torch.float32)}
        results.append(ppo_update(agent.optimizer, list(policy.parameters()), batch, agent._evaluate, agent.cfg,
                                  torch.Generator().manual_seed(0)))
    assert results[0] == results[1]


def test_save_and_load_round_trip(tmp_path):
    agent = PPO(tictactoe_policy(seed=1), dataclasses.replace(TICTACTOE_PPO, seed=1))
    agent.learn(make_envs(8), total_steps=1024)
    agent.save(tmp_path / "ppo")
    loaded = PPO.load(tmp_path / "ppo")
    obs = np.random.default_rng(0).integers(0, 2, (16, 18)).astype(np.float32)
    mask = np.ones((16, 9), np.int8)
    assert np.array_equal(agent.act(obs, action_mask=mask, deterministic=True),
                          loaded.act(obs, action_mask=mask, deterministic=True))
    assert loaded.global_step == agent.global_step and isinstance(loaded, Agent)


def test_random_agent_respects_the_mask():
    agent = RandomAgent(9, seed=0)
    mask = np.zeros((100, 9), np.int8)
    mask[:, [1, 7]] = 1
    assert set(agent.act(None, action_mask=mask).tolist()) == {1, 7}
    assert isinstance(agent, Agent)
