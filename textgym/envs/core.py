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

The reference's log-probabilities are those of the distribution a policy sampling at ``temperature``
draws from, ``log softmax(z_ref / temperature)``, and, where an action mask restricts the step (a
static ``action_mask`` or a conversation's allowed moves), renormalised over the allowed actions,
as a sampler that masks them draws. So the KL shaping compares like with like: an agent sampling at
the same temperature from the reference's own weights pays exactly 0, and the sampled
``log pi(a_t | s_t) - log pi_ref(a_t | s_t)`` (both at ``temperature``) estimates the KL of the
sampling distribution to the reference's at that temperature (as TRL divides both sides' logits by
its temperature). A policy that also cuts its distribution with top-k or top-p still gets the
reference's uncut distribution at ``temperature``: its KL is that of the cut distribution it
samples, and stays finite where the policy keeps a token the reference would cut.

Credit: the reward function's score is paid at the last step. With ``credit="token"`` and a reward
that can say where in a completion it earned each part of its score (a ``parts`` method, e.g. a
:class:`textgym.rewards.RewardModel`: one part per token), ``info["score_parts"]`` also places each
part at the completion token that completed its text. The step rewards stay the same (every agent sees
the same return); an agent that reads the parts can credit each where it was earned. Of the agents
of ``agents/``, PPO (GAE) and REINFORCE (reward-to-go) do; RLOO and GRPO compare whole completions,
so for them only the sum counts.

With :class:`textgym.envs.turns.Turns` rules the episode is a conversation: when the agent's turn
ends, the rules reply and the reply's tokens join the context as state (module
:mod:`textgym.envs.turns`). Turn rewards are paid at the step that ends the turn.

