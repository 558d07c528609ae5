"""Sampling from a causal LM as an agent: the reference-sampling baseline.

:class:`LMSampler` acts on a (vector) text-generation observation. It keeps one KV cache slot per
environment, so each action costs a one-token forward; a slot whose episode starts re-encodes only
its prompt, read from the observation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel

from textgym.models.kv import SlotKVCache
from textgym.models.sampling import sample_tokens


class LMSampler:
    """Samples each next token from a causal LM, with a KV cache per environment slot.

    Args:
        model: The causal LM to sample from.
        num_envs: Number of environment slots (1 for a single environment).
        pad_id: Padding token id of the observations.
        temperature: Sampling temperature.
        seed: Seed of the sampler's own random generator (None: torch's global generator).
        value_head: If given, ``act`` also records each state's value (from the same forward) in
            ``last_values``; ``last_logprobs`` always holds the sampled tokens' log-probabilities.

    Example:
        >>> import gymnasium as gym
        >>> import textgym
        >>> from textgym.models.tiny import random_causal_lm, word_tokenizer
        >>> from textgym.rewards import LengthReward
        >>> tok = word_tokenizer(["a", "b"])
        >>> lm = random_causal_lm(len(tok), 1, 16)
        >>> env = gym.make("textgym/TextGeneration-v0", model=lm, tokenizer=tok, prompts=["a"],
        ...                reward_fn=LengthReward(3), max_context=8, max_new_tokens=3)
        >>> agent = LMSampler(lm, num_envs=1, pad_id=0, seed=0)
        >>> obs, info = env.reset(seed=0)
        >>> action = agent.act(obs, episode_start=np.array([True]))
        >>> env.action_space.contains(int(action[0]))
        True
    """

    def __init__(
        self, model: PreTrainedModel, num_envs: int, pad_id: int, temperature: float = 1.0, seed: int | None = None,
        value_head: torch.nn.Module | None = None,
    ) -> None:
        self.cache = SlotKVCache(model, num_envs, pad_id, with_hidden=value_head is not None)
        self.value_head = value_head
        self.last_logprobs: np.ndarray | None = None  # log pi(a | s) of the last actions (temperature 1)
        self.last_values: np.ndarray | None = None  # value_head(s) of the last states, if a head was given
        self.num_envs = num_envs
        self.temperature = temperature
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)
        self._last_actions: np.ndarray | None = None

    def act(self, obs: dict[str, np.ndarray], episode_start: np.ndarray, action_mask: np.ndarray | None = None,
            deterministic: bool = False) -> np.ndarray:
        """Sample one token per slot.

        Args:
            obs: The environment's observation (``input_ids``, ``attention_mask``), batched (N, L)
                or single (L,).
            episode_start: Bool (N,): True where the observation is a fresh prompt (after reset,
                or where the previous step ended the episode under same-step autoreset).
            action_mask: Optional (N, V) or (V,): only tokens marked 1 are drawn.
            deterministic: Take the most likely token instead of sampling.

        Returns:
            Token ids, shape (N,), int64.
        """
        input_ids = np.atleast_2d(obs["input_ids"])  # (N, L)
        attention_mask = np.atleast_2d(obs["attention_mask"])  # (N, L)
        starts = np.flatnonzero(episode_start)
        if self._last_actions is None and len(starts) < self.num_envs:
            raise ValueError("the first act() call must mark every slot as an episode start")
        logits, hidden = None, None
        if len(starts) < self.num_envs:
            logits = self.cache.step(torch.from_numpy(self._last_actions))
            hidden = self.cache.last_hidden
        if len(starts):
            prompts = [torch.from_numpy(input_ids[i][attention_mask[i] == 1]) for i in starts]
            fresh = self.cache.start(starts.tolist(), prompts)
            rows = (torch.from_numpy(starts),)
            logits = fresh if logits is None else logits.index_put_(rows, fresh)
            if self.value_head is not None:
                fresh_hidden = self.cache.last_hidden
                hidden = fresh_hidden if hidden is None else hidden.index_put_(rows, fresh_hidden)
        if action_mask is not None:
            logits = logits.masked_fill(torch.as_tensor(np.atleast_2d(action_mask)) == 0, float("-inf"))
        actions = logits.argmax(-1) if deterministic else sample_tokens(logits, self.generator, self.temperature)
        self.last_logprobs = torch.log_softmax(logits, -1).gather(1, actions[:, None]).squeeze(1).double().numpy()
        if self.value_head is not None:
            with torch.no_grad():
                self.last_values = self.value_head(hidden).squeeze(-1).double().numpy()
        self._last_actions = actions.numpy()
        return self._last_actions

    def learn(self, envs, total_steps: int) -> list[dict[str, float]]:
        """The reference-sampling baseline does not learn."""
        return []

    def save(self, path: str | Path) -> None:
        """The sampled model, with ``save_pretrained``."""
        self.cache.model.save_pretrained(path)
