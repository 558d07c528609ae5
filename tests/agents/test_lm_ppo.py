"""PPO and RLOO for causal LMs: they learn, update with one forward per episode batch, score EOS right, save."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

import textgym  # noqa: F401
from agents.lm_ppo import LMPPO, CausalLMWithValueHead, Episode
from agents.ppo import PPOConfig
from textgym.models.tiny import random_causal_lm
from textgym.rewards import KeywordReward

pytestmark = pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")


def make(tokenizer, lm, num_envs=16, **overrides):
    kwargs = dict(model=copy.deepcopy(lm), tokenizer=tokenizer, prompts=["w1 w2", "w3", "w4 w6 w7"],
                  reward_fn=KeywordReward(["w5"]), max_context=16, max_new_tokens=6, kl_coef=0.01,
                  ref_scoring="episode")
    return gym.make_vec("textgym/TextGeneration-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **{**kwargs, **overrides})


def config(**overrides):
    return PPOConfig(**{**dict(learning_rate=3e-3, update_epochs=2, num_minibatches=2, kl_coef=0.01,
                               batch_episodes=32, gamma=1.0), **overrides})


@pytest.mark.parametrize("algorithm", ["ppo", "rloo"])
def test_learns_to_emit_the_rewarded_token(tokenizer, algorithm):
    torch.manual_seed(0)
    lm = random_causal_lm(len(tokenizer), 2, 32, n_positions=64, seed=0)
    agent = LMPPO(CausalLMWithValueHead(lm), config(), algorithm=algorithm)
    rows = agent.learn(make(tokenizer, lm), total_steps=6000)
    assert rows[0]["objective/score"] < 0.5 and rows[-1]["objective/score"] > 4.0
    assert rows[-1]["objective/kl"] > rows[0]["objective/kl"]  # the price: it moved away from the reference


def test_the_update_does_one_forward_per_minibatch_of_whole_episodes(tokenizer):
    lm = random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0)
    agent = LMPPO(CausalLMWithValueHead(lm), config(update_epochs=3, num_minibatches=2, batch_episodes=8))
    calls = []
    envs = make(tokenizer, lm, num_envs=8)
    episodes, _, _ = agent._collect(envs, *agent._restart(envs))
    original = lm.forward
    lm.forward = lambda *a, **k: (calls.append(k["input_ids"].shape), original(*a, **k))[1]
    batch, _ = agent._prepare(episodes)  # log-probs and values were recorded while acting: no forward
    from agents.ppo import ppo_update

    ppo_update(agent.optimizer, list(agent.policy.parameters()), batch, agent._evaluate, agent.cfg, agent.generator)
    assert len(calls) == 3 * 2  # one forward per minibatch per epoch, whatever the episode lengths
    assert {shape[0] for shape in calls} == {len(episodes) // 2}


def test_acting_time_logprobs_and_values_equal_teacher_forcing(tokenizer):
    lm = random_causal_lm(len(tokenizer), 2, 32, n_positions=64, seed=0)
    agent = LMPPO(CausalLMWithValueHead(lm), config(batch_episodes=12))
    torch.nn.init.normal_(agent.policy.value_head.weight)  # a non-trivial value head
    envs = make(tokenizer, lm, num_envs=4, max_new_tokens=5)
    first, obs, starts = agent._collect(envs, *agent._restart(envs))
    second, _, _ = agent._collect(envs, obs, starts)  # includes episodes begun during the first call
    prompts = {tuple(tokenizer(p)["input_ids"]) for p in ["w1 w2", "w3", "w4 w6 w7"]}
    for episodes in (first, second):
        assert all(tuple(e.prompt_ids) in prompts and len(e.logprobs) == len(e.completion_ids) for e in episodes)
        recorded, _ = agent._prepare(episodes)
        recomputed, _ = agent._prepare([Episode(e.prompt_ids, e.completion_ids, e.ref_logprobs, e.score)
                                        for e in episodes])
        mask = recorded["token_mask"]
        torch.testing.assert_close(recorded["logprobs"] * mask, recomputed["logprobs"] * mask, atol=1e-4, rtol=0)
        torch.testing.assert_close(recorded["values"], recomputed["values"], atol=1e-4, rtol=0)


def test_eos_logprob_is_kept_when_pad_is_eos(tokenizer):
    lm = random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0)
    agent = LMPPO(CausalLMWithValueHead(lm), config())
    episodes = [Episode(np.array([1, 2]), np.array([5, 9, 0]), np.zeros(3), 1.0),  # ends on a real EOS (id 0)
                Episode(np.array([3]), np.array([4]), np.zeros(1), 0.0)]
    batch, _ = agent._prepare(episodes)
    with torch.no_grad():
        full = torch.log_softmax(lm(torch.tensor([[1, 2, 5, 9, 0]])).logits[0], -1)
    expected = [full[1, 5], full[2, 9], full[3, 0]]
    torch.testing.assert_close(batch["logprobs"][0], torch.stack(expected), atol=1e-4, rtol=0)
    assert batch["token_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]


def test_save_load_and_plain_transformers(tokenizer, tmp_path):
    lm = random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0)
    agent = LMPPO(CausalLMWithValueHead(lm), config(batch_episodes=8))
    agent.learn(make(tokenizer, lm, num_envs=8), total_steps=48)
    agent.save(tmp_path / "run")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "run")
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(plain(ids).logits, lm(ids).logits)
    resumed = LMPPO.load(tmp_path / "run")
    torch.testing.assert_close(resumed.policy.value_head.weight, agent.policy.value_head.weight)
    assert resumed.global_step == agent.global_step and resumed.kl_ctl.value == agent.kl_ctl.value
    with pytest.raises(ValueError, match="'ppo' or 'rloo'"):
        LMPPO(CausalLMWithValueHead(lm), algorithm="grpo")


def test_the_value_loss_trains_the_head_and_leaves_the_lm_alone(tokenizer):
    lm = random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0)
    policy = CausalLMWithValueHead(lm)
    torch.nn.init.normal_(policy.value_head.weight)
    ids = torch.tensor([[1, 2, 3, 4]])
    _, values = policy(ids, torch.ones_like(ids), keep=4)
    ((values - 5.0) ** 2).mean().backward()  # a value loss on returns far from the current values
    assert policy.value_head.weight.grad.abs().sum() > 0
    assert all(p.grad is None or not p.grad.any() for p in lm.parameters())