Devices: observations are numpy on the host (Gymnasium's contract). The reference model and its KV
cache stay on the reference's device; a step sends the actions there once and brings the chosen
tokens' log-probs back once.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import numpy as np
import torch
from gymnasium import spaces
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from textgym.envs.turns import Reply, Turns
from textgym.models import decode, load_causal_lm, load_tokenizer, model_device
from textgym.models.kv import SlotKVCache
from textgym.models.logprobs import completion_logprobs
from textgym.models.sampling import Sampling
from textgym.rewards.base import RewardFunction, score_parts, score_terms

RefScoring = Literal["step", "episode"]
Credit = Literal["end", "token"]
CREDITS = ("end", "token")
PromptOverflow = Literal["truncate", "error"]
#: The reference model when none is given: the embedded tiny language model.
DEFAULT_MODEL = "textgym/tiny-lm"

_IMPORT_PID = os.getpid()


class PromptTruncatedWarning(UserWarning):
    """A prompt was longer than the window allows and lost its leading tokens."""


@dataclass
class _Episode:
    """What one slot has generated so far."""

    prompt: str
    prompt_ids: np.ndarray
    tokens: list[int] = field(default_factory=list)
    """Every token after the prompt: the agent's and, in a conversation, the environment's."""
    agent: list[bool] = field(default_factory=list)
    """Whose each token is: True for the agent's."""
    ref_logprobs: list[float] = field(default_factory=list)
    allowed: list[np.ndarray | None] = field(default_factory=list)
    """The action mask in force at each token (None: every action; the environment's tokens: None)."""
    turn_rewards: dict[int, float] = field(default_factory=dict)
    """Token index -> the reward its turn earned (conversations only)."""
    state: Any = None
    """The rules' state of a conversation."""
    turn_start: int = 0
    """Index in ``tokens`` of the agent's current turn."""
    action_mask: np.ndarray | None = None


class GenerationCore:
    """N text-generation slots in lockstep; see the module docstring.

    Args:
        num_slots: Number of contexts stepped together.
        model: The frozen reference causal LM, or a name/path for :func:`textgym.models.load_causal_lm`
            (default: the embedded ``textgym/tiny-lm``).
        tokenizer: Its tokenizer; loaded from ``model`` when None and ``model`` is a name.
        prompts: Prompt texts, or a ``datasets.Dataset`` with a ``prompt_column``.
        reward_fn: Scores finished completions (:class:`textgym.rewards.RewardFunction`); in a
            conversation it may be None, the score being the turn rewards.
        max_context: Observation length: prompt plus completion must fit in it.
        max_new_tokens: Episode length limit in tokens after the prompt (the environment's turns
            count too); reaching it truncates the episode.
        kl_coef: Beta, the weight of ``log pi_ref(a_t | s_t)`` in the reward: finite and >= 0.
        temperature: The sampling temperature of the policies trained here: the reference's
            log-probabilities are ``log softmax(logits / temperature)`` (module docstring); finite and > 0.
        ref_scoring: ``"step"`` or ``"episode"`` (module docstring).
        prompt_overflow: A prompt longer than ``max_context - max_new_tokens`` tokens is
            ``"truncate"``-d on the left with a warning, or raises (``"error"``).
        prompt_column: Column holding the prompt text when ``prompts`` is a Dataset.
        action_mask: Optional int8/bool array of length ``num_actions`` (the tokenizer's length, which
            is the action space's size: see :class:`textgym.envs.TextGenerationEnv`); 1 marks allowed tokens.
        turns: The rules of a conversation (:class:`textgym.envs.turns.Turns`), or None for one
            completion per episode.
        credit: ``"end"``, or ``"token"`` to report where each part of the score was earned
            (``info["score_parts"]``; module docstring). ``"token"`` needs a reward with a ``parts``
            method and one completion per episode.

    The task of a registered id fills in its defaults before the core is built
    (:func:`textgym.tasks.env_arguments`): the core knows no task.
    """

    def __init__(
        self, num_slots: int, model: PreTrainedModel | str = DEFAULT_MODEL,
        tokenizer: PreTrainedTokenizerBase | None = None, prompts: Any = None, reward_fn: RewardFunction | None = None,
        *, max_context: int, max_new_tokens: int, kl_coef: float = 0.05, ref_scoring: RefScoring = "step",
        prompt_overflow: PromptOverflow = "truncate",
        prompt_column: str = "prompt", action_mask: np.ndarray | None = None, turns: Turns | None = None,
        credit: Credit = "end", temperature: float = 1.0,
    ) -> None:
        _single_threaded_after_fork()
        self.reference = load_causal_lm(model) if isinstance(model, str) else model
        if tokenizer is None:
            if not isinstance(model, str):
                raise ValueError("pass the tokenizer that belongs to the reference model")
            tokenizer = load_tokenizer(model)
        self.tokenizer = tokenizer
        self.num_actions = _check_vocab(self.tokenizer, int(self.reference.config.vocab_size))
        _check_lengths(self.reference, max_context, max_new_tokens)
        _check_choice("ref_scoring", ref_scoring, ("step", "episode"))
        _check_choice("prompt_overflow", prompt_overflow, ("truncate", "error"))
        if reward_fn is None and turns is None:
            raise TypeError("reward_fn is None: pass a RewardFunction (a callable with a name) to score completions")
        if reward_fn is not None and not isinstance(reward_fn, RewardFunction):
            raise TypeError(f"reward_fn must be a RewardFunction (a callable with a name), got {reward_fn!r}")
        _check_credit(credit, reward_fn, turns)
        self.sampling = Sampling(temperature)  # checks the temperature
        self.num_slots, self.reward_fn, self.turns = num_slots, reward_fn, turns
        self.kl_coef, self.credit = kl_coef, credit
        self.max_context, self.max_new_tokens = max_context, max_new_tokens
        self.ref_scoring, self.prompt_overflow = ref_scoring, prompt_overflow
        self.prompts, self.prompt_column = _check_prompts(prompts, prompt_column), prompt_column
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (self.eos_id or 0)
        self.end_of_turn_id = _end_of_turn_id(self.tokenizer, turns)
        self.action_mask = _check_action_mask(action_mask, self.num_actions)
        self._static_allowed = None if self.action_mask is None else torch.as_tensor(self.action_mask == 1)
        self.single_observation_space = spaces.Dict({
            "input_ids": spaces.Box(0, self.num_actions - 1, (max_context,), np.int64),
            "attention_mask": spaces.Box(0, 1, (max_context,), np.int64),
        })
        self.device = model_device(self.reference)
        if self._static_allowed is not None:
            self._static_allowed = self._static_allowed.to(self.device)
        self.input_ids = np.full((num_slots, max_context), self.pad_id, np.int64)  # (N, L)
        self.attention_mask = np.zeros((num_slots, max_context), np.int64)  # (N, L)
        self.episodes: list[_Episode | None] = [None] * num_slots
        self._kv = SlotKVCache(self.reference, num_slots, self.pad_id) if ref_scoring == "step" else None
        # (N, A) log pi_ref of each slot's next token, on the reference's device (step mode only)
        self._next_logprobs = torch.zeros((num_slots, self.num_actions), device=self.device)

    @property
    def kl_coef(self) -> float:
        """Beta, the weight of the reference's log-probability in the reward (agents may steer it)."""
        return self._kl_coef

    @kl_coef.setter
    def kl_coef(self, value: float) -> None:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"kl_coef must be a number, got {value!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"kl_coef must be a finite number >= 0, got {value}: it weighs the KL penalty that "
                             "keeps the policy near the reference (0 turns it off)")
        self._kl_coef = value

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
    def start(self, slots: Sequence[int], prompts: Sequence[str],
              rngs: Sequence[np.random.Generator] | None = None) -> list[dict[str, Any]]:
        """Begin new episodes in ``slots``; returns each slot's reset ``info``.

        ``rngs`` (one per slot) drive a conversation's rules; they are not used otherwise.
        """
        encoded, states = [], []
        rngs = rngs or [np.random.default_rng() for _ in slots]
        for text, rng in zip(prompts, rngs, strict=True):
            state, opening = self.turns.begin(text, rng) if self.turns is not None else (None, Reply())
            encoded.append(self.encode_prompt(text + opening.text))
            states.append((state, opening))
        for slot, text, ids, (state, opening) in zip(slots, prompts, encoded, states, strict=True):
            self.episodes[slot] = _Episode(text, ids, state=state, action_mask=self._mask_for(opening))
            self.input_ids[slot] = self.pad_id
            self.attention_mask[slot] = 0
            self.input_ids[slot, self.max_context - len(ids):] = ids
            self.attention_mask[slot, self.max_context - len(ids):] = 1
        if self._kv is not None:
            rows = torch.as_tensor(list(slots), device=self.device)
            self._next_logprobs[rows] = self._logprobs(self._kv.start(slots, encoded), slots)
        return [self._reset_info(slot) for slot in slots]

    def check_actions(self, actions: np.ndarray) -> None:
        """Raise a clear error for an out-of-range or masked action."""
        bad = np.flatnonzero((actions < 0) | (actions >= self.num_actions))
        if len(bad):
            raise ValueError(f"action {int(actions[bad[0]])} is not a token id: the action space has ids "
                             f"0..{self.num_actions - 1}")
        for slot, action in enumerate(actions):
            mask = self.current_mask(slot)
            if mask is not None and mask[action] == 0:
                raise ValueError(f"action {int(action)} is excluded by the action mask; sample from the tokens "
                                 "where info['action_mask'] is 1")

    def _episode(self, slot: int) -> _Episode:
        """The episode running in ``slot`` (the environments call :meth:`start` before stepping a slot)."""
        episode = self.episodes[slot]
        if episode is None:
            raise RuntimeError(f"slot {slot} has no episode running: call reset() first")
        return episode

    def current_mask(self, slot: int) -> np.ndarray | None:
        """The action mask of a slot's next step (the static mask, narrowed by a conversation's reply)."""
        episode = self.episodes[slot]
        return self.action_mask if episode is None or episode.action_mask is None else episode.action_mask

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Append ``actions`` (N,) to every slot; returns rewards, terminated, truncated, infos.

        If the reward function (or a conversation's rules) raises, every slot's episode is over and
        the exception propagates: call ``reset``.
        """
        actions_t = torch.from_numpy(actions).to(self.device)  # one transfer to the reference's device
        ref_lp = None
        if self._kv is not None:
            ref_lp = self._next_logprobs.gather(1, actions_t[:, None]).squeeze(1).double().cpu().numpy()  # one back
        try:
            return self._step(actions, actions_t, ref_lp)
        except BaseException:
            self.episodes = [None] * self.num_slots
            raise

    def _step(self, actions: np.ndarray, actions_t: torch.Tensor, ref_lp: np.ndarray | None):
        slots = list(range(self.num_slots))
        self._append(slots, [[int(a)] for a in actions])
        rewards = self.kl_coef * ref_lp if ref_lp is not None else np.zeros(self.num_slots)
        terminated = np.zeros(self.num_slots, dtype=bool)
        replies: dict[int, list[int]] = {}
        for slot in slots:
            episode, token = self._episode(slot), int(actions[slot])
            episode.tokens.append(token)
            episode.agent.append(True)
            episode.allowed.append(self.current_mask(slot))
            episode.ref_logprobs.append(float(ref_lp[slot]) if ref_lp is not None else 0.0)
            if self.turns is None:
                terminated[slot] = token == self.eos_id
            elif self._turn_over(self.turns, episode, token):
                terminated[slot], reward, replies[slot] = self._answer(self.turns, episode, token)
                rewards[slot] += reward
        replies = {s: ids for s, ids in replies.items() if ids and not terminated[s]}
        truncated = np.zeros(self.num_slots, dtype=bool)
        for slot in slots:
            room = self.max_new_tokens - len(self._episode(slot).tokens)
            if slot in replies and len(replies[slot]) >= room:  # the reply does not fit: the episode is cut here
                del replies[slot]
                room = 0
            truncated[slot] = room <= 0 and not terminated[slot]
        infos = [self._step_info(slot, ref_lp) for slot in slots]
        if replies:
            self._write_replies(replies, infos)
        finished = np.flatnonzero(terminated | truncated)
        if len(finished):
            rewards = rewards + self._finish(finished, terminated, infos)
        if self._kv is not None and len(finished) < self.num_slots:
            logits = self._kv.step(actions_t)
            rows = [s for s in replies if s not in finished]
            if rows:
                logits[rows] = self._kv.extend(rows, [replies[s] for s in rows])
            self._next_logprobs = self._logprobs(logits, slots)
        return rewards, terminated, truncated, infos

    def _turn_over(self, turns: Turns, episode: _Episode, token: int) -> bool:
        ended = token == self.eos_id or token == self.end_of_turn_id
        return ended or len(episode.tokens) - episode.turn_start >= turns.max_turn_tokens

    def _answer(self, turns: Turns, episode: _Episode, token: int) -> tuple[bool, float, list[int]]:
        """The rules' reply to the turn that ``token`` ended: (episode over, reward, reply tokens)."""
        turn = episode.tokens[episode.turn_start:]
        if turn and turn[-1] in (self.eos_id, self.end_of_turn_id):
            turn = turn[:-1]
        reply = turns.reply(episode.state, decode(self.tokenizer, turn, skip_special_tokens=True))
        episode.turn_rewards[len(episode.tokens) - 1] = float(reply.reward)
        episode.action_mask = self._mask_for(reply)
        ids = [] if reply.done else self.tokenizer(reply.text, add_special_tokens=False)["input_ids"]
        episode.turn_start = len(episode.tokens) + len(ids)
        return bool(reply.done or token == self.eos_id), float(reply.reward), ids

    def _write_replies(self, replies: dict[int, list[int]], infos: list[dict[str, Any]]) -> None:
        """Append the environment's reply tokens to their slots (state, not actions)."""
        self._append(list(replies), list(replies.values()))
        for slot, ids in replies.items():
            episode = self._episode(slot)
            episode.tokens += ids
            episode.agent += [False] * len(ids)
            episode.allowed += [None] * len(ids)
            episode.ref_logprobs += [0.0] * len(ids)
            infos[slot]["reply"] = decode(self.tokenizer, ids)

    def _append(self, slots: Sequence[int], tokens: Sequence[Sequence[int]]) -> None:
        """Shift the windows of ``slots`` left and write ``tokens`` at their right end."""
        if len(slots) == self.num_slots and all(len(t) == 1 for t in tokens):
            self.input_ids[:, :-1] = self.input_ids[:, 1:]
            self.attention_mask[:, :-1] = self.attention_mask[:, 1:]
            self.input_ids[:, -1] = [t[0] for t in tokens]
            self.attention_mask[:, -1] = 1
            return
        for slot, ids in zip(slots, tokens, strict=True):
            width = len(ids)
            self.input_ids[slot, :-width] = self.input_ids[slot, width:].copy()
            self.attention_mask[slot, :-width] = self.attention_mask[slot, width:].copy()
            self.input_ids[slot, -width:] = ids
            self.attention_mask[slot, -width:] = 1

    def _logprobs(self, logits: torch.Tensor, slots: Sequence[int]) -> torch.Tensor:
        """The reference's log-probabilities (n, A) of the next actions of ``slots``, on its device (module doc)."""
        masks = [self.current_mask(slot) for slot in slots]
        allowed = None
        if all(mask is self.action_mask for mask in masks):
            allowed = self._static_allowed  # (A,), or None: no mask
        else:  # a conversation's moves: one mask per slot, one transfer
            rows = [np.ones(self.num_actions, bool) if mask is None else mask == 1 for mask in masks]
            allowed = torch.from_numpy(np.stack(rows)).to(self.device)  # (n, A)
        return torch.log_softmax(self.sampling.logits(logits[:, :self.num_actions], allowed), -1)

    def _finish(self, finished: np.ndarray, terminated: np.ndarray, infos: list[dict]) -> np.ndarray:
        """Score the finished slots (one reward call, one reference pass in episode mode)."""
        episodes = [self._episode(s) for s in finished]
        if self._kv is None:
            for episode, lps in zip(episodes, self.score_reference(episodes), strict=True):
                episode.ref_logprobs = np.where(episode.agent, lps, 0.0).tolist()
        completions = [self._completion_text(e, bool(terminated[s])) for s, e in zip(finished, episodes, strict=True)]
        scores = np.zeros(len(episodes))
        terms: dict[str, np.ndarray] = {}
        parts = None
        if self.reward_fn is not None and self.credit == "token":
            scores, parts = score_parts(self.reward_fn, [e.prompt for e in episodes], completions)
            terms = {self.reward_fn.name: scores}
        elif self.reward_fn is not None:
            scores, terms = score_terms(self.reward_fn, [e.prompt for e in episodes], completions)
        bonus = np.zeros(self.num_slots)
        for row, (slot, episode, text) in enumerate(zip(finished, episodes, completions, strict=True)):
            kl_term = self.kl_coef * float(np.sum(episode.ref_logprobs))
            turns = float(sum(episode.turn_rewards.values()))
            infos[slot].update(
                score=float(scores[row]) + turns, prompt=episode.prompt, completion=text,
                completion_ids=np.array(episode.tokens, np.int64),
                ref_logprobs=np.array(episode.ref_logprobs, np.float64),
                reward_terms={**{name: float(v[row]) for name, v in terms.items()}, "kl_ref": kl_term},
            )
            if parts is not None:
                infos[slot]["score_parts"] = self._place_parts(episode, bool(terminated[slot]), *parts[row])
            if self.turns is not None:
                rewards_at = np.zeros(len(episode.tokens))
                rewards_at[list(episode.turn_rewards)] = list(episode.turn_rewards.values())
                infos[slot].update(agent_mask=np.array(episode.agent, np.int8), turn_rewards=rewards_at)
                infos[slot]["reward_terms"]["turns"] = turns
            bonus[slot] = scores[row] + (kl_term if self._kv is None else 0.0)
            self.episodes[slot] = None
        return bonus

    def _place_parts(self, episode: _Episode, ended_on_eos: bool, ends: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Each part of a score at the completion token whose text reaches the part's end, (completion tokens,)."""
        tokens = episode.tokens[:-1] if ended_on_eos and episode.tokens[-1] == self.eos_id else episode.tokens
        prefixes = self.tokenizer.batch_decode([tokens[:i + 1] for i in range(len(tokens))], skip_special_tokens=True)
        token_ends = np.maximum.accumulate([len(text) for text in prefixes]) if prefixes else np.zeros(1)
        at = np.minimum(np.searchsorted(token_ends, ends, side="left"), max(len(tokens) - 1, 0))
        placed = np.zeros(len(episode.tokens))
        np.add.at(placed, at, values)
        return placed

    def score_reference(self, episodes: Sequence[_Episode]) -> list[np.ndarray]:
        """Per-token ``log pi_ref`` of each completion, by teacher forcing (batched, chunked; module docstring)."""
        allowed = [None if all(m is None for m in e.allowed) else
                   np.stack([np.ones(self.num_actions, bool) if m is None else m == 1 for m in e.allowed])
                   for e in episodes]  # per episode: (tokens, A), or None
        lps = completion_logprobs(self.reference, [e.prompt_ids.tolist() for e in episodes],
                                  [e.tokens for e in episodes], self.pad_id, num_actions=self.num_actions,
                                  allowed=allowed, sampling=self.sampling)
        return [lp.numpy() for lp in lps]

    # ----------------------------------------------------------------------------- views
    def observation(self) -> dict[str, np.ndarray]:
        """The context windows of all slots, shape (N, max_context) each (copies)."""
        return {"input_ids": self.input_ids.copy(), "attention_mask": self.attention_mask.copy()}

    def render_text(self, slot: int) -> str:
        """The context of one slot (prompt and everything after it), as text."""
        ids = self.input_ids[slot][self.attention_mask[slot] == 1]
        return decode(self.tokenizer, ids.tolist())

    def _completion_text(self, episode: _Episode, ended_on_eos: bool) -> str:
        tokens = episode.tokens[:-1] if ended_on_eos and episode.tokens[-1] == self.eos_id else episode.tokens
        return decode(self.tokenizer, tokens, skip_special_tokens=True)

    def _mask_for(self, reply: Reply) -> np.ndarray | None:
        """The action mask of the agent's next turn: the tokens the reply allows (and the static mask)."""
        if reply.allowed is None:
            return None
        mask = np.zeros(self.num_actions, np.int8)
        for text in reply.allowed:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise ValueError(f"the rules allow {text!r}, which is {len(ids)} tokens; allow single tokens")
            mask[ids[0]] = 1
        mask = _check_action_mask(mask, self.num_actions)
        return mask if self.action_mask is None else (mask & self.action_mask)

    def _reset_info(self, slot: int) -> dict[str, Any]:
        info: dict[str, Any] = {"prompt": self._episode(slot).prompt}
        mask = self.current_mask(slot)
        if mask is not None:
            info["action_mask"] = mask
        return info

    def _step_info(self, slot: int, ref_lp: np.ndarray | None) -> dict[str, Any]:
        info: dict[str, Any] = {}
        if ref_lp is not None:
            info["ref_logprob"] = float(ref_lp[slot])
        mask = self.current_mask(slot)
        if mask is not None:
            info["action_mask"] = mask
        return info


def _single_threaded_after_fork() -> None:
    """In a process forked after textgym was imported, use one torch thread.

    ``gymnasium.make_vec(..., vectorization_mode="async")`` forks its workers by default on Linux,
    and torch's thread pool does not survive a fork: the first multi-threaded op of a worker whose
    parent had run torch before hangs forever. With one thread per worker it cannot (and the workers
    are the parallelism then).
    """
    if os.getpid() != _IMPORT_PID:
        torch.set_num_threads(1)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_vocab(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> int:
    """The number of actions: the model's vocabulary, or the tokenizer's when the model's is padded larger."""
    if len(tokenizer) > vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary has only {vocab_size}: "
            "they do not belong together; load the tokenizer saved with the model"
        )
    return len(tokenizer)


def _check_lengths(model: PreTrainedModel, max_context: int, max_new_tokens: int) -> None:
    for name, value in (("max_context", max_context), ("max_new_tokens", max_new_tokens)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name} must be a whole number, got {value!r}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if max_context <= max_new_tokens:
        raise ValueError(f"max_context ({max_context}) must exceed max_new_tokens ({max_new_tokens}) "
                         "to leave room for the prompt")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_context > limit:
        raise ValueError(f"max_context={max_context} exceeds the model's {limit} positions; lower max_context")


def _check_prompts(prompts: Any, column: str) -> Any:
    """Prompts must be strings: checked here, so a bad one is named now rather than inside the tokenizer later."""
    if prompts is None or isinstance(prompts, str | bytes):
        raise TypeError("prompts must be a list of strings or a datasets.Dataset, "
                        f"got {type(prompts).__name__}")
    if hasattr(prompts, "column_names"):
        if column not in prompts.column_names:
            raise ValueError(f"the prompt dataset has no column {column!r} (columns: {prompts.column_names}); "
                             "pass prompt_column=")
        feature = prompts.features[column]
        if getattr(feature, "dtype", None) not in ("string", "large_string"):
            raise TypeError(f"the prompt column {column!r} holds {feature}, not strings; "
                            "pass a column of prompt texts")
        values = prompts[column]
    else:
        values = prompts
    if len(prompts) == 0:
        raise ValueError("the prompt set is empty; pass at least one prompt")
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(f"prompts[{index}] is {value!r:.60} ({type(value).__name__}), not a string; "
                            "every prompt must be a text")
    return prompts


def _check_credit(credit: str, reward_fn: RewardFunction | None, turns: Turns | None) -> None:
    _check_choice("credit", credit, CREDITS)
    if credit == "token" and turns is not None:
        raise ValueError("credit='token' places a reward's parts in one completion; a conversation pays its rewards "
                         "per turn already: use credit='end' with turns")
    if credit == "token" and not callable(getattr(reward_fn, "parts", None)):
        raise TypeError(f"credit='token' needs a reward that says where in a completion it earned each part of its "
                        f"score (a parts method, e.g. RewardModel); {reward_fn!r:.80} has none: use credit='end'")


@overload
def _check_action_mask(mask: np.ndarray, num_actions: int) -> np.ndarray: ...
@overload
def _check_action_mask(mask: None, num_actions: int) -> None: ...
@overload
def _check_action_mask(mask: np.ndarray | None, num_actions: int) -> np.ndarray | None: ...
def _check_action_mask(mask: np.ndarray | None, num_actions: int) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask).astype(np.int8)
    if mask.shape != (num_actions,):
        raise ValueError(f"action_mask must have shape ({num_actions},), one entry per action, got {mask.shape}")
    if not mask.any():
        raise ValueError("action_mask allows no token; mark at least one token with 1")
    mask.flags.writeable = False
    return mask


def _end_of_turn_id(tokenizer: PreTrainedTokenizerBase, turns: Turns | None) -> int | None:
    if turns is None or turns.end_of_turn is None:
        return None
    ids = tokenizer(turns.end_of_turn, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"the end-of-turn text {turns.end_of_turn!r} is {len(ids)} tokens; it must be one token")
    return ids[0]


class CoreProperties:
    """The settings a text environment exposes, read from (and ``kl_coef`` written to) its :class:`GenerationCore`.

    Shared by :class:`textgym.envs.TextGenerationEnv` and :class:`textgym.envs.TextGenerationVectorEnv`.
    """

    core: GenerationCore

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The tokenizer that decodes actions into text (the reference model's)."""
        return self.core.tokenizer

    @property
    def reference(self) -> PreTrainedModel:
        """The frozen reference model that scores every action (e.g. the starting policy to fine-tune)."""
        return self.core.reference

    @property
    def reward_fn(self) -> RewardFunction | None:
        """The reward function that scores finished completions (None in a conversation scored by its turns)."""
        return self.core.reward_fn

    @property
    def prompts(self) -> Any:
        """The prompt set episodes draw from (a list of strings or a ``datasets.Dataset``)."""
        return self.core.prompts

    @property
    def max_context(self) -> int:
        """The observation length: prompt plus completion fit in it."""
        return self.core.max_context

    @property
    def max_new_tokens(self) -> int:
        """The episode length limit in tokens after the prompt."""
        return self.core.max_new_tokens

    @property
    def turns(self) -> Turns | None:
        """The rules of the conversation (:class:`textgym.envs.turns.Turns`), or None: e.g. to add restarts."""
        return self.core.turns

    @property
    def symmetries(self):
        """The rules' symmetries as maps of token ids (:meth:`textgym.envs.turns.Turns.symmetries`), or None."""
        return None if self.core.turns is None else self.core.turns.symmetries(self.core.tokenizer)

    @property
    def temperature(self) -> float:
        """The sampling temperature the reference's log-probabilities are taken at."""
        return self.core.sampling.temperature

    @property
    def kl_coef(self) -> float:
        """Beta of the KL shaping (settable: finite and >= 0)."""
        return self.core.kl_coef

    @kl_coef.setter
    def kl_coef(self, value: float) -> None:
        self.core.kl_coef = value
