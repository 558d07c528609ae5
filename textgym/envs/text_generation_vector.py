"""N text-generation episodes stepped in lockstep, as a ``gymnasium.vector.VectorEnv``.

The vector form shares :class:`textgym.envs.core.GenerationCore` with the single environment, so
each step costs one batched reference forward for all N contexts and one batched reward call for
every episode that ends in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from textgym.envs.core import CoreProperties, GenerationCore


class TextGenerationVectorEnv(CoreProperties, VectorEnv):
    """``num_envs`` copies of :class:`textgym.envs.TextGenerationEnv` in one batch.

    Autoreset: ``AutoresetMode.SAME_STEP``. When slot i's episode ends, the same ``step`` call
    starts its next episode: the returned observation is the new prompt, the finished episode's
    last observation is in ``info["final_obs"][i]`` and its last-step info in
    ``info["final_info"]`` (masked by ``info["_final_info"]``), and the new episode's reset info
    (``prompt``) is in ``info`` itself. Rewards, ``terminated`` and ``truncated`` belong to the
    finished episode. No step is spent on resets, so every forward pass generates N tokens.

    Groups: with ``group_size=k``, slots ``0..k-1`` form group 0, ``k..2k-1`` group 1, and so on.
    The slots of a group answer the same prompts in the same order: each slot's n-th episode has its
    group's n-th prompt, whenever the slot gets there (slots finish at different steps). Per-prompt
    baselines (RLOO, GRPO) compare the k completions of one prompt. ``info["group_id"]`` (int, at
    every episode start) identifies a group's round: equal ids mean the same prompt, from the same
    group. ``group_size=1`` (default) makes every slot its own group.

    Seeding: ``reset(seed=s)`` seeds group g with ``s + g`` (as ``SyncVectorEnv`` seeds env g), so
    with ``group_size=1`` slot i draws the same prompts as a single environment reset with
    ``seed=s + i`` and then without seed. A conversation's rules draw from the same generator.

    Options: ``reset(options={"prompt": p})`` starts every slot from ``p``, a string or a list of
    ``num_envs`` strings.

    Info keys are those of the single environment, batched with ``_key`` masks, plus ``group_id``.

    Args:
        num_envs: Number of episodes stepped together.
        group_size: Slots per prompt group (module docstring); must divide ``num_envs``.
        render_mode: None or ``"ansi"`` (``render()`` returns one string per slot).
        **kwargs: The keyword arguments of :class:`textgym.envs.TextGenerationEnv` (``temperature`` too:
            the reference's log-probabilities are taken at the policy's sampling temperature).

    >>> import gymnasium as gym
    >>> import textgym
    >>> from textgym.models.tiny import random_causal_lm, word_tokenizer
    >>> from textgym.rewards import LengthReward
    >>> tok = word_tokenizer(["a", "b"])
    >>> envs = gym.make_vec("textgym/TextGeneration-v0", num_envs=3, vectorization_mode="vector_entry_point",
    ...     model=random_causal_lm(len(tok), 1, 16), tokenizer=tok, prompts=["a b"],
    ...     reward_fn=LengthReward(2), max_context=8, max_new_tokens=2)
    >>> obs, info = envs.reset(seed=0)
    >>> obs["input_ids"].shape
    (3, 8)
    """

    metadata = {"render_modes": ["ansi"], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, group_size: int = 1, render_mode: str | None = None, **kwargs: Any) -> None:
        for name, value in (("num_envs", num_envs), ("group_size", group_size)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if num_envs % group_size:
            raise ValueError(f"group_size={group_size} must divide num_envs={num_envs}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.core = GenerationCore(num_envs, **kwargs)
        self.num_envs, self.group_size = num_envs, group_size
        self.render_mode = render_mode
        self.single_action_space = spaces.Discrete(self.core.num_actions)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.single_observation_space = self.core.single_observation_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._groups = num_envs // group_size
        self._rngs: list[np.random.Generator] = []  # one per group
        self._drawn: list[dict[int, str]] = []  # per group: round -> prompt, for rounds some slot has yet to start
        self._round = np.zeros(num_envs, dtype=np.int64)  # per slot: the round its next episode plays
        self._running = False

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start a new episode in every slot."""
        super().reset(seed=None if isinstance(seed, list) else seed)  # a list seeds the groups' generators below
        seeds = seed if isinstance(seed, list) else [None if seed is None else seed + g for g in range(self._groups)]
        if len(seeds) != self._groups:
            raise ValueError(f"reset got {len(seeds)} seeds for {self._groups} groups of {self.group_size} envs")
        old: Sequence[np.random.Generator | None] = self._rngs or [None] * self._groups
        self._rngs = [_reseed(rng, s) for rng, s in zip(old, seeds, strict=True)]
        self._drawn, self._round[:] = [{} for _ in range(self._groups)], 0
        slots = np.arange(self.num_envs)
        infos: dict[str, Any] = {}
        for slot, info in zip(slots, self._start(slots, self._slot_options(options)), strict=True):
            infos = self._add_info(infos, info, int(slot))
        self._running = True
        return self.core.observation(), infos

    def step(self, actions: Any) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Append one token to every slot; finished slots start their next episode (SAME_STEP)."""
        if not self._running:
            raise RuntimeError("step() called before reset(): call reset() first")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise TypeError(f"actions must be {self.num_envs} integer token ids, shape ({self.num_envs},), "
                            f"got {actions.dtype} array of shape {actions.shape}")
        actions = actions.astype(np.int64)
        self.core.check_actions(actions)
        self._running = False  # until the step succeeds: an error inside it ends every episode
        rewards, terminated, truncated, slot_infos = self.core.step(actions)
        self._running = True
        finished = np.flatnonzero(terminated | truncated)
        infos = _batch_step_infos(slot_infos, finished, self.num_envs)
        obs = self.core.observation()
        if len(finished):
            for slot, reset_info in zip(finished, self._start(finished, [None] * len(finished)), strict=True):
                last_obs = {key: value[slot].copy() for key, value in obs.items()}
                infos = self._add_info(infos, {"final_obs": last_obs, "final_info": slot_infos[slot]}, int(slot))
                infos = self._add_info(infos, reset_info, int(slot))
            for key, value in obs.items():  # the restarted slots show their new prompts
                value[finished] = getattr(self.core, key)[finished]
        return obs, rewards, terminated, truncated, infos

    def render(self) -> tuple[str, ...] | None:
        """One string per slot (prompt and completion so far) for ``render_mode="ansi"``."""
        if self.render_mode != "ansi":
            return None
        return tuple(self.core.render_text(slot) for slot in range(self.num_envs))

    def _start(self, slots: np.ndarray, options: list[dict | None]) -> list[dict[str, Any]]:
        """Start the next episode of ``slots``: each plays its group's next round."""
        prompts, rngs, ids = [], [], []
        for slot, opts in zip(slots, options, strict=True):
            group, round_ = int(slot) // self.group_size, int(self._round[slot])
            drawn = self._drawn[group]
            if round_ not in drawn:
                drawn[round_] = self.core.choose_prompt(self._rngs[group], opts)
            prompts.append(drawn[round_])
            rngs.append(self._rngs[group])
            ids.append(round_ * self._groups + group)
            self._round[slot] += 1
            members = self._round[group * self.group_size:(group + 1) * self.group_size]
            for done in [r for r in drawn if r < members.min()]:  # every slot of the group is past it
                del drawn[done]
        infos = self.core.start(slots.tolist(), prompts, rngs)
        for info, group_id in zip(infos, ids, strict=True):
            info["group_id"] = group_id
        return infos

    def _slot_options(self, options: dict | None) -> list[dict | None]:
        if not options or not isinstance(options.get("prompt"), list | tuple):
            return [options] * self.num_envs
        if len(options["prompt"]) != self.num_envs:
            raise ValueError(f"options['prompt'] has {len(options['prompt'])} prompts for {self.num_envs} envs")
        return [{**options, "prompt": p} for p in options["prompt"]]


