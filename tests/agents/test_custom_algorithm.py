"""A new algorithm is one file: the RAFT and ReMax examples train through the public API and raise the reward."""

from __future__ import annotations

import copy
import runpy
from pathlib import Path

import gymnasium as gym
import pytest
import torch

import textgym  # noqa: F401
from agents.lm import LMAgent, LMConfig
from agents.reinforce import REINFORCE
from textgym.models.tiny import random_causal_lm
from textgym.rewards import KeywordReward

EXAMPLES = Path(__file__).parent.parent.parent / "examples"


@pytest.mark.slow
def test_raft_from_the_example_raises_the_sentiment_reward(capsys):
    """RAFT, written against the public API only, lifts the sentiment score well above its start."""
    module = runpy.run_path(str(EXAMPLES / "custom_algorithm.py"), run_name="custom_algorithm")
    scores = module["main"](steps=12_288)
    assert scores["after"] > scores["before"] + 1.0, scores
    assert "RAFT: sentiment score" in capsys.readouterr().out


def test_remax_needs_no_update_of_its_own():
    """ReMax is REINFORCE with a new advantage hook: the update, the loss and the set-up are the library's."""
    remax = runpy.run_path(str(EXAMPLES / "remax.py"), run_name="remax")["ReMax"]
    assert issubclass(remax, REINFORCE) and set(vars(remax)) & {"update", "loss", "learn", "prepare"} == set()
    assert remax.update is LMAgent.update


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
def test_remax_from_the_example_learns_to_emit_the_rewarded_token(tokenizer):
    """ReMax (greedy answers' rewards as the baseline) learns the keyword task; its baseline follows the policy."""
    remax = runpy.run_path(str(EXAMPLES / "remax.py"), run_name="remax")["ReMax"]
    torch.manual_seed(0)
    lm = random_causal_lm(len(tokenizer), 2, 32, n_positions=64, seed=0)
    envs = gym.make_vec("textgym/TextGeneration-v0", num_envs=16, vectorization_mode="vector_entry_point",
                        model=copy.deepcopy(lm), tokenizer=tokenizer, prompts=["w1 w2", "w3", "w4 w6 w7"],
                        reward_fn=KeywordReward(["w5"]), max_context=16, max_new_tokens=6, kl_coef=0.01,
                        ref_scoring="episode")
    agent = remax(lm, tokenizer, LMConfig(learning_rate=1e-2, batch_episodes=32, norm_adv=False))
    rows = agent.learn(envs, total_steps=6000)
    assert rows[0]["objective/score"] < 0.5 and rows[-1]["objective/score"] > 3.0, [r["objective/score"] for r in rows]
