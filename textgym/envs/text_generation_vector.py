"""N text-generation episodes stepped in lockstep, as a ``gymnasium.vector.VectorEnv``.

The vector form shares :class:`textgym.envs.core.GenerationCore` with the single environment, so
each step costs one batched reference forward for all N contexts and one batched reward call for
every episode that ends in it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from textgym.envs.core import GenerationCore


class TextGenerationVectorEnv(VectorEnv):
    """``num_envs`` copies of :class:`textgym.envs.TextGenerationEnv` in one batch.

    Autoreset: ``AutoresetMode.SAME_STEP``. When slot i's episode ends, the same ``step`` call
    starts its next episode: the returned observation is the new prompt, the finished episode's
    last observation is in ``info["final_obs"][i]`` and its last-step info in
    ``info["final_info"]`` (masked by ``info["_final_info"]``), and the new episode's reset info
    (``prompt``) is in ``info`` itself. Rewards, ``terminated`` and ``truncated`` belong to the
    finished episode. No step is spent on resets, so every forward pass generates N tokens.

    Seeding: ``reset(seed=s)`` seeds slot i with ``s + i`` (as ``SyncVectorEnv`` does), so slot i
    draws the same prompts as a single environment reset with ``seed=s + i`` and then without seed.

    Options: ``reset(options={"prompt": p})`` starts every slot from ``p``, a string or a list of
    ``num_envs`` strings.

    Info keys are those of the single environment, batched with ``_key`` masks.

    Args:
        num_envs: Number of episodes stepped together.
        render_mode: None or ``"ansi"`` (``render()`` returns one string per slot).
        **kwargs: The keyword arguments of :class:`textgym.envs.TextGenerationEnv`.

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

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, **kwargs: Any) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.core = GenerationCore(num_envs, **kwargs)
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.single_action_space = spaces.Discrete(self.core.vocab_size)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.single_observation_space = self.core.single_observation_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._rngs: list[np.random.Generator] | None = None
        self._running = False

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start a new episode in every slot."""
        super().reset(seed=seed)
        seeds = seed if isinstance(seed, list) else [None if seed is None else seed + i for i in range(self.num_envs)]
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset got {len(seeds)} seeds for {self.num_envs} envs")
        old = self._rngs or [None] * self.num_envs
        self._rngs = [_reseed(rng, s) for rng, s in zip(old, seeds, strict=True)]
        slot_options = self._slot_options(options)
        prompts = [self.core.choose_prompt(rng, opts) for rng, opts in zip(self._rngs, slot_options, strict=True)]
        infos: dict[str, Any] = {}
        for slot, info in enumerate(self.core.start(range(self.num_envs), prompts)):
            infos = self._add_info(infos, info, slot)
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
        rewards, terminated, truncated, slot_infos = self.core.step(actions)
        finished = np.flatnonzero(terminated | truncated)
        infos = _batch_step_infos(slot_infos, finished, self.num_envs)
        obs = self.core.observation()
        if len(finished):
            prompts = [self.core.choose_prompt(self._rngs[s], None) for s in finished]
            for slot, reset_info in zip(finished, self.core.start(finished, prompts), strict=True):
                last_obs = {key: value[slot].copy() for key, value in obs.items()}
                infos = self._add_info(infos, {"final_obs": last_obs, "final_info": slot_infos[slot]}, slot)
                infos = self._add_info(infos, reset_info, slot)
            for key, value in obs.items():  # the restarted slots show their new prompts
                value[finished] = getattr(self.core, key)[finished]
        return obs, rewards, terminated, truncated, infos

    def render(self) -> tuple[str, ...] | None:
        """One string per slot (prompt and completion so far) for ``render_mode="ansi"``."""
        if self.render_mode != "ansi":
            return None
        return tuple(self.core.render_text(slot) for slot in range(self.num_envs))

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
    for key in ("ref_logprob", "action_mask"):
        if key in slot_infos[0]:
            infos[key] = np.stack([np.asarray(info[key]) for info in slot_infos])
            infos["_" + key] = running.copy()
    if len(finished):
        infos["final_info"] = {}
        for key in ("completion_ids", "ref_logprobs"):
            infos["final_info"][key] = np.full(num_envs, None, dtype=object)
            infos["final_info"]["_" + key] = np.zeros(num_envs, dtype=bool)
    return infos
