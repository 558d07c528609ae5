"""The language-model algorithms: they learn, update in one forward per minibatch, score EOS right, save and resume."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

import textgym  # noqa: F401
from agents import LM_AGENTS, agent_class
from agents.lm import LMAgent, LMConfig
from agents.lm_ppo import LMPPO
from agents.policy import LMPolicy
from agents.rollout import Episode, EpisodeBatch, Rollout, evaluate
from agents.sampling import LMSampler
from textgym.models.tiny import random_causal_lm
from textgym.rewards import KeywordReward

pytestmark = pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
PROMPTS = ["w1 w2", "w3", "w4 w6 w7"]


def make(tokenizer, lm, num_envs=16, group_size=1, **overrides):
    """Make a vector TextGeneration env on a copy of ``lm`` that rewards ``w5``, with ``overrides`` applied."""
    kwargs = dict(model=copy.deepcopy(lm), tokenizer=tokenizer, prompts=PROMPTS, reward_fn=KeywordReward(["w5"]),
                  max_context=16, max_new_tokens=6, kl_coef=0.01, ref_scoring="episode")
    return gym.make_vec("textgym/TextGeneration-v0", num_envs=num_envs, group_size=group_size,
                        vectorization_mode="vector_entry_point", **{**kwargs, **overrides})


def config(**overrides):
    """Make a small-batch :class:`LMConfig` with ``overrides`` applied."""
    return LMConfig(**{**dict(learning_rate=3e-3, update_epochs=2, num_minibatches=2, batch_episodes=32), **overrides})


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LM_AGENTS))
def test_every_algorithm_learns_to_emit_the_rewarded_token(tokenizer, name):
    """A fixed seed and budget; the bar (mean 3 of at most 6 rewarded tokens, from under 0.5) leaves room."""
    torch.manual_seed(0)
    lm = random_causal_lm(len(tokenizer), 2, 32, n_positions=64, seed=0)
    agent = agent_class(name)(lm, tokenizer, config())
    rows = agent.learn(make(tokenizer, lm, group_size=1 if name in ("ppo", "reinforce") else 4), total_steps=6000)
    assert rows[0]["objective/score"] < 0.5 and rows[-1]["objective/score"] > 3.0
    assert rows[-1]["objective/kl"] > rows[0]["objective/kl"]  # the price: it moved away from the reference


@pytest.mark.slow
def test_ppo_learns_from_rewards_paid_per_token(tokenizer, word_parts):
    """The task above with each w5 paid at its own token (credit="token"): from under 0.5 to a mean over 4 of 6."""
    torch.manual_seed(0)
    lm = random_causal_lm(len(tokenizer), 2, 32, n_positions=64, seed=0)
    agent = agent_class("ppo")(lm, tokenizer, config())
    rows = agent.learn(make(tokenizer, lm, reward_fn=word_parts("w5"), credit="token"), total_steps=9000)
    assert rows[0]["objective/score"] < 0.5
    assert np.mean([row["objective/score"] for row in rows[-5:]]) > 4.0  # the last five batches: one may dip


def test_the_update_does_one_forward_per_minibatch_of_whole_episodes(tokenizer):
    """Three epochs of two minibatches run six trunk forwards, each on four whole episodes."""
    lm = random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0)
    agent = LMPPO(lm, tokenizer, config(update_epochs=3, num_minibatches=2, batch_episodes=8))
    envs = make(tokenizer, lm, num_envs=8)
    episodes = agent.prepare(envs).collect(8)
    calls = []
    trunk = lm.transformer.forward
    lm.transformer.forward = lambda *a, **k: (calls.append(k["input_ids"].shape), trunk(*a, **k))[1]
    agent.update(EpisodeBatch.from_episodes(episodes, 0), envs)  # log-probs and values were recorded while acting
    assert len(calls) == 3 * 2  # one forward per minibatch per epoch, whatever the episode lengths
    assert {shape[0] for shape in calls} == {4}


def test_acting_time_logprobs_and_values_equal_teacher_forcing(tokenizer):
    """Log-probs and values recorded while acting match a teacher-forced pass, across batches."""
    lm = random_causal_lm(len(tokenizer), 2, 32, n_positions=64, seed=0)
    agent = LMPPO(lm, tokenizer, config())
    torch.nn.init.normal_(agent.module.value_head.weight)  # a non-trivial value head
    envs = make(tokenizer, lm, num_envs=4, max_new_tokens=5)
    rollout = agent.prepare(envs)
    for _ in range(2):  # the second batch holds episodes begun during the first
        episodes = rollout.collect(12)
        prompts = {tuple(tokenizer(p)["input_ids"]) for p in PROMPTS}
        assert all(tuple(e.prompt_ids) in prompts and len(e.logprobs) == len(e.completion_ids) for e in episodes)
        batch = EpisodeBatch.from_episodes(episodes, 0)
        with torch.no_grad():
            logprobs, _, values = evaluate(agent.policy, batch)
        mask = batch.token_mask
        torch.testing.assert_close(batch.logprobs * mask, logprobs * mask, atol=1e-4, rtol=0)
        torch.testing.assert_close(batch.values * mask, values * mask, atol=1e-4, rtol=0)


def test_eos_logprob_is_kept_when_pad_is_eos(tokenizer):
    """A completion ending on EOS (id 0 = pad) keeps that token's log-prob, mask and score."""
    lm = random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0)
    episodes = [Episode(np.array([1, 2]), np.array([5, 9, 0]), np.zeros(3), 1.0),  # ends on a real EOS (id 0)
                Episode(np.array([3]), np.array([4]), np.zeros(1), 0.0)]
    batch = EpisodeBatch.from_episodes(episodes, pad_id=0)
    with torch.no_grad():
        logprobs, _, _ = evaluate(LMPolicy(lm, value_head=False), batch)
        full = torch.log_softmax(lm(torch.tensor([[1, 2, 5, 9, 0]])).logits[0], -1)
    torch.testing.assert_close(logprobs[0], torch.stack([full[1, 5], full[2, 9], full[3, 0]]), atol=1e-4, rtol=0)
    assert batch.token_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch.token_scores.tolist() == [[0, 0, 1], [0, 0, 0]]  # the score at each episode's last token


