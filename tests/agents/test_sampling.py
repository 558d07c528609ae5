"""LMSampler drives the vector env and samples what the model's softmax says."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym  # noqa: F401
from agents.sampling import LMSampler
from textgym.models.sampling import Sampling


@pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
def test_sampler_matches_the_reference_model_it_samples(env_kwargs, lm):
    """Sampling from the reference itself: mean log pi_ref per token ~ minus the reference's entropy."""
    envs = gym.make_vec("textgym/TextGeneration-v0", num_envs=8, vectorization_mode="vector_entry_point",
                        **env_kwargs)
    agent = LMSampler(lm, num_envs=8, pad_id=0, seed=0)
    obs, _ = envs.reset(seed=0)
    starts = np.ones(8, dtype=bool)
    ref_lps, entropies = [], []
    for _ in range(60):
        prompts = [obs["input_ids"][i][obs["attention_mask"][i] == 1] for i in range(8)]
        with torch.no_grad():
            for p in prompts:
                lp = torch.log_softmax(lm(torch.from_numpy(p)[None]).logits[0, -1], -1)
                entropies.append(-(lp.exp() * lp).sum().item())
        obs, _, terminated, truncated, info = envs.step(agent.act(obs, starts))
        ref_lps.extend(info["ref_logprob"][info["_ref_logprob"]])
        ref_lps.extend(info.get("final_info", {}).get("ref_logprob", np.zeros(8))[terminated | truncated])
        starts = terminated | truncated
    assert np.mean(ref_lps) == pytest.approx(-np.mean(entropies), abs=0.08)


def test_first_call_must_start_every_slot(lm):
    """The first call raises unless every slot is starting."""
    agent = LMSampler(lm, num_envs=2, pad_id=0)
    obs = {"input_ids": np.ones((2, 4), np.int64), "attention_mask": np.ones((2, 4), np.int64)}
    with pytest.raises(ValueError, match="every slot"):
        agent.act(obs, np.array([True, False]))


def test_sampler_follows_the_agent_protocol(lm, tmp_path):
    """The sampler is an Agent that honours action masks, acts greedily by the LM's argmax, and saves and loads."""
    from agents.base import Agent

    agent = LMSampler(lm, num_envs=2, pad_id=0, seed=0)
    assert isinstance(agent, Agent) and agent.learn(None, 10) == []
    obs = {"input_ids": np.ones((2, 4), np.int64), "attention_mask": np.ones((2, 4), np.int64)}
    mask = np.zeros((2, 48), np.int8)
    mask[:, 7] = 1
    assert agent.act(obs, np.array([True, True]), action_mask=mask).tolist() == [7, 7]
    greedy = agent.act(obs, np.array([True, True]), deterministic=True)
    with torch.no_grad():
        assert greedy[0] == lm(torch.ones((1, 4), dtype=torch.long)).logits[0, -1].argmax().item()
    agent.save(tmp_path)
    assert (tmp_path / "config.json").is_file()
    loaded = LMSampler.load(tmp_path)
    assert loaded.num_envs == 2 and (loaded.act(obs, np.array([True, True]), deterministic=True).tolist()
                                     == greedy.tolist())


def warped(logits, sampling):
    """The logits transformers' ``generate`` samples from at ``sampling``'s settings (its own warpers)."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers = [TemperatureLogitsWarper(sampling.temperature)]
    warpers += [TopKLogitsWarper(sampling.top_k)] if sampling.top_k else []
    warpers += [TopPLogitsWarper(sampling.top_p)] if sampling.top_p < 1 else []
    for warper in warpers:
        logits = warper(None, logits)
    return logits


CUTS = {"top-k": Sampling(0.7, top_k=3), "top-p": Sampling(top_p=0.3), "both": Sampling(1.5, top_k=12, top_p=0.5)}


@pytest.mark.parametrize("name", sorted(CUTS))
def test_top_k_and_top_p_draw_kept_tokens_with_the_renormalised_logprobs(env_kwargs, lm, name):
    """Every drawn token is in the kept set of transformers' warpers, and its log-prob is the cut distribution's."""
    sampling = CUTS[name]
    envs = gym.make_vec("textgym/TextGeneration-v0", num_envs=4, vectorization_mode="vector_entry_point",
                        **{**env_kwargs, "temperature": sampling.temperature})
    agent = LMSampler(lm, num_envs=4, pad_id=0, seed=0, temperature=sampling.temperature, top_k=sampling.top_k,
                      top_p=sampling.top_p)
    obs, _ = envs.reset(seed=0)
    starts, kept_sizes = np.ones(4, dtype=bool), []
    for _ in range(30):
        actions = agent.act(obs, starts)
        for slot in range(4):
            context = torch.from_numpy(obs["input_ids"][slot][obs["attention_mask"][slot] == 1])[None]
            with torch.no_grad():
                logp = torch.log_softmax(warped(lm(context).logits[:, -1].float(), sampling), -1)[0]  # (V,)
            kept_sizes.append(int(torch.isfinite(logp).sum()))
            assert torch.isfinite(logp[actions[slot]])
            assert agent.last_logprobs[slot] == pytest.approx(logp[actions[slot]].item(), abs=1e-5)
        obs, _, terminated, truncated, _ = envs.step(actions)
        starts = terminated | truncated
    assert 1 < np.mean(kept_sizes) < 0.5 * len(logp)  # a real cut, and a choice left


SETTINGS = {"temperature": Sampling(0.7), "top-k": Sampling(0.7, top_k=4), "top-p": Sampling(0.7, top_p=0.6)}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_the_first_minibatch_ratio_is_1_at_the_sampling_settings(env_kwargs, lm, name):
    """Teacher-forced log-probs of the policy at the sampler's settings equal those recorded while acting."""
    from agents.policy import LMPolicy
    from agents.rollout import EpisodeBatch, Rollout, evaluate

    sampling = SETTINGS[name]
    envs = gym.make_vec("textgym/TextGeneration-v0", num_envs=4, vectorization_mode="vector_entry_point",
                        **{**env_kwargs, "temperature": sampling.temperature})
    sampler = LMSampler(lm, 4, pad_id=0, seed=0, temperature=sampling.temperature, top_k=sampling.top_k,
                        top_p=sampling.top_p)
    batch = EpisodeBatch.from_episodes(Rollout(envs, sampler, seed=0).collect(16), pad_id=0)
    with torch.no_grad():
        logprobs, _, _ = evaluate(LMPolicy(lm, value_head=False, sampling=sampling), batch,
                                  envs.single_action_space.n)
    mask = batch.token_mask.bool()
    torch.testing.assert_close(logprobs[mask].exp(), batch.logprobs[mask].exp(), atol=1e-5, rtol=1e-4)  # ratio 1
    torch.testing.assert_close(logprobs[mask], batch.logprobs[mask], atol=1e-4, rtol=0)


