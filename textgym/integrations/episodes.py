"""Play one episode per slot of a textgym vector env with a causal LM, keeping every number a trainer needs.

A trainer that owns its model (TRL's ``GRPOTrainer``, ...) hands the model and a batch of prompts to
:func:`play_episodes` and gets back, per episode, the exact token ids sampled (never decoded and
re-encoded), whose each token is, the log-probabilities the model gave them, the environment's
reference log-probabilities, step rewards, turn rewards and score. The model samples with its own
KV cache (:class:`textgym.models.kv.SlotKVCache`): each step is one batched one-token forward, and
the tokens a multi-turn environment writes between the agent's turns are read from the observation
and appended to the cache, never re-encoding the context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel

from textgym.models.kv import SlotKVCache
from textgym.models.sampling import Sampling, sample_tokens


@dataclass
class Episode:
    """One finished episode; every per-token array has one entry per completion token."""

    prompt_ids: list[int]
    """The context at the start: the prompt (and a conversation's opening), as the environment encoded it."""
    completion_ids: list[int]
    """Every token after the prompt: the agent's (sampled) and, in a conversation, the environment's."""
    agent_mask: list[int]
    """1 for the agent's tokens, 0 for the environment's."""
    logprobs: list[float]
    """``log pi(a_t | s_t)`` of each agent token under the distribution it was sampled from; 0 on the environment's."""
    ref_logprobs: list[float]
    """The environment's ``log pi_ref(a_t | s_t)`` of each agent token; 0 on the environment's."""
    rewards: list[float]
    """The environment's step reward at each agent token (KL shaping, turn rewards, the score at the end); 0 on the
    environment's tokens."""
    turn_rewards: list[float]
    """Each turn's reward at the turn's last token (all 0 for a single-turn environment)."""
    score: float
    """``info["score"]``: the reward function's score, plus the turn rewards in a conversation."""
    terminated: bool
    """The episode ended (EOS, the game is over) rather than hitting ``max_new_tokens``."""
    info: dict
    """The environment's last-step info (``completion``, ``reward_terms``, ...)."""


@torch.no_grad()
def play_episodes(envs, model: PreTrainedModel, prompts: Sequence[str], *, seed: int | None = None,
                  temperature: float = 1.0, generator: torch.Generator | None = None) -> list[Episode]:
    """Play one episode per slot of ``envs``, slot i from ``prompts[i]``, sampling from ``model``.

    Args:
        envs: A textgym text vector env (``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")``)
            with ``num_envs == len(prompts)``.
        model: The causal LM that writes the agent's tokens (sampled in eval mode; its mode is restored).
        prompts: One prompt text per slot.
        seed: Passed to ``envs.reset`` (None: the env's generators go on).
        temperature: Sample from ``softmax(logits / temperature)``; the log-probabilities are of that
            distribution (as TRL computes them at its ``temperature``).
        generator: The sampler's random source, on the model's device (None: torch's global one).

    Returns:
        One :class:`Episode` per slot, in slot order. Slots that finish early start a new episode
        (same-step autoreset) that is played on and discarded, so the batch stays in lockstep.
    """
    if len(prompts) != envs.num_envs:
        raise ValueError(f"got {len(prompts)} prompts for {envs.num_envs} env slots: pass one prompt per slot")
    sampling = Sampling(temperature)  # checks it
    if not all(isinstance(p, str) for p in prompts):
        raise TypeError("prompts must be texts (str); a textgym env encodes each prompt itself")
    obs, info = envs.reset(seed=seed, options={"prompt": list(prompts)})
    training = model.training
    model.eval()
    try:
        return _play(envs, model, obs, info, sampling, generator)
    finally:
        model.train(training)


def _play(envs, model: PreTrainedModel, obs: dict, info: dict, sampling: Sampling,
          generator: torch.Generator | None) -> list[Episode]:
    """The sampling loop of :func:`play_episodes` (see there)."""
    num, num_actions = envs.num_envs, int(envs.single_action_space.n)
    contexts = _contexts(obs)
    cache = SlotKVCache(model, num, envs.tokenizer.pad_token_id or 0)
    logits = cache.start(range(num), contexts)  # (N, V)
    tokens: list[list[int]] = [[] for _ in range(num)]  # per slot: the agent's and the environment's tokens
    logprobs: list[list[float]] = [[] for _ in range(num)]
    rewards: list[list[float]] = [[] for _ in range(num)]
    known = np.array([len(c) for c in contexts])  # tokens of each slot's context the cache holds
    episodes: list[Episode | None] = [None] * num
    mask, allowed = None, None  # the last action mask seen, and its (N, A) bool form on the device
    while any(e is None for e in episodes):
        if "action_mask" in info and (mask is None or not np.array_equal(info["action_mask"], mask)):
            mask = np.array(info["action_mask"])  # a static mask: moved to the device once
            allowed = torch.as_tensor(mask == 1, device=logits.device)
        scaled = sampling.logits(logits[:, :num_actions], allowed if "action_mask" in info else None)  # (N, A) fp32
        actions = sample_tokens(scaled, generator)  # (N,)
        chosen = torch.log_softmax(scaled, -1).gather(1, actions[:, None]).squeeze(1)
        host = torch.stack([actions.double(), chosen.double()]).cpu().numpy()  # (2, N): one transfer
        obs, step_rewards, terminated, truncated, info = envs.step(host[0].astype(np.int64))
        chosen_ids, chosen_logprobs, paid = host[0].astype(np.int64).tolist(), host[1].tolist(), step_rewards.tolist()
        ended = (terminated | truncated).tolist()
        running = [s for s in range(num) if episodes[s] is None]
        for slot in running:
            tokens[slot].append(chosen_ids[slot])
            logprobs[slot].append(chosen_logprobs[slot])
            rewards[slot].append(float(paid[slot]))
            if ended[slot]:
                final = {key: _row(value, slot) for key, value in info["final_info"].items()
                         if not key.startswith("_")}
                episodes[slot] = _episode(contexts[slot], tokens[slot], logprobs[slot], rewards[slot],
                                          bool(terminated[slot]), final)
        if all(e is not None for e in episodes):
            break
        logits = cache.step(actions)
        lengths = obs["attention_mask"].sum(1)  # (N,) each slot's context length
        written = [s for s in running if episodes[s] is None and lengths[s] > known[s] + 1]
        if written:  # the environment's turn, after the agent's token: state, appended to the cache
            now = _contexts(obs)
            extra = [now[s][known[s] + 1:] for s in written]
            for slot, ids in zip(written, extra, strict=True):
                tokens[slot] += [int(t) for t in ids]
                logprobs[slot] += [0.0] * len(ids)
                rewards[slot] += [0.0] * len(ids)
            rows = torch.as_tensor(written, device=logits.device)
            logits = logits.index_copy(0, rows, cache.extend(written, extra))
        known = lengths
    return [e for e in episodes if e is not None]  # all of them: every slot's episode has ended


def _episode(prompt_ids: np.ndarray, tokens: list[int], logprobs: list[float], rewards: list[float],
             terminated: bool, final: dict) -> Episode:
    """An :class:`Episode` from what the loop kept and the env's last-step info (checked against each other)."""
    completion = [int(t) for t in final["completion_ids"]]
    if completion != tokens:
        raise RuntimeError(f"the env's completion_ids {completion} differ from the tokens played {tokens}: the "
                           "sampler's cache and the env's context drifted apart")
    agent = final.get("agent_mask")
    agent = [1] * len(tokens) if agent is None else [int(a) for a in agent]
    turn = final.get("turn_rewards")
    turn = [0.0] * len(tokens) if turn is None else [float(r) for r in turn]
    # the env's tokens have no step of their own: their reward slot stays 0, the agent's token before them got it
    return Episode(prompt_ids=[int(t) for t in prompt_ids], completion_ids=completion, agent_mask=agent,
                   logprobs=logprobs, ref_logprobs=[float(r) for r in final["ref_logprobs"]], rewards=rewards,
                   turn_rewards=turn, score=float(final["score"]), terminated=terminated, info=final)


def _contexts(obs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Each slot's context: the real tokens of its window, oldest first."""
    return [ids[mask == 1] for ids, mask in zip(obs["input_ids"], obs["attention_mask"], strict=True)]


def _row(value, slot: int):
    """Slot ``slot`` of a batched info value (nested dicts batched key by key)."""
    if isinstance(value, dict):
        return {key: _row(v, slot) for key, v in value.items() if not key.startswith("_")}
    return value[slot]