def test_token_credit_pays_each_part_of_the_score_at_its_token(tokenizer, word_parts):
    """With credit="token" the rollout keeps the env's score_parts, and the batch pays each part where it was earned."""
    lm = random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0)
    envs = make(tokenizer, lm, num_envs=4, reward_fn=word_parts("w5"), credit="token")
    episodes = Rollout(envs, LMSampler(lm, num_envs=4, pad_id=0, seed=0), seed=0).collect(32)
    batch = EpisodeBatch.from_episodes(episodes, pad_id=0)
    for row, episode in enumerate(episodes):
        expected = np.isin(episode.completion_ids, [5]).astype(float)  # each w5 earns 1 at its own token
        assert episode.token_scores.tolist() == expected.tolist() and episode.score == expected.sum()
        assert batch.token_scores[row, batch.num_tokens - len(expected):].tolist() == expected.tolist()
    assert sum(e.score for e in episodes) > 0  # a random policy says w5 now and then


def test_save_load_plain_transformers_and_a_pipeline_that_generates(tokenizer, tmp_path):
    """A saved run loads as plain transformers, generates in a pipeline, and resumes with steps and value head."""
    lm = random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0)
    agent = LMPPO(lm, tokenizer, config(batch_episodes=8))
    agent.learn(make(tokenizer, lm, num_envs=8), total_steps=48)
    agent.save(tmp_path / "run")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "run")
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(plain(ids).logits, lm(ids).logits)
    from transformers import pipeline

    generate = pipeline("text-generation", model=str(tmp_path / "run"))
    generated = generate("w1 w2", max_new_tokens=4, min_new_tokens=4, do_sample=False)  # no EOS: four words
    text = generated[0]["generated_text"]
    assert text.startswith("w1 w2") and text.count("w") == 6  # the folder's own tokenizer decodes four new words
    resumed = LMAgent.load(tmp_path / "run")
    assert type(resumed) is LMPPO and resumed.global_step == agent.global_step and resumed.updates == agent.updates
    torch.testing.assert_close(resumed.module.value_head.weight, agent.module.value_head.weight)


