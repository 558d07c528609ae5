"""bf16 and fp16 models end to end on the CPU: environment, sampler, updates, reward models, evaluation.

Log-softmax, KL, advantages and losses are fp32 whatever the weights; the log-probabilities of a
half-precision model stay close to its fp32 twin's (``benchmarks/scale.py`` reports the error on a
Qwen2-0.5B-shaped model).
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym  # noqa: F401
from agents import agent_class
from agents.lm import LMConfig
from textgym.models import load_causal_lm, load_classifier, load_tokenizer
from textgym.models.logprobs import completion_logprobs
from textgym.rewards import ClassifierReward
from textgym.tasks.evaluation import evaluate_policy

pytestmark = pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
DTYPES = [torch.bfloat16, torch.float16]


@pytest.fixture(scope="module")
def kit():
    """Provide the embedded tiny LM and its tokenizer."""
    return load_causal_lm("textgym/tiny-lm"), load_tokenizer("textgym/tiny-lm")


@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_logprobs_of_a_half_precision_model_stay_near_fp32(kit, dtype):
    """A half-precision model's completion log-probs are float64 and stay close to the fp32 model's."""
    model, tokenizer = kit
    prompts = [tokenizer(p)["input_ids"] for p in ("I bought this kettle last week and", "We saw this film on")]
    completions = [tokenizer(" it was great fun.")["input_ids"], tokenizer(" I hated it.")["input_ids"]]
    full = completion_logprobs(model, prompts, completions, 0)
    half = completion_logprobs(copy.deepcopy(model).to(dtype), prompts, completions, 0)
    errors = np.concatenate([(a - b).abs().numpy() for a, b in zip(full, half, strict=True)])
    assert all(lp.dtype == torch.float64 for lp in half)
    assert errors.mean() < 0.05 and errors.max() < 0.3, errors


@pytest.mark.parametrize("ref_scoring", ["step", "episode"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_env_in_both_reference_modes_with_half_precision(kit, dtype, ref_scoring):
    """A half-precision reference gives finite rewards and log-probs in both scoring modes."""
    model, tokenizer = kit
    envs = gym.make_vec("textgym/Sentiment-v0", num_envs=4, vectorization_mode="vector_entry_point",
                        model=copy.deepcopy(model).to(dtype), tokenizer=tokenizer, max_new_tokens=4,
                        ref_scoring=ref_scoring)
    envs.reset(seed=0)
    for _ in range(4):
        _, rewards, terminated, truncated, info = envs.step(np.full(4, tokenizer(" good")["input_ids"][0]))
        assert np.isfinite(rewards).all()
    assert truncated.all() and np.isfinite(np.concatenate(info["final_info"]["ref_logprobs"])).all()


@pytest.mark.parametrize("algorithm", ["ppo", "rloo"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_updates_of_a_half_precision_policy(kit, dtype, algorithm):
    """Updates of a half-precision policy log finite metrics, keep its dtype, and change its weights."""
    model, tokenizer = kit
    policy = copy.deepcopy(model).to(dtype)
    envs = gym.make_vec("textgym/Sentiment-v0", num_envs=8, group_size=4 if algorithm == "rloo" else 1,
                        vectorization_mode="vector_entry_point", model=copy.deepcopy(model).to(dtype),
                        tokenizer=tokenizer, max_new_tokens=4, ref_scoring="episode")
    agent = agent_class(algorithm)(policy, tokenizer, LMConfig(batch_episodes=8, learning_rate=1e-3))
    before = [p.detach().clone() for p in policy.parameters()]
    rows = agent.learn(envs, total_steps=64)
    assert all(np.isfinite(v) for row in rows for v in row.values())
    assert all(p.dtype == dtype for p in policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters(), strict=True))


@pytest.mark.parametrize("dtype", DTYPES)
def test_reward_models_and_evaluation_in_half_precision(kit, dtype):
    """A half-precision classifier scores close to fp32, and evaluating a half-precision policy is finite."""
    model, tokenizer = kit
    texts = ["What a wonderful film, I loved it.", "Awful and boring, a waste of money."]
    full = ClassifierReward("textgym/sentiment-classifier", label="positive")(["", ""], texts)
    half = ClassifierReward(load_classifier("textgym/sentiment-classifier", dtype=dtype),
                            load_tokenizer("textgym/sentiment-classifier"), label="positive")(["", ""], texts)
    assert half.dtype == np.float64 and np.abs(full - half).max() < 0.1 * np.abs(full).max()
    half_model = copy.deepcopy(model).to(dtype)
    result = evaluate_policy(half_model, tokenizer, "sentiment", ClassifierReward("textgym/sentiment-classifier"),
                             copy.deepcopy(model), num_prompts=4, max_new_tokens=6, perplexity_texts=8)
    assert np.isfinite([result["reward"]["mean"], result["kl_to_reference"], result["perplexity_heldout"]]).all()
    assert result["kl_to_reference"] >= 0


def test_output_head_runs_in_fp32_only_where_the_cpu_emulates_half_precision(monkeypatch):
    """A CPU without bf16 instructions gets the chunked head in fp32; one with them, and any GPU, keep bf16."""
    from textgym.models import native_half
    from textgym.models.logprobs import head_dtype

    weight = torch.zeros(4, 2, dtype=torch.bfloat16)
    assert native_half("cuda", torch.bfloat16) and native_half("cpu", torch.float32)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False)
    assert not native_half("cpu", torch.bfloat16)
    assert head_dtype(weight) == torch.float32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert head_dtype(weight) == torch.bfloat16
