"""Stock stable-baselines3 algorithms run on textgym environments through the agent protocol."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from agents.base import Agent
from agents.sb3 import CausalLMPolicy, SB3Agent
from textgym.envs.text_generation import TextGenerationEnv
from textgym.envs.tictactoe import TicTacToeEnv
from textgym.models.tiny import random_causal_lm
from textgym.rewards import KeywordReward


def test_maskable_ppo_plays_only_legal_moves():
    """MaskablePPO learns through the agent protocol, with returns in [-1, 1], and plays only masked-in moves."""
    agent = SB3Agent(MaskablePPO("MlpPolicy", make_vec_env(lambda: TicTacToeEnv(opponent="random"), n_envs=4, seed=0),
                                 n_steps=64, batch_size=64, seed=0))
    assert isinstance(agent, Agent)
    rows = agent.learn(None, total_steps=512)
    assert rows and all(-1 <= r["charts/episodic_return"] <= 1 for r in rows)
    mask = np.zeros((5, 9), np.int8)
    mask[:, 3] = 1
    assert agent.act(np.zeros((5, 18), np.float32), action_mask=mask).tolist() == [3] * 5
    assert agent.global_step >= 512 and agent.updates > 0


def test_stock_ppo_trains_on_tictactoe(tmp_path):
    """Stock PPO trains through the protocol, saves, and loads as the same algorithm with the same moves."""
    agent = SB3Agent(PPO("MlpPolicy", TicTacToeEnv(opponent="random"), n_steps=128, batch_size=64, seed=0))
    assert agent.learn(None, total_steps=256)
    agent.save(tmp_path)
    loaded = SB3Agent.load(tmp_path)
    obs = np.random.default_rng(0).random((6, 18)).astype(np.float32)
    assert type(loaded.model) is PPO and loaded.global_step == agent.global_step
    assert loaded.act(obs, deterministic=True).tolist() == agent.act(obs, deterministic=True).tolist()


@pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
def test_stock_sb3_ppo_trains_a_causal_lm_on_the_text_env(tokenizer, tmp_path):
    """Stock SB3 PPO with CausalLMPolicy trains the LM's own weights, predicts valid tokens, and saves."""
    lm = random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0)
    lm.save_pretrained(tmp_path / "lm")  # a path, not the object: SB3 pickles policy_kwargs when saving
    env = TextGenerationEnv(copy.deepcopy(lm), tokenizer, ["w1 w2"], KeywordReward(["w5"]), max_context=12,
                            max_new_tokens=4)
    model = PPO(CausalLMPolicy, env, n_steps=32, batch_size=16, n_epochs=1, seed=0,
                policy_kwargs={"model": str(tmp_path / "lm")})
    before = copy.deepcopy(model.policy.lm.model.state_dict())
    SB3Agent(model).learn(None, total_steps=32)
    after = model.policy.lm.model.state_dict()
    assert any(not torch.equal(before[k], v) for k, v in after.items())  # the LM itself was trained
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(action))
    SB3Agent(model).save(tmp_path / "sb3")
    assert (tmp_path / "sb3" / "sb3_model.zip").is_file()