def test_a_resumed_lora_run_trains_its_adapters_and_its_folder_names_its_base_not_a_path(tmp_path):
    """A LoRA checkpoint names its hub base, not a path, and resumes with only its adapters trainable and training."""
    peft = pytest.importorskip("peft")
    from agents.lora import AdapterDisabledReference, lora_policy
    from textgym.models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer("textgym/tiny-lm")
    policy = lora_policy(load_causal_lm("textgym/tiny-lm"), r=4)
    agent = LMPPO(policy, tokenizer, config(batch_episodes=8, learning_rate=1e-2))
    envs = gym.make_vec("textgym/Sentiment-v0", num_envs=8, vectorization_mode="vector_entry_point",
                        model=AdapterDisabledReference(policy), tokenizer=tokenizer, max_new_tokens=4)
    agent.learn(envs, total_steps=32)
    agent.save(tmp_path / "ckpt")
    config_text = (tmp_path / "ckpt" / "adapter_config.json").read_text()
    assert '"base_model_name_or_path": "textgym/tiny-lm"' in config_text and str(tmp_path) not in config_text
    resumed = LMAgent.load(tmp_path / "ckpt")
    assert isinstance(resumed.model, peft.PeftModel)
    trainable = sum(p.numel() for p in resumed.model.parameters() if p.requires_grad)
    assert 0 < trainable < 0.1 * sum(p.numel() for p in resumed.model.parameters())
    ids = torch.tensor([[5, 6, 7]])
    before = resumed.model(input_ids=ids).logits.detach().clone()
    envs = gym.make_vec("textgym/Sentiment-v0", num_envs=8, vectorization_mode="vector_entry_point",
                        model=AdapterDisabledReference(resumed.model), tokenizer=tokenizer, max_new_tokens=4)
    resumed.learn(envs, total_steps=resumed.global_step + 64)
    assert (resumed.model(input_ids=ids).logits - before).abs().max() > 0  # the adapters train again


def test_the_value_loss_trains_the_head_and_leaves_the_lm_alone(tokenizer):
    """A value loss gives gradients to the value head and none to the language model."""
    lm = random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0)
    policy = LMPolicy(lm)
    torch.nn.init.normal_(policy.value_head.weight)
    ids = torch.tensor([[1, 2, 3, 4]])
    _, _, values = policy(ids, torch.ones_like(ids), 3)
    ((values - 5.0) ** 2).mean().backward()  # a value loss on returns far from the current values
    assert policy.value_head.weight.grad.abs().sum() > 0
    assert all(p.grad is None or not p.grad.any() for p in lm.parameters())


def test_value_trunk_grad_lets_the_value_loss_train_the_lm(tokenizer):
    """With ``value_trunk_grad`` (a shared actor-critic trunk, for games) the value loss reaches the LM's weights."""
    lm = random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0)
    policy = LMPolicy(lm, value_trunk_grad=True)
    torch.nn.init.normal_(policy.value_head.weight)
    ids = torch.tensor([[1, 2, 3, 4]])
    _, _, values = policy(ids, torch.ones_like(ids), 3)
    ((values - 5.0) ** 2).mean().backward()
    assert any(p.grad is not None and p.grad.any() for p in lm.transformer.h.parameters())
    agent = LMPPO(random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0), tokenizer,
                  LMConfig(value_trunk_grad=True))
    assert agent.module.value_trunk_grad


def test_the_kl_coefficient_is_the_environments(tokenizer):
    """The KL coefficient is set on the env only, and an adaptive controller steers the env's value."""
    lm = random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0)
    agent = LMPPO(lm, tokenizer, config(batch_episodes=8))
    rows = agent.learn(make(tokenizer, lm, num_envs=8, kl_coef=0.37), total_steps=16)
    assert rows[-1]["objective/kl_coef"] == 0.37
    assert "kl_coef" not in {f for f in LMConfig.__dataclass_fields__}  # no second place to set it
    adaptive = LMPPO(lm, tokenizer, config(batch_episodes=8, kl_setpoint=0.001, kl_horizon=100))
    envs = make(tokenizer, lm, num_envs=8, kl_coef=0.2)
    adaptive.learn(envs, total_steps=200)
    assert envs.kl_coef != 0.2 and envs.kl_coef == adaptive.kl_coef  # the controller steers the env's value


@pytest.mark.parametrize("name", ["rloo", "grpo"])
def test_group_algorithms_refuse_groups_of_one(tokenizer, name):
    """RLOO and GRPO refuse an env of groups of one (naming its group_size and the fix), and batches of them."""
    lm = random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0)
    agent = agent_class(name)(lm, tokenizer, config(batch_episodes=8))
    with pytest.raises(ValueError, match=r"needs groups of at least 2; the environment has group_size=1: make it with "
                                         r"gym.make_vec\(..., group_size=4\) \(textgym train: --group-size\)"):
        agent.learn(make(tokenizer, lm, 8), 8)
    episodes = agent.prepare(make(tokenizer, lm, 8, group_size=2)).collect(8)
    for episode in episodes:
        episode.group = id(episode)  # every episode alone in its group
    with pytest.raises(ValueError, match="at least 2 episodes per group, got a group of 1"):
        agent.update(EpisodeBatch.from_episodes(episodes, 0))


