"""Nothing lost on reload: every saved folder loads and generates on its own, and a LoRA run resumes trainable."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
import torch
from transformers import pipeline

import textgym  # noqa: F401
from agents.lm import LMConfig
from agents.lm_ppo import LMPPO
from agents.lora import AdapterDisabledReference, lora_policy
from textgym.models import load_causal_lm, load_tokenizer

CONFIG = LMConfig(learning_rate=1e-2, batch_episodes=8, num_minibatches=1, update_epochs=1)


def envs_for(reference, tokenizer):
    """Sentiment-v0 with 8 slots and short answers, around ``reference``."""
    return gym.make_vec("textgym/Sentiment-v0", num_envs=8, vectorization_mode="vector_entry_point", model=reference,
                        tokenizer=tokenizer, max_new_tokens=4, ref_scoring="episode")


@pytest.fixture(scope="module")
def tokenizer():
    """The kit LM's tokenizer."""
    return load_tokenizer("textgym/tiny-lm")


def test_a_saved_agent_folder_generates_with_a_plain_transformers_pipeline(tokenizer, tmp_path):
    """``pipeline("text-generation", model=folder)`` finds the tokenizer in the folder and continues the prompt."""
    agent = LMPPO(load_causal_lm("textgym/tiny-lm"), tokenizer, CONFIG)
    agent.save(tmp_path / "agent")
    assert (tmp_path / "agent" / "tokenizer.json").is_file()
    generate = pipeline("text-generation", model=str(tmp_path / "agent"))
    text = generate("I watched the thriller last weekend and", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert text.startswith("I watched the thriller") and len(text) > len("I watched the thriller last weekend and") + 5


def test_a_lora_agent_resumes_with_trainable_adapters_and_a_portable_base_name(tokenizer, tmp_path):
    """Loaded LoRA checkpoints train on (logits move) and name their base by its embedded name, not a path."""
    policy = lora_policy(load_causal_lm("textgym/tiny-lm"), r=4)
    agent = LMPPO(policy, tokenizer, CONFIG)
    agent.learn(envs_for(AdapterDisabledReference(policy), tokenizer), 64)
    agent.save(tmp_path / "ckpt")
    adapter = json.loads((tmp_path / "ckpt" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "textgym/tiny-lm"
    resumed = LMPPO.load(tmp_path / "ckpt")
    trainable = sum(p.numel() for p in resumed.model.parameters() if p.requires_grad)
    assert 0 < trainable < 0.1 * sum(p.numel() for p in resumed.model.parameters())
    ids = torch.tensor([tokenizer("I watched the thriller")["input_ids"]])
    with torch.no_grad():
        before = resumed.model(input_ids=ids).logits.clone()
    resumed.learn(envs_for(AdapterDisabledReference(resumed.model), tokenizer), resumed.global_step + 64)
    with torch.no_grad():
        assert (resumed.model(input_ids=ids).logits - before).abs().max() > 1e-4
