"""Sampling from a causal LM as an agent: the reference-sampling baseline, and every LM agent's actor.

:class:`LMSampler` acts on a (vector) text-generation observation. It keeps one KV cache slot per
environment, so each action costs a one-token forward; a slot whose episode starts encodes only its
prompt, and in a conversation the tokens the environment wrote since the last action are appended
to the slot's cache (read from the observation, encoded against the cached past).

Devices: the cache and the sampling live on the model's device; a step receives the observation's
new tokens there (the sampler's own last tokens never leave it) and sends back one array of
actions, log-probabilities and values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel

from textgym.models.kv import SlotKVCache
from textgym.models.sampling import Sampling, sample_tokens


class LMSampler:
    """Samples each next token from a causal LM, with a KV cache per environment slot.

    Args:
        model: The causal LM to sample from.
        num_envs: Number of environment slots (1 for a single environment).
        pad_id: Padding token id of the observations.
        temperature: Sampling temperature (> 0).
        top_k: Sample among the ``top_k`` most likely tokens only (None or 0: all).
        top_p: Sample among the fewest most likely tokens whose probability reaches ``top_p`` (1: all).
            The three apply in this order (:class:`textgym.models.sampling.Sampling`), and
            ``last_logprobs`` are the log-probabilities of the distribution so drawn from.
        seed: Seed of the sampler's own random generator (None: torch's global generator).
        value_head: If given, ``act`` also records each state's value (from the same forward) in
            ``last_values``; ``last_logprobs`` always holds the sampled tokens' log-probabilities.
        num_actions: Sample among the first ``num_actions`` logits only (the environment's action
            space, when the model's vocabulary is padded past its tokenizer); None: all.

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
        value_head: torch.nn.Module | None = None, num_actions: int | None = None, top_k: int | None = None,
        top_p: float = 1.0,
    ) -> None:
        self.sampling = Sampling(temperature, top_k, top_p)  # checks them
        self.cache = SlotKVCache(model, num_envs, pad_id, with_hidden=value_head is not None)
        self.device = self.cache.device
        self.value_head = value_head
        self.num_actions = num_actions
        self.last_logprobs = np.zeros(0)  # (N,) log pi(a | s) of the last actions, as sampled (none yet)
        self.last_values: np.ndarray | None = None  # value_head(s) of the last states, if a head was given
        self.num_envs = num_envs
        self.generator = None if seed is None else torch.Generator(device=self.device).manual_seed(seed)
        self._cached = np.zeros(num_envs, dtype=np.int64)  # real tokens of each slot's context in the cache
        self._last_actions: torch.Tensor | None = None  # (N,) on the device
        self.global_step = self.updates = 0  # the agent protocol's counters: a sampler never updates

    def act(self, obs: dict[str, np.ndarray], episode_start: np.ndarray, action_mask: np.ndarray | None = None,
            deterministic: bool = False) -> np.ndarray:
        """Sample one token per slot (:meth:`sample`, then one transfer to the host).

        Args:
            obs: The environment's observation (``input_ids``, ``attention_mask``), batched (N, L)
                or single (L,).
            episode_start: Bool (N,): True where the observation is a fresh prompt (after reset,
                or where the previous step ended the episode under same-step autoreset).
            action_mask: Optional (N, A) or (A,): only tokens marked 1 are drawn.
            deterministic: Take the most likely token instead of sampling (its log-probability is still
                the sampling distribution's).

        Returns:
            Token ids, shape (N,), int64; their log-probabilities and values go to ``last_logprobs``
            and ``last_values``.
        """
        actions, logprobs, values = self.sample(obs, episode_start, action_mask, deterministic)
        host = torch.stack([actions.double(), logprobs.double(), values.double()]).cpu().numpy()  # one transfer
        self.last_logprobs, self.last_values = host[1], host[2] if self.value_head is not None else None
        return host[0].astype(np.int64)

    @torch.no_grad()
    def sample(self, obs: dict[str, np.ndarray], episode_start: np.ndarray, action_mask: np.ndarray | None = None,
               deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`act` without the transfer: the step's tensors stay on the model's device.

        Arguments as for :meth:`act`. The slots' caches take the observation's new tokens and the
        sampled tokens are remembered for the next step, as in :meth:`act`; ``last_logprobs`` and
        ``last_values`` are left as they were.

        Returns:
            ``(actions, logprobs, values)``, each (N,) on the model's device: the tokens, their
            log-probabilities under the distribution drawn from, and the states' values (zeros
            without a value head).
        """
        input_ids = np.atleast_2d(obs["input_ids"])  # (N, L)
        attention_mask = np.atleast_2d(obs["attention_mask"])  # (N, L)
        starts = np.flatnonzero(np.asarray(episode_start))
        if self._last_actions is None and len(starts) < self.num_envs:
            raise ValueError("the first act() call must mark every slot as an episode start")
        lengths = attention_mask.sum(1)  # (N,) each slot's context length
        logits, hidden = self._ingest(input_ids, attention_mask, lengths, starts)
        allowed = None if action_mask is None else torch.as_tensor(np.atleast_2d(action_mask), device=self.device) == 1
        logits = self.sampling.logits(logits[:, :self.num_actions], allowed)  # (N, A) fp32: the distribution drawn
        actions = logits.argmax(-1) if deterministic else sample_tokens(logits, self.generator)
        logprobs = torch.log_softmax(logits, -1).gather(1, actions[:, None]).squeeze(1)
        values = self.value_head(hidden).squeeze(-1) if self.value_head is not None else torch.zeros_like(logprobs)
        self._last_actions = actions
        self._cached = lengths
        return actions, logprobs, values

    def _ingest(self, input_ids: np.ndarray, attention_mask: np.ndarray, lengths: np.ndarray,
                starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Bring every slot's cache up to its observed context; next-token logits (N, V) and hidden states."""

        def context(slot: int) -> np.ndarray:
            return input_ids[slot][attention_mask[slot] == 1]

        logits: torch.Tensor | None = None
        hidden: torch.Tensor | None = None  # with a value head only: the cache keeps hidden states then
        last = self._last_actions  # None only before the first act(), which starts every slot
        if len(starts) < self.num_envs and last is not None:  # every cache takes the token its slot sampled last
            logits, hidden = self.cache.step(last), self.cache.last_hidden
            grown = lengths > self._cached + 1  # more than the sampled token arrived
            grown[starts] = False
            written = np.flatnonzero(grown).tolist()
            if written:  # and the environment's turn after it, where it took one
                rows = torch.as_tensor(written, device=self.device)
                extra = [context(s)[self._cached[s] + 1:] for s in written]
                logits = logits.index_copy(0, rows, self.cache.extend(written, extra))
                written_hidden = self.cache.last_hidden
                if hidden is not None and written_hidden is not None:
                    hidden = hidden.index_copy(0, rows, written_hidden)
        if len(starts):
            fresh = self.cache.start(starts.tolist(), [context(s) for s in starts])
            rows = torch.as_tensor(starts, device=self.device)
            logits = fresh if logits is None else logits.index_copy(0, rows, fresh)
            fresh_hidden = self.cache.last_hidden
            if fresh_hidden is not None:
                hidden = fresh_hidden if hidden is None else hidden.index_copy(0, rows, fresh_hidden)
        if logits is None:
            raise ValueError("the sampler has no environment slot to act for (num_envs is 0)")
        return logits, hidden

    @property
    def temperature(self) -> float:
        """The sampling temperature."""
        return self.sampling.temperature

    def learn(self, envs, total_steps: int, callback=None) -> list[dict[str, float]]:
        """The reference-sampling baseline does not learn."""
        return []

    def save(self, path: str | Path) -> None:
        """The sampled model (``save_pretrained``) and the sampler's settings (``sampler.json``)."""
        self.cache.model.save_pretrained(path)
        settings = {"num_envs": self.num_envs, "pad_id": self.cache.pad_id, "temperature": self.temperature,
                    "top_k": self.sampling.top_k, "top_p": self.sampling.top_p, "num_actions": self.num_actions}
        (Path(path) / "sampler.json").write_text(json.dumps(settings, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LMSampler:
        """The sampler :meth:`save` wrote (the model by ``load_causal_lm``: safetensors, no remote code)."""
        from textgym.models import load_causal_lm

        return cls(load_causal_lm(str(path)), **json.loads((Path(path) / "sampler.json").read_text()))
