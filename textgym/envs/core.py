"""The generation core shared by the single and the vector text-generation environments.

:class:`GenerationCore` holds N generation slots stepped in lockstep: each slot's context window
(left-padded token ids), the frozen reference model that scores ``log pi_ref(a_t | s_t)``, and the
reward call for episodes that finish. The single environment is the core with one slot; the vector
environment is the core with N slots and same-step autoreset. Both therefore compute the same
numbers by construction.

Reference scoring has two modes with equal returns:

- ``"step"``: the reference keeps a KV cache per slot and scores every action as it is taken (one
  batched one-token forward per step); ``r_t = kl_coef * ref_logprob_t``, plus the score at the end.
- ``"episode"``: the reference scores the whole completion in one teacher-forced forward when the
  episode ends (batched over the slots that end together); every step before the last earns 0 and
  the last step earns ``score + kl_coef * sum(ref_logprobs)``. The per-token log-probs are in
  ``info["ref_logprobs"]`` for agents that want per-token credit.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from textgym.models import load_causal_lm, load_tokenizer
from textgym.models.kv import SlotKVCache, completion_logprobs
from textgym.rewards.base import RewardFunction, score_terms
from textgym.tasks import DEFAULT_MODEL, get_task

RefScoring = Literal["step", "episode"]
PromptOverflow = Literal["truncate", "error"]


class PromptTruncatedWarning(UserWarning):
    """A prompt was longer than the window allows and lost its leading tokens."""


@dataclass
class _Episode:
    """What one slot has generated so far."""

    prompt: str
    prompt_ids: np.ndarray
    tokens: list[int] = field(default_factory=list)
    ref_logprobs: list[float] = field(default_factory=list)


class GenerationCore:
    """N text-generation slots in lockstep; see the module docstring.

    Args:
        num_slots: Number of contexts stepped together.
        model: The frozen reference causal LM, or a name/path for :func:`textgym.models.load_causal_lm`
            (default: the task's model, the embedded ``textgym/tiny-lm`` for the language tasks).
        tokenizer: Its tokenizer; loaded from ``model`` when None and ``model`` is a name.
        prompts: Prompt texts, or a ``datasets.Dataset`` with a ``prompt_column`` (default: the
            task's training prompts).
        reward_fn: Scores finished completions (:class:`textgym.rewards.RewardFunction`; default:
            the task's reward).
        task: The embedded task (:data:`textgym.tasks.TASKS`) that supplies every default left out.
        max_context: Observation length: prompt plus completion must fit in it (default: the task's).
        max_new_tokens: Episode length limit; reaching it truncates the episode (default: the task's).
        kl_coef: Beta, the weight of ``log pi_ref(a_t | s_t)`` in the reward.
        ref_scoring: ``"step"`` or ``"episode"`` (module docstring).
        prompt_overflow: A prompt longer than ``max_context - max_new_tokens`` tokens is
            ``"truncate"``-d on the left with a warning, or raises (``"error"``).
        prompt_column: Column holding the prompt text when ``prompts`` is a Dataset.
        action_mask: Optional int8/bool array of length ``vocab_size``; 1 marks allowed tokens.
    """

    def __init__(
        self, num_slots: int, model: PreTrainedModel | str | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None, prompts: Any = None, reward_fn: RewardFunction | None = None,
        task: str = "sentiment", max_context: int | None = None, max_new_tokens: int | None = None,
        kl_coef: float = 0.05, ref_scoring: RefScoring = "step", prompt_overflow: PromptOverflow = "truncate",
        prompt_column: str = "prompt", action_mask: np.ndarray | None = None,
    ) -> None:
        defaults = get_task(task)
        prompts = defaults.prompts("train") if prompts is None else prompts
        reward_fn = defaults.reward() if reward_fn is None else reward_fn
        max_context = defaults.max_context if max_context is None else max_context
        max_new_tokens = defaults.max_new_tokens if max_new_tokens is None else max_new_tokens
        if model is None and defaults.model is not None:
            model, tokenizer = defaults.model() if tokenizer is None else (defaults.model()[0], tokenizer)
        model = DEFAULT_MODEL if model is None else model
        self.reference = load_causal_lm(model) if isinstance(model, str) else model
        if tokenizer is None and not isinstance(model, str):
            raise ValueError("pass the tokenizer that belongs to the reference model")
        self.tokenizer = load_tokenizer(model) if tokenizer is None else tokenizer
        self.vocab_size = int(self.reference.config.vocab_size)
        _check_vocab(self.tokenizer, self.vocab_size)
        _check_lengths(self.reference, max_context, max_new_tokens)
        _check_choice("ref_scoring", ref_scoring, ("step", "episode"))
        _check_choice("prompt_overflow", prompt_overflow, ("truncate", "error"))
        if not isinstance(reward_fn, RewardFunction):
            raise TypeError(f"reward_fn must be a RewardFunction (a callable with a name), got {reward_fn!r}")
        self.num_slots, self.reward_fn, self.kl_coef = num_slots, reward_fn, float(kl_coef)
        self.max_context, self.max_new_tokens = max_context, max_new_tokens
        self.ref_scoring, self.prompt_overflow = ref_scoring, prompt_overflow
        self.prompts, self.prompt_column = _check_prompts(prompts, prompt_column), prompt_column
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (self.eos_id or 0)
        self.action_mask = _check_action_mask(action_mask, self.vocab_size)
        self.single_observation_space = spaces.Dict({
            "input_ids": spaces.Box(0, self.vocab_size - 1, (max_context,), np.int64),
            "attention_mask": spaces.Box(0, 1, (max_context,), np.int64),
        })
        self.input_ids = np.full((num_slots, max_context), self.pad_id, np.int64)  # (N, L)
        self.attention_mask = np.zeros((num_slots, max_context), np.int64)  # (N, L)
        self.episodes: list[_Episode | None] = [None] * num_slots
        self._kv = SlotKVCache(self.reference, num_slots, self.pad_id) if ref_scoring == "step" else None
        self._next_logprobs = torch.zeros((num_slots, self.vocab_size))  # (N, V), step mode only

    # ----------------------------------------------------------------------------- prompts
    def choose_prompt(self, rng: np.random.Generator, options: dict | None) -> str:
        """The prompt for a new episode: ``options["prompt"]`` if given, else one drawn with ``rng``."""
        if options:
            unknown = set(options) - {"prompt"}
            if unknown:
                raise ValueError(f"unknown reset option(s) {sorted(unknown)}; the only option is 'prompt'")
            if not isinstance(options["prompt"], str):
                raise TypeError(f"options['prompt'] must be a str, got {type(options['prompt']).__name__}")
            return options["prompt"]
        index = int(rng.integers(len(self.prompts)))
        row = self.prompts[index]
        return row[self.prompt_column] if isinstance(row, dict) else row

    def encode_prompt(self, text: str) -> np.ndarray:
        """Token ids of a prompt, fitted to the window by the ``prompt_overflow`` policy."""
        ids = self.tokenizer(text)["input_ids"]
        if not ids:  # an empty prompt starts from BOS, as unconditional generation does
            bos = self.tokenizer.bos_token_id
            ids = [bos if bos is not None else self.pad_id]
        budget = self.max_context - self.max_new_tokens
        if len(ids) > budget:
            message = (f"prompt of {len(ids)} tokens does not fit the window: max_context={self.max_context} "
                       f"minus max_new_tokens={self.max_new_tokens} leaves {budget} tokens")
            if self.prompt_overflow == "error":
                raise ValueError(message + "; shorten the prompt, raise max_context, or use "
                                 "prompt_overflow='truncate'")
            warnings.warn(message + "; keeping its last tokens", PromptTruncatedWarning, stacklevel=3)
            ids = ids[-budget:]
        return np.asarray(ids, dtype=np.int64)

    # ----------------------------------------------------------------------------- episodes
    def start(self, slots: Sequence[int], prompts: Sequence[str]) -> list[dict[str, Any]]:
        """Begin new episodes in ``slots``; returns each slot's reset ``info``."""
        encoded = [self.encode_prompt(p) for p in prompts]
        for slot, text, ids in zip(slots, prompts, encoded, strict=True):
            self.episodes[slot] = _Episode(text, ids)
            self.input_ids[slot] = self.pad_id
            self.attention_mask[slot] = 0
            self.input_ids[slot, self.max_context - len(ids):] = ids
            self.attention_mask[slot, self.max_context - len(ids):] = 1
        if self._kv is not None:
            logits = self._kv.start(slots, [torch.from_numpy(ids) for ids in encoded])
            self._next_logprobs[list(slots)] = torch.log_softmax(logits, -1)
        return [self._reset_info(slot) for slot in slots]

    def check_actions(self, actions: np.ndarray) -> None:
        """Raise a clear error for an out-of-range or masked action."""
        bad = np.flatnonzero((actions < 0) | (actions >= self.vocab_size))
        if len(bad):
            raise ValueError(f"action {int(actions[bad[0]])} is not a token id: the vocabulary has ids "
                             f"0..{self.vocab_size - 1}")
        if self.action_mask is not None:
            bad = np.flatnonzero(self.action_mask[actions] == 0)
            if len(bad):
                raise ValueError(f"action {int(actions[bad[0]])} is excluded by the action mask; "
                                 "sample from the tokens where info['action_mask'] is 1")

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Append ``actions`` (N,) to every slot; returns rewards, terminated, truncated, infos."""
        slots = np.arange(self.num_slots)
        ref_lp = self._next_logprobs[slots, actions].double().numpy() if self._kv else None
        self.input_ids[:, :-1] = self.input_ids[:, 1:]
        self.attention_mask[:, :-1] = self.attention_mask[:, 1:]
        self.input_ids[:, -1] = actions
        self.attention_mask[:, -1] = 1
        for slot, episode in enumerate(self.episodes):
            episode.tokens.append(int(actions[slot]))
            if ref_lp is not None:
                episode.ref_logprobs.append(float(ref_lp[slot]))
        terminated = actions == self.eos_id if self.eos_id is not None else np.zeros(len(actions), bool)
        lengths = np.array([len(e.tokens) for e in self.episodes])
        truncated = (lengths >= self.max_new_tokens) & ~terminated
        rewards = self.kl_coef * ref_lp if ref_lp is not None else np.zeros(self.num_slots)
        infos = [self._step_info(slot, ref_lp) for slot in slots]
        finished = np.flatnonzero(terminated | truncated)
        if len(finished):
            rewards = rewards + self._finish(finished, terminated, infos)
        if self._kv is not None and len(finished) < self.num_slots:
            self._next_logprobs = torch.log_softmax(self._kv.step(torch.from_numpy(actions)), -1)
        return rewards, terminated, truncated, infos

    def _finish(self, finished: np.ndarray, terminated: np.ndarray, infos: list[dict]) -> np.ndarray:
        """Score the finished slots (one reward call, one reference pass in episode mode)."""
        episodes = [self.episodes[s] for s in finished]
        if self._kv is None:
            for episode, lps in zip(episodes, self.score_reference(episodes), strict=True):
                episode.ref_logprobs = lps.tolist()
        completions = [self._completion_text(e, bool(terminated[s])) for s, e in zip(finished, episodes, strict=True)]
        scores, terms = score_terms(self.reward_fn, [e.prompt for e in episodes], completions)
        bonus = np.zeros(self.num_slots)
        for row, (slot, episode, text, score) in enumerate(zip(finished, episodes, completions, scores, strict=True)):
            kl_term = self.kl_coef * float(np.sum(episode.ref_logprobs))
            infos[slot].update(
                score=float(score), prompt=episode.prompt, completion=text,
                completion_ids=np.array(episode.tokens, np.int64),
                ref_logprobs=np.array(episode.ref_logprobs, np.float64),
                reward_terms={**{name: float(v[row]) for name, v in terms.items()}, "kl_ref": kl_term},
            )
            bonus[slot] = score + (kl_term if self._kv is None else 0.0)
        return bonus

    def score_reference(self, episodes: Sequence[_Episode]) -> list[np.ndarray]:
        """Per-token ``log pi_ref`` of each completion, by teacher forcing (batched, chunked)."""
        lps = completion_logprobs(self.reference, [e.prompt_ids.tolist() for e in episodes],
                                  [e.tokens for e in episodes], self.pad_id)
        return [lp.numpy() for lp in lps]

    # ----------------------------------------------------------------------------- views
    def observation(self) -> dict[str, np.ndarray]:
        """The context windows of all slots, shape (N, max_context) each (copies)."""
        return {"input_ids": self.input_ids.copy(), "attention_mask": self.attention_mask.copy()}

    def render_text(self, slot: int) -> str:
        """The prompt and the completion so far of one slot, as text."""
        episode = self.episodes[slot]
        return "" if episode is None else self.tokenizer.decode([*episode.prompt_ids.tolist(), *episode.tokens])

    def _completion_text(self, episode: _Episode, ended_on_eos: bool) -> str:
        tokens = episode.tokens[:-1] if ended_on_eos else episode.tokens
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def _reset_info(self, slot: int) -> dict[str, Any]:
        info: dict[str, Any] = {"prompt": self.episodes[slot].prompt}
        if self.action_mask is not None:
            info["action_mask"] = self.action_mask
        return info

    def _step_info(self, slot: int, ref_lp: np.ndarray | None) -> dict[str, Any]:
        info: dict[str, Any] = {}
        if ref_lp is not None:
            info["ref_logprob"] = float(ref_lp[slot])
        if self.action_mask is not None:
            info["action_mask"] = self.action_mask
        return info


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_vocab(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> None:
    if len(tokenizer) > vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary has only {vocab_size}: "
            "they do not belong together; load the tokenizer saved with the model"
        )


def _check_lengths(model: PreTrainedModel, max_context: int, max_new_tokens: int) -> None:
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if max_context <= max_new_tokens:
        raise ValueError(f"max_context ({max_context}) must exceed max_new_tokens ({max_new_tokens}) "
                         "to leave room for the prompt")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_context > limit:
        raise ValueError(f"max_context={max_context} exceeds the model's {limit} positions; lower max_context")


def _check_prompts(prompts: Any, column: str) -> Any:
    if prompts is None or isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings or a datasets.Dataset, "
                        f"got {type(prompts).__name__}")
    if hasattr(prompts, "column_names") and column not in prompts.column_names:
        raise ValueError(f"the prompt dataset has no column {column!r} (columns: {prompts.column_names}); "
                         "pass prompt_column=")
    if len(prompts) == 0:
        raise ValueError("the prompt set is empty; pass at least one prompt")
    return prompts


def _check_action_mask(mask: np.ndarray | None, vocab_size: int) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask).astype(np.int8)
    if mask.shape != (vocab_size,):
        raise ValueError(f"action_mask must have shape ({vocab_size},), one entry per token, got {mask.shape}")
    if not mask.any():
        raise ValueError("action_mask allows no token; mark at least one token with 1")
    mask.flags.writeable = False
    return mask