def exact_kl(policy, reference, tokenizer, prompt, sampling):
    """KL(policy sampled at ``sampling`` || reference at its temperature) over every completion of 2 tokens.

    By enumeration: the first token, then (unless it is EOS, id 0) the second, from plain forwards.
    """
    ids = torch.tensor(tokenizer(prompt)["input_ids"])
    vocab = len(tokenizer)
    with torch.no_grad():
        contexts = torch.cat([ids.expand(vocab, -1), torch.arange(vocab)[:, None]], 1)  # (V, P + 1): every first token
        logps = []
        for model, cut in ((policy, sampling), (reference, Sampling(sampling.temperature))):
            first = torch.log_softmax(warped(model(ids[None]).logits[:, -1].float(), cut), -1)[0]  # (V,)
            second = torch.log_softmax(warped(model(contexts).logits[:, -1].float(), cut), -1)  # (V, V)
            logps.append((first, second))
    (p1, p2), (q1, q2) = logps
    inner = torch.where(p2.exp() > 0, p2.exp() * (p2 - q2), 0).sum(-1)  # (V,): KL of the second token
    inner[0] = 0  # EOS ends the completion
    return float(torch.where(p1.exp() > 0, p1.exp() * (p1 - q1 + inner), 0).sum())


@pytest.mark.parametrize(("ref_scoring", "name"), [("step", "temperature"), ("episode", "temperature"),
                                                   ("step", "top-k"), ("episode", "top-p")])
@pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
def test_the_env_kl_estimate_is_the_sampling_distributions_kl_to_the_reference(tokenizer, ref_scoring, name):
    """Summed per completion, ``logprobs - ref_logprobs`` estimates the exact KL of what is sampled to the reference.

    Both at the temperature (the policy's also cut by top-k / top-p, the reference's not), for 2-token
    completions enumerated exactly; 2,048 completions put the estimate within 4 standard errors.
    """
    from agents.rollout import Rollout
    from textgym.models.tiny import random_causal_lm
    from textgym.rewards import LengthReward

    sampling = SETTINGS[name]
    policy, reference = (random_causal_lm(len(tokenizer), 1, 16, n_positions=16, seed=s) for s in (1, 2))
    with torch.no_grad():
        for model in (policy, reference):  # sharper than a random init's near-uniform next-token distributions
            model.transformer.ln_f.weight.mul_(8)
    envs = gym.make_vec("textgym/TextGeneration-v0", num_envs=32, vectorization_mode="vector_entry_point",
                        model=reference, tokenizer=tokenizer, prompts=["w1 w2"], reward_fn=LengthReward(2),
                        max_context=8, max_new_tokens=2, ref_scoring=ref_scoring, temperature=sampling.temperature)
    sampler = LMSampler(policy, 32, pad_id=0, seed=0, temperature=sampling.temperature, top_k=sampling.top_k,
                        top_p=sampling.top_p)
    episodes = Rollout(envs, sampler, seed=0).collect(2048)
    log_ratios = np.array([np.sum(e.logprobs - e.ref_logprobs) for e in episodes])
    expected = exact_kl(policy, reference, tokenizer, "w1 w2", sampling)
    assert expected > 0.05  # a real distance between the two
    assert abs(log_ratios.mean() - expected) < 4 * log_ratios.std() / np.sqrt(len(log_ratios))
