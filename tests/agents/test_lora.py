"""LoRA sharing: the environment's reference is the policy's base with adapters off, during training too."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym  # noqa: F401
from agents.lm import LMConfig
from agents.lm_ppo import LMPPO
from agents.lora import AdapterDisabledReference, lora_policy
from textgym.models.tiny import random_causal_lm
from textgym.rewards import KeywordReward


@pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
def test_training_lora_policy_against_its_own_base(tokenizer):
    """LoRA training moves the policy while the env's reference stays the frozen base and few weights train."""
    base = random_causal_lm(len(tokenizer), 2, 32, n_positions=64, seed=0)
    frozen = copy.deepcopy(base)
    policy = lora_policy(base, r=4)
    envs = gym.make_vec("textgym/TextGeneration-v0", num_envs=8, vectorization_mode="vector_entry_point",
                        model=AdapterDisabledReference(policy), tokenizer=tokenizer, prompts=["w1 w2"],
                        reward_fn=KeywordReward(["w5"]), max_context=12, max_new_tokens=4)
    agent = LMPPO(policy, tokenizer, LMConfig(learning_rate=1e-2, batch_episodes=16))
    agent.learn(envs, total_steps=320)
    ids = torch.tensor([[1, 2]])
    with torch.no_grad():
        assert (policy(input_ids=ids).logits - frozen(ids).logits).abs().max() > 1e-3  # the adapters moved the policy
    obs, _ = envs.reset(seed=1)
    _, _, _, _, info = envs.step(np.full(8, 5))
    with torch.no_grad():
        expected = torch.log_softmax(frozen(torch.tensor([[1, 2]])).logits[0, -1], -1)[5].item()
    assert info["ref_logprob"][0] == pytest.approx(expected, abs=1e-5)  # the reference is still the base
    assert sum(p.numel() for p in base.parameters() if p.requires_grad) < 0.1 * sum(p.numel() for p in
                                                                                    base.parameters())