def _reseed(rng: np.random.Generator | None, seed: int | None) -> np.random.Generator:
    """Keep a slot's generator on ``seed=None`` (as ``Env.reset`` does), else make a new one."""
    return rng if seed is None and rng is not None else seeding.np_random(seed)[0]


def _batch_step_infos(slot_infos: list[dict[str, Any]], finished: np.ndarray, num_envs: int) -> dict[str, Any]:
    """Batch the per-step info keys of the running slots, as ``VectorEnv._add_info`` would.

    A finished slot's step info goes to ``final_info`` instead (SAME_STEP), and its top-level info is
    its reset info. ``final_info`` starts with object arrays for the keys whose arrays differ in
    length from episode to episode.
    """
    running = np.ones(num_envs, dtype=bool)
    running[finished] = False
    infos: dict[str, Any] = {}
    if "ref_logprob" in slot_infos[0]:
        infos["ref_logprob"] = np.array([info["ref_logprob"] for info in slot_infos])
        infos["_ref_logprob"] = running.copy()
    masks = [info.get("action_mask") for info in slot_infos]
    if any(mask is not None for mask in masks):
        width = next(len(mask) for mask in masks if mask is not None)
        infos["action_mask"] = np.stack([np.ones(width, np.int8) if m is None else m for m in masks])
        infos["_action_mask"] = running.copy()
    replied = [slot for slot, info in enumerate(slot_infos) if "reply" in info]
    if replied:
        infos["reply"] = np.full(num_envs, None, dtype=object)
        infos["_reply"] = np.zeros(num_envs, dtype=bool)
        for slot in replied:
            infos["reply"][slot], infos["_reply"][slot] = slot_infos[slot]["reply"], True
    if len(finished):
        infos["final_info"] = {}
        for key in ("completion_ids", "ref_logprobs", "agent_mask", "turn_rewards", "score_parts"):
            if key in slot_infos[finished[0]]:
                infos["final_info"][key] = np.full(num_envs, None, dtype=object)
                infos["final_info"]["_" + key] = np.zeros(num_envs, dtype=bool)
    return infos
