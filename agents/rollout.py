"""Rollouts for language-model algorithms: collect finished episodes, and score them by teacher forcing.

The two public pieces every algorithm in ``agents/`` is built on, and that a new one uses the same way:

- :class:`Rollout` steps a (vector) text environment with a sampler (an :class:`agents.sampling.LMSampler`,
  which records each action's log-probability and, with a value head, each state's value) and
  returns finished :class:`Episode` s in the order they were started, so in whole prompt groups when
  the environment has them (``group_size``). Episodes of later rounds carry over to the next call of
  the same rollout: start a new rollout after an update (:meth:`agents.lm.LMAgent.prepare` does), or
  a batch mixes episodes of two policies.
- :func:`evaluate` scores an :class:`EpisodeBatch` under the current policy: log-probabilities,
  entropies and values of every agent token, one teacher-forced forward per (mini)batch, never one
  forward per token.
- :func:`complete` answers given prompts once each in the environment (e.g. greedily, for a baseline).

:meth:`EpisodeBatch.from_episodes` turns episodes into (B, T) tensors over completion positions:
left-padded prompts + completions, completions right-aligned, ``token_mask`` 1 on the agent's tokens
(an environment's tokens in a conversation are 0, like padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, overload

import numpy as np
import torch

from agents.sampling import LMSampler
from textgym.models.kv import left_pad_np


@dataclass
class Episode:
    """One finished episode: what the environment reported, and what the policy saw while acting.

    Per-token arrays have one entry per completion token (every token after the prompt).
    """

    prompt_ids: np.ndarray
    completion_ids: np.ndarray
    ref_logprobs: np.ndarray
    """``log pi_ref`` of each agent token (0 on an environment's tokens)."""
    score: float
    """The episode's task reward (the reward function's score plus any turn rewards)."""
    logprobs: np.ndarray | None = None
    """``log pi(a_t | s_t)`` when each agent token was sampled (the behaviour policy's), or None to recompute."""
    values: np.ndarray | None = None
    """The value head's estimate of each state when the agent acted, or None."""
    agent_mask: np.ndarray | None = None
    """1 on the agent's tokens, 0 on the environment's (None: every token is the agent's)."""
    token_scores: np.ndarray | None = None
    """Where the score was earned, per completion token: a conversation's turn rewards, or a reward's parts
    (``info["score_parts"]``); the rest of the score at the last agent token (None: all of it there)."""
    group: int = 0
    """Episodes with equal ``group`` answered the same prompt (:class:`textgym.envs.TextGenerationVectorEnv`)."""
    action_masks: np.ndarray | None = None
    """(agent tokens, A) bool: the actions the environment allowed at each agent token (None: all of them)."""
    prompt: str = ""
    """The prompt's text (the environment's ``info["prompt"]``)."""


@dataclass
class EpisodeBatch:
    """B episodes as tensors on one device; per-token tensors are (B, T), completions right-aligned."""

    input_ids: torch.Tensor
    """(B, W) left-padded prompt + completion."""
    attention_mask: torch.Tensor
    """(B, W)."""
    token_mask: torch.Tensor
    """(B, T) float: 1 on the agent's tokens."""
    logprobs: torch.Tensor
    """(B, T) behaviour log-probabilities."""
    ref_logprobs: torch.Tensor
    """(B, T) reference log-probabilities."""
    token_scores: torch.Tensor
    """(B, T) the task reward, placed where it was earned (the last agent token unless turns paid earlier)."""
    scores: torch.Tensor
    """(B,) each episode's task reward."""
    groups: torch.Tensor
    """(B,) group ids."""
    prompt_lengths: torch.Tensor | None = None
    """(B,) tokens of each prompt: row b's prompt is ``input_ids[b, W - C_b - P_b : W - C_b]``, C_b its completion's."""
    prompts: tuple[str, ...] | None = None
    """Each episode's prompt text (in a whole batch; a minibatch drawn by :meth:`select` has None)."""
    values: torch.Tensor | None = None
    """(B, T) values recorded while acting (algorithms with a value head)."""
    advantages: torch.Tensor | None = None
    """(B, T) set by the algorithm before its update."""
    returns: torch.Tensor | None = None
    """(B, T) set by the algorithm (value targets)."""
    action_mask: torch.Tensor | None = None
    """(B, T, A) bool: the actions allowed at each token, where the environment masked them (None: all)."""

    @property
    def size(self) -> int:
        """Number of episodes B."""
        return self.input_ids.shape[0]

    @property
    def num_tokens(self) -> int:
        """T: the longest completion."""
        return self.token_mask.shape[1]

    def select(self, index: torch.Tensor) -> EpisodeBatch:
        """The episodes at ``index`` (a minibatch: its tensors only, ``prompts`` None, so nothing waits on the host)."""
        index = index.to(self.input_ids.device)
        return replace(self, prompts=None, **{f.name: getattr(self, f.name)[index] for f in fields(self)
                                              if isinstance(getattr(self, f.name), torch.Tensor)})

    @classmethod
    def concat(cls, batches: list[EpisodeBatch]) -> EpisodeBatch:
        """The episodes of ``batches`` (equal widths, the same fields set) in one batch."""
        join = lambda vs: sum(vs, ()) if isinstance(vs[0], tuple) else torch.cat(vs)  # noqa: E731
        joined: dict[str, Any] = {f.name: None if getattr(batches[0], f.name) is None else
                                  join([getattr(b, f.name) for b in batches]) for f in fields(cls)}
        return cls(**joined)

    @classmethod
    def from_episodes(cls, episodes: list[Episode], pad_id: int, device: torch.device | str = "cpu") -> EpisodeBatch:
        """Stack ``episodes`` on the host, then move them to ``device`` once."""
        longest = max(len(e.completion_ids) for e in episodes)
        input_ids, attention_mask = left_pad_np([np.concatenate([e.prompt_ids, e.completion_ids]) for e in episodes],
                                                pad_id)  # (B, W)
        per_token = {name: np.zeros((len(episodes), longest)) for name in
                     ("token_mask", "logprobs", "ref_logprobs", "token_scores", "values")}
        for row, e in enumerate(episodes):
            cols = slice(longest - len(e.completion_ids), longest)
            agent = np.ones(len(e.completion_ids)) if e.agent_mask is None else np.asarray(e.agent_mask, float)
            per_token["token_mask"][row, cols] = agent
            per_token["ref_logprobs"][row, cols] = e.ref_logprobs
            for name in ("logprobs", "values"):
                if getattr(e, name) is not None:
                    per_token[name][row, cols] = getattr(e, name)
            scores = np.zeros(len(e.completion_ids)) if e.token_scores is None else np.array(e.token_scores, float)
            scores[np.flatnonzero(agent)[-1]] += e.score - scores.sum()  # the rest of the score at the last agent token
            per_token["token_scores"][row, cols] = scores
        as_tensor = lambda a, dtype=torch.float32: torch.as_tensor(a, dtype=dtype).to(device)  # noqa: E731
        masks = [e.action_masks for e in episodes if e.action_masks is not None]
        action_mask = None
        if masks:  # the sampler drew from the allowed actions only, so the update scores them the same way
            action_mask = np.ones((len(episodes), longest, masks[0].shape[1]), np.bool_)
            for row, e in enumerate(episodes):
                if e.action_masks is not None:
                    agent = np.arange(len(e.completion_ids)) if e.agent_mask is None else np.flatnonzero(e.agent_mask)
                    action_mask[row, longest - len(e.completion_ids) + agent] = e.action_masks
        return cls(
            input_ids=as_tensor(input_ids, torch.long), attention_mask=as_tensor(attention_mask, torch.long),
            **{k: as_tensor(v) for k, v in per_token.items() if k != "values"},
            scores=as_tensor([e.score for e in episodes]), groups=as_tensor([e.group for e in episodes], torch.long),
            prompt_lengths=as_tensor([len(e.prompt_ids) for e in episodes], torch.long),
            prompts=tuple(e.prompt for e in episodes),
            values=as_tensor(per_token["values"]) if episodes[0].values is not None else None,
            action_mask=None if action_mask is None else as_tensor(action_mask, torch.bool),
        )


@overload
def evaluate(policy: torch.nn.Module, batch: EpisodeBatch, num_actions: int | None = None, *,
             entropy: Literal[True]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]: ...


@overload
def evaluate(policy: torch.nn.Module, batch: EpisodeBatch, num_actions: int | None = None,
             entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]: ...


def evaluate(policy: torch.nn.Module, batch: EpisodeBatch, num_actions: int | None = None,
             entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Log-probabilities, entropies and values (B, T) of every completion token, in one teacher-forced forward.

    Where the environment masked actions (``batch.action_mask``), they are the masked distribution's,
    and always at the policy's sampling temperature, top-k and top-p (``LMPolicy.sampling``): the
    distribution the sampler drew from, so the PPO ratio starts at 1 and no gradient pushes illegal actions.

    Args:
        policy: An :class:`agents.policy.LMPolicy` (or one wrapped for data parallelism).
        batch: The episodes (or a minibatch of them).
        num_actions: The environment's action space size (the model's vocabulary may be padded past it).
        entropy: Also compute entropies (None otherwise).

    Returns:
        ``(logprobs, entropies, values)``; values are None for a policy without a value head.
        Entries outside ``batch.token_mask`` are meaningless.
    """
    return policy(batch.input_ids, batch.attention_mask, batch.num_tokens, num_actions, entropy, batch.action_mask)


class Rollout:
    """Episodes in progress in a vector text environment, and the collector that finishes them.

    Episodes are returned in the order they were started (slot s's r-th episode is number
    ``r * num_envs + s``), not in the order they finished: which episodes a batch holds is fixed
    before any is sampled, so a batch is not biased toward short completions (taking the first to
    finish would be), and a group's slots, adjacent, are returned together.

    Args:
        envs: A text-generation vector env (``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")``).
        sampler: Acts on its observations; an :class:`agents.sampling.LMSampler` records log-probs and values.
        seed: Seeds the environment's reset (and so the prompts).

    Example:
        >>> import gymnasium as gym, textgym
        >>> from textgym.models.tiny import random_causal_lm, word_tokenizer
        >>> from textgym.rewards import LengthReward
        >>> tok = word_tokenizer(["a", "b"])
        >>> lm = random_causal_lm(len(tok), 1, 16)
        >>> envs = gym.make_vec("textgym/TextGeneration-v0", num_envs=4, group_size=2,
        ...                     vectorization_mode="vector_entry_point", model=lm, tokenizer=tok,
        ...                     prompts=["a", "b a"], reward_fn=LengthReward(2), max_context=8, max_new_tokens=3)
        >>> episodes = Rollout(envs, LMSampler(lm, 4, pad_id=0, seed=0), seed=0).collect(4)
        >>> len(episodes), len({e.group for e in episodes})  # two complete groups of two
        (4, 2)
    """

    def __init__(self, envs: Any, sampler: LMSampler, seed: int | None = None) -> None:
        self.envs, self.sampler = envs, sampler
        self.group_size = getattr(envs.unwrapped, "group_size", 1)
        self.obs, info = envs.reset(seed=seed)
        n = envs.num_envs
        self.action_mask = info.get("action_mask")
        self.starts = np.ones(n, dtype=bool)
        self.groups = np.asarray(info["group_id"]) if "group_id" in info else np.arange(n)
        self.steps = 0
        self._rounds = np.full(n, -1)  # per slot: the round of its episode in progress
        self._returned = 0  # episodes returned so far: the next to return is number self._returned
        self._done: dict[int, Episode] = {}  # number -> finished episode not yet returned
        self._prompts: list[np.ndarray] = [np.empty(0, np.int64)] * n
        self._seen: list[list[tuple[float, float]]] = [[] for _ in range(n)]  # per slot: (log-prob, value) per action
        self._masks: list[list[np.ndarray | None]] = [[] for _ in range(n)]  # per slot: the allowed actions per action

    def collect(self, num_episodes: int) -> list[Episode]:
        """Step until the next ``num_episodes`` episodes (in starting order, so whole groups) have finished."""
        if num_episodes % self.group_size:
            raise ValueError(f"num_episodes={num_episodes} must be a multiple of the group size {self.group_size}")
        wanted = range(self._returned, self._returned + num_episodes)
        while any(number not in self._done for number in wanted):
            self._step()
        self._returned += num_episodes
        return [self._done.pop(number) for number in wanted]

    def _step(self) -> None:
        obs, n = self.obs, self.envs.num_envs
        for slot in np.flatnonzero(self.starts).tolist():
            self._prompts[slot] = obs["input_ids"][slot][obs["attention_mask"][slot] == 1].copy()
            self._seen[slot], self._masks[slot] = [], []
            self._rounds[slot] += 1
        actions = self.sampler.act(obs, self.starts, self.action_mask)
        values = self.sampler.last_values if self.sampler.last_values is not None else np.zeros(n)
        masks = None if self.action_mask is None else np.array(self.action_mask, bool)  # one copy per step
        for slot in range(n):
            self._seen[slot].append((self.sampler.last_logprobs[slot], values[slot]))
            self._masks[slot].append(None if masks is None else masks[slot])
        self.obs, _, terminated, truncated, info = self.envs.step(actions)
        self.steps += n
        self.starts = terminated | truncated
        self.action_mask = info.get("action_mask")
        for slot in np.flatnonzero(self.starts).tolist():
            self._finished(slot, info["final_info"])
            self.groups[slot] = info["group_id"][slot] if "group_id" in info else self.groups[slot] + n

    def _finished(self, slot: int, final: dict[str, Any]) -> None:
        completion = final["completion_ids"][slot]
        agent = final["agent_mask"][slot] if "agent_mask" in final else None
        seen = np.array(self._seen[slot])  # (agent tokens, 2)
        logprobs, values = np.zeros(len(completion)), np.zeros(len(completion))
        where = np.flatnonzero(agent) if agent is not None else np.arange(len(completion))
        logprobs[where], values[where] = seen[:, 0], seen[:, 1]
        episode = Episode(self._prompts[slot], completion, final["ref_logprobs"][slot], float(final["score"][slot]),
                          logprobs, values if self.sampler.last_values is not None else None, agent,
                          _token_scores(final, slot), int(self.groups[slot]), prompt=str(final["prompt"][slot]))
        masks = self._masks[slot]
        if any(m is not None for m in masks):
            width = next(len(m) for m in masks if m is not None)
            episode.action_masks = np.stack([np.ones(width, bool) if m is None else m for m in masks])
        self._done[int(self._rounds[slot]) * self.envs.num_envs + int(slot)] = episode


def complete(envs: Any, sampler: LMSampler, prompts: Sequence[str], deterministic: bool = True) -> list[Episode]:
    """Each of ``prompts`` answered once by ``sampler`` in ``envs``, scored as the environment scores every episode.

    With ``deterministic`` the answers are greedy (the most likely token at every step): a baseline
    such as ReMax's. It resets ``envs`` (a :class:`Rollout` of them must start afresh after it) and
    answers ``num_envs / group_size`` prompts at a time (the slots of a group share a prompt). The
    episodes carry no behaviour log-probabilities.
    """
    size = getattr(envs.unwrapped, "group_size", 1)
    width = envs.num_envs // size
    episodes: list[Episode] = []
    for start in range(0, len(prompts), width):
        chunk = list(prompts[start:start + width])
        chunk += chunk[-1:] * (width - len(chunk))  # the last pass filled up with its last prompt
        answered = _answer_once(envs, sampler, [p for p in chunk for _ in range(size)], deterministic)
        episodes += answered[::size][:len(prompts) - start]  # one slot of each group
    return episodes


def _answer_once(envs: Any, sampler: LMSampler, prompts: list[str], deterministic: bool) -> list[Episode]:
    """One episode in every slot, slot i answering ``prompts[i]``."""
    obs, info = envs.reset(options={"prompt": prompts})
    prompt_ids = [ids[mask == 1].copy() for ids, mask in zip(obs["input_ids"], obs["attention_mask"], strict=True)]
    starts, action_mask = np.ones(envs.num_envs, dtype=bool), info.get("action_mask")
    finished: dict[int, Episode] = {}
    while len(finished) < envs.num_envs:
        actions = sampler.act(obs, starts, action_mask, deterministic=deterministic)
        obs, _, terminated, truncated, info = envs.step(actions)
        starts, action_mask = terminated | truncated, info.get("action_mask")
        for slot in np.flatnonzero(starts).tolist():
            if slot not in finished:  # later episodes of a slot are not asked for
                final = info["final_info"]
                finished[slot] = Episode(prompt_ids[slot], final["completion_ids"][slot], final["ref_logprobs"][slot],
                                         float(final["score"][slot]), prompt=prompts[slot])
    return [finished[slot] for slot in range(envs.num_envs)]


def _token_scores(final: dict[str, Any], slot: int) -> np.ndarray | None:
    """Where a finished episode's score was earned, if the environment said: turn rewards or a reward's parts."""
    for key in ("turn_rewards", "score_parts"):
        if key in final and final["_" + key][slot]:
            return final[key][slot]
    return None