def test_an_unknown_agent_name_lists_the_known_ones():
    """``agent_class`` names the agents it knows."""
    with pytest.raises(ValueError, match="unknown agent 'dqn'; known agents: ppo, rloo, grpo, reinforce"):
        agent_class("dqn")


def test_gradient_checkpointing_gives_the_same_update(tokenizer):
    """Recomputing activations in the backward (``gradient_checkpointing``) changes memory, not the update."""
    lm = random_causal_lm(len(tokenizer), 2, 32, n_positions=64, seed=0)
    envs = make(tokenizer, lm, num_envs=8)
    plain = LMPPO(copy.deepcopy(lm), tokenizer, config(batch_episodes=8))
    episodes = plain.prepare(envs).collect(8)
    checkpointed = LMPPO(copy.deepcopy(lm), tokenizer, config(batch_episodes=8, gradient_checkpointing=True))
    model = checkpointed.model
    on = "is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing") else \
        "is_gradient_checkpointing"  # renamed in transformers 5.x
    assert getattr(model, on)
    for agent in (plain, checkpointed):
        agent.prepare(envs)
        agent.update(EpisodeBatch.from_episodes(episodes, agent.pad_id), envs)
    for p, q in zip(plain.module.parameters(), checkpointed.module.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
    assert any((p - q).abs().max() > 0 for p, q in zip(plain.module.parameters(),
                                                       LMPolicy(lm, value_head=None).parameters(), strict=False))


def test_symmetries_need_an_environment_that_has_them(tokenizer):
    """``symmetries=True`` on an environment without symmetric rules says so, instead of training on nothing."""
    lm = random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0)
    agent = LMPPO(lm, tokenizer, config(symmetries=True, batch_episodes=4))
    with pytest.raises(ValueError, match="symmetries"):
        agent.learn(make(tokenizer, lm, num_envs=4), total_steps=8)


@pytest.mark.parametrize("settings", [{"temperature": 0.7}, {"temperature": 0.7, "top_k": 5, "top_p": 0.9}],
                         ids=["temperature", "top-k-top-p"])
def test_an_update_at_the_sampling_settings_starts_at_ratio_1(tokenizer, settings):
    """With the weights held still (learning rate 0), every minibatch's ratio is 1: nothing is clipped, no KL."""
    lm = random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0)
    agent = LMPPO(lm, tokenizer, config(learning_rate=0.0, batch_episodes=16, **settings))
    rows = agent.learn(make(tokenizer, lm, num_envs=8, temperature=settings["temperature"]), total_steps=1)
    assert rows[0]["losses/approx_kl"] < 1e-7 and rows[0]["losses/clipfrac"] == 0


def test_learning_refuses_an_environment_at_another_temperature(tokenizer):
    """The reference would be scored at another temperature than the policy samples at: a clear error."""
    lm = random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0)
    agent = LMPPO(lm, tokenizer, config(temperature=0.7))
    with pytest.raises(ValueError, match=r"samples at temperature 0.7 .* make the environment with temperature=0.7"):
        agent.learn(make(tokenizer, lm, num_envs=4), total_steps=1)


@pytest.mark.parametrize(("settings", "message"), [({"temperature": 0.0}, "temperature must be > 0"),
                                                   ({"top_k": -2}, "top_k must be"), ({"top_p": 2.0}, "top_p must be")])
def test_bad_sampling_settings_are_refused_by_the_agent(tokenizer, settings, message):
    """An LM agent names a bad temperature, top-k or top-p when it is made."""
    with pytest.raises(ValueError, match=message):
        LMPPO(random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0), tokenizer, config(**settings))


def test_under_top_k_the_kl_is_reported_by_k1_and_kept_out_of_the_loss(tokenizer):
    """k3 is biased under a cut distribution: objective/kl is then k1, and a k3 loss term is refused."""
    lm = random_causal_lm(len(tokenizer), 1, 16, n_positions=64, seed=0)
    with pytest.raises(ValueError, match="k3 KL term is biased"):
        agent_class("grpo")(lm, tokenizer, config(top_k=5))  # GRPO's KL is in its loss by default
    agent = LMPPO(lm, tokenizer, config(learning_rate=0.0, batch_episodes=8, top_k=5))
    row = agent.learn(make(tokenizer, lm, num_envs=8), total_steps=1)[0]
    assert row["objective/kl"] == pytest.approx(row["objective/kl_k1"])
