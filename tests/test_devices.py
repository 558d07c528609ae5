"""Device placement without a GPU: models on fake CUDA tensors, and any op that mixes devices fails the test.

Run under ``FakeTensorMode`` (the ``fake_cuda`` fixture of conftest.py): the KV cache's start, step and
environment turns, the sampler's ingestion of new tokens, teacher-forced log-probabilities, the LM
policy's forward, and the losses of PPO, RLOO and GRPO on a minibatch. Every tensor they create
must land on the model's device; host tensors reach it only through explicit transfers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from agents import agent_class
from agents.lm import LMConfig
from agents.rollout import Episode, EpisodeBatch
from agents.sampling import LMSampler
from textgym.models.kv import SlotKVCache
from textgym.models.logprobs import completion_logprobs, token_logprobs
from textgym.models.tiny import random_causal_lm, word_tokenizer
from textgym.rewards.classifier import POOLINGS, pooled_rewards

TOKENIZER = word_tokenizer([f"w{i}" for i in range(1, 40)])


def models():
    """Return a tiny GPT-2 and a tiny Qwen2, by name."""
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=48, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64))
    return {"gpt2": random_causal_lm(40, 1, 32, n_positions=64), "qwen2": qwen.eval()}


def cuda(*arrays):
    """Move each array to ``"cuda"`` as a tensor."""
    return [torch.as_tensor(a).to("cuda") for a in arrays]


def test_the_check_catches_a_host_tensor_fed_to_a_device_model(fake_cuda):
    """Feeding a host tensor to a model on fake CUDA raises, so the other tests can catch it."""
    model = random_causal_lm(40, 1, 16, n_positions=32)
    with fake_cuda:
        fake_cuda.module(model)
        with pytest.raises(RuntimeError, match="two devices"):
            model(input_ids=torch.tensor([[1, 2, 3]]))  # forgot to move the input


@pytest.mark.parametrize("name", ["gpt2", "qwen2"])
def test_kv_cache_start_step_turns_and_restarts_on_the_models_device(fake_cuda, name):
    """The KV cache's start, steps, environment turns and restarts give logits and state on the device."""
    model = models()[name]
    with fake_cuda:
        fake_cuda.module(model)
        cache = SlotKVCache(model, num_slots=3, pad_id=0, with_hidden=True)
        assert cache.start([2, 0, 1], [[1, 2], [3], [4, 5, 6]]).device.type == "cuda"
        assert cache.step(np.array([7, 8, 9])).device.type == "cuda"  # host tokens: one transfer
        assert cache.step(torch.tensor([7, 8, 9]).to("cuda")).device.type == "cuda"  # a sampler's, already there
        assert cache.extend([1], [[5, 5, 5]]).device.type == "cuda"  # an environment's turn
        assert cache.start([0], [[2, 2, 2, 2, 2, 2, 2]]).device.type == "cuda"  # a restart merges into the cache
        assert cache.last_hidden.device.type == "cuda" and cache.mask.device.type == "cuda"


def test_sampler_ingests_and_samples_on_the_device(fake_cuda):
    """The sampler ingests prompts and new tokens and samples on the device, with its value head there."""
    model = random_causal_lm(40, 1, 16, n_positions=32)
    with fake_cuda:
        fake_cuda.module(model)
        head = fake_cuda.module(torch.nn.Linear(16, 1))
        sampler = LMSampler(model, num_envs=2, pad_id=0, value_head=head)
        prompts = {"input_ids": np.array([[1, 2], [0, 3]]), "attention_mask": np.array([[1, 1], [0, 1]])}
        step = sampler.sample(prompts, episode_start=np.array([True, True]))
        assert all(t.device.type == "cuda" for t in step)
        # slot 0 sampled a token and the env wrote two after it (fake tensors hold no values: any ids do)
        later = {"input_ids": np.array([[1, 2, 5, 6, 6], [0, 0, 0, 3, 4]]),
                 "attention_mask": np.array([[1, 1, 1, 1, 1], [0, 0, 0, 1, 1]])}
        actions, logprobs, values = sampler.sample(later, episode_start=np.array([False, False]))
        assert actions.device.type == logprobs.device.type == values.device.type == "cuda"


@pytest.mark.parametrize("name", ["gpt2", "qwen2"])
def test_teacher_forced_logprobs_on_the_device(fake_cuda, name):
    """Teacher-forced log-probs, entropies and hidden states come out on the device."""
    model = models()[name]
    with fake_cuda:
        fake_cuda.module(model)
        ids, mask = cuda([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]], [[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
        scores = token_logprobs(model, ids, mask, 3, num_actions=40, entropy=True, hidden=True, budget=64)
        assert {scores.logprobs.device.type, scores.entropy.device.type, scores.hidden.device.type} == {"cuda"}
        completion_logprobs(model, [[1, 2], [3]], [[4, 5], [6, 7, 8]], pad_id=0, num_actions=40)


@pytest.mark.parametrize("name", ["gpt2", "qwen2"])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_reward_model_scores_on_the_device(fake_cuda, name, pooling):
    """A reward model's pooled scores, the answer-sum mask included, come out on the device."""
    from transformers import GPT2Config, GPT2ForSequenceClassification, Qwen2ForSequenceClassification

    model = (GPT2ForSequenceClassification(GPT2Config(vocab_size=40, n_layer=1, n_embd=16, n_head=2, num_labels=1,
                                                      pad_token_id=0)) if name == "gpt2" else
             Qwen2ForSequenceClassification(Qwen2Config(vocab_size=48, hidden_size=32, num_hidden_layers=1,
                                                        num_attention_heads=4, num_key_value_heads=2,
                                                        intermediate_size=64, num_labels=1, pad_token_id=0))).eval()
    with fake_cuda:
        fake_cuda.module(model)
        ids, mask, start = cuda([[3, 4, 5, 0], [6, 7, 8, 9]], [[1, 1, 1, 0], [1, 1, 1, 1]], [1, 2])
        assert pooled_rewards(model, ids, mask, pooling, start).device.type == "cuda"


def batch_of_episodes() -> list[Episode]:
    """Return four random episodes of different lengths, in groups of two."""
    rng = np.random.default_rng(0)
    return [Episode(rng.integers(1, 40, 2), rng.integers(0, 40, n), rng.normal(-3, 1, n), float(rng.normal()),
                    logprobs=rng.normal(-3, 1, n), values=rng.normal(0, 1, n), group=i // 2)
            for i, n in enumerate((2, 3, 4, 1))]


@pytest.mark.parametrize("algorithm", ["ppo", "rloo", "grpo"])
def test_the_policy_forward_and_the_loss_on_a_minibatch_stay_on_the_device(fake_cuda, algorithm):
    """The loss and its stats on a minibatch drawn with a host index stay on the device."""
    agent = agent_class(algorithm)(random_causal_lm(40, 1, 16, n_positions=32), TOKENIZER, LMConfig())
    host = EpisodeBatch.from_episodes(batch_of_episodes(), pad_id=0)
    agent.advantages(host, agent.rewards(host))  # per-update work, on the host here (it checks group sizes)
    with fake_cuda:
        fake_cuda.module(agent.module)
        batch = EpisodeBatch.from_episodes(batch_of_episodes(), pad_id=0, device="cuda")
        batch.advantages, batch.returns = cuda(host.advantages, host.advantages)
        if algorithm == "ppo":
            agent.advantages(batch, agent.rewards(batch))  # GAE runs on the device too
        loss, stats = agent.loss(batch.select(torch.tensor([0, 2])))  # a host index, as the update loop draws
        assert loss.device.type == "cuda" and all(v.device.type == "cuda" for v in stats.values())
