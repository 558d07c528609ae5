"""A textgym text env as a SkyRL-gym ``BaseTextEnv``, for SkyRL's trainers.

SkyRL-gym (the ``skyrl-gym`` package) is text in, text out: ``init(prompt)`` takes the prompt as chat
messages and returns the first ones; ``step(action: str)`` takes the model's whole response for a turn
and returns the environment's reply as messages, the turn's reward and ``done``. SkyRL's generator
tokenises the messages with the policy's chat template itself, so token ids cannot cross this
contract: :class:`TextgymTextEnv` **tokenises each response once** with the env's own tokenizer (the
policy's, when both share a tokenizer, as they must for the KL to mean anything) and steps those ids
into the token-level env, never decoding and re-encoding anything in between; the ids it stepped come
back in ``metadata["token_ids"]``.

One ``step`` is one agent turn: its tokens are stepped until the env answers (``info["reply"]``: the
reply is the next observation, and tokens written past the end of the turn are dropped and counted in
``metadata["dropped_tokens"]``) or the episode ends. A response that ends without either ends its turn
where the sampler stopped: the env's end-of-turn token, or EOS in a single-turn env, is stepped
after it. In a multi-turn env with no end-of-turn token (turns of a fixed length), the turn stays open
and the observation is empty: the next response continues it.

The reward of a step is the sum of the env's rewards over the turn's tokens: the KL shaping
``kl_coef * log pi_ref`` of each token (zero with ``kl_coef=0``: leave the KL to the trainer, or
set it here and turn the trainer's off, never both), plus the turn's reward and, at the end, the score.
The env's own tokens (a reply, an opponent's move) are the observation, never part of the action, so
SkyRL's loss mask excludes them as it excludes every observation.

Register it with :func:`register` and make it with SkyRL-gym's ``make``::

    import skyrl_gym
    from textgym.integrations.skyrl import register
    register()
    env = skyrl_gym.make("textgym", env_config={"env_id": "textgym/Sentiment-v0"}, extras={"seed": 0})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import gymnasium as gym
from transformers import PreTrainedTokenizerBase

try:
    import skyrl_gym
    from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("textgym.integrations.skyrl needs SkyRL-gym: pip install 'textgym[skyrl]'") from err

__all__ = ["ENV_NAME", "TextgymTextEnv", "register"]

#: The id :func:`register` gives the adapter in SkyRL-gym's registry.
ENV_NAME = "textgym"


def register(name: str = ENV_NAME) -> None:
    """Register :class:`TextgymTextEnv` in SkyRL-gym's registry under ``name`` (once; again is a no-op)."""
    if name not in skyrl_gym.registry:
        skyrl_gym.register(id=name, entry_point="textgym.integrations.skyrl:TextgymTextEnv")


def _settings(env_config: Any, extras: Mapping[str, Any] | None) -> dict[str, Any]:
    """``env_config`` (a dict or an OmegaConf config) updated with the per-sample ``extras``."""
    settings = dict(env_config or {})
    settings.update({k: v for k, v in (extras or {}).items() if k in ("env_id", "env_kwargs", "seed")})
    unknown = sorted(set(settings) - {"env_id", "env_kwargs", "seed"})
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; TextgymTextEnv takes env_id, env_kwargs and seed")
    if not isinstance(settings.get("env_id"), str):
        raise ValueError("TextgymTextEnv needs env_config['env_id'], a registered textgym text env id "
                         "(e.g. 'textgym/Sentiment-v0')")
    return settings


class TextgymTextEnv(BaseTextEnv):
    """A textgym text env (any id with a tokenizer) behind SkyRL-gym's ``BaseTextEnv``.

    Args:
        env_config: ``env_id`` (a registered textgym text env), optional ``env_kwargs`` (of
            ``gymnasium.make``) and ``seed`` (of the episode's ``reset``).
        extras: SkyRL's per-sample extras; ``env_id``, ``env_kwargs`` and ``seed`` found there override
            ``env_config``'s, the rest is ignored.

    ``metadata`` of each step: ``token_ids`` (the ids stepped for this turn, an appended end-of-turn or
    EOS included), ``dropped_tokens`` (ids written after the env answered or the episode ended),
    ``ref_logprobs`` (``log pi_ref`` of each stepped id, where the env scores as it goes, its
    ``ref_scoring="step"``; empty with ``"episode"``), ``reply`` (the env's text, where it answered), and
    at the end ``score``, ``reward_terms``, ``completion`` (the env's ``info``) and
    ``completion_ref_logprobs`` (``log pi_ref`` of every completion token, in either scoring mode).
    """

    def __init__(self, env_config: Any = None, extras: Mapping[str, Any] | None = None):
        super().__init__()
        settings = _settings(env_config, extras)
        self.env = gym.make(settings["env_id"], **dict(settings.get("env_kwargs") or {}))
        tokenizer = getattr(self.env.unwrapped, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(f"{settings['env_id']} is not a text env (it has no tokenizer); SkyRL-gym envs take text")
        self.tokenizer: PreTrainedTokenizerBase = tokenizer
        self.seed = settings.get("seed")
        turns = getattr(self.env.unwrapped, "turns", None)
        end = None if turns is None else turns.end_of_turn
        self.end_id = self.tokenizer.eos_token_id if turns is None else (
            None if end is None else self.tokenizer(end, add_special_tokens=False)["input_ids"][0])
        self.done, self.turns, self.score, self.total_reward = True, 0, None, 0.0

    def init(self, prompt: list[dict[str, str]]) -> tuple[list[dict[str, str]], dict[str, Any]]:
        """Start an episode: the last message of ``prompt`` is the env's prompt (none: the env draws one).

        Returns the context the env built (the prompt and any opening the env wrote), decoded once, as
        one user message, and ``{"prompt": ...}``.
        """
        options = {"prompt": prompt[-1]["content"]} if prompt else None
        obs, info = self.env.reset(seed=self.seed, options=options)
        self.done, self.turns, self.score, self.total_reward = False, 0, None, 0.0
        ids = obs["input_ids"][obs["attention_mask"].astype(bool)]
        text = cast(str, self.tokenizer.decode(ids, skip_special_tokens=True))  # one sequence: one string
        return [{"role": "user", "content": text}], {"prompt": info.get("prompt", "")}

    def step(self, action: str) -> BaseTextEnvStepOutput:
        """Step one agent turn: ``action`` tokenised once, its ids stepped until the env answers or the end."""
        if self.done:
            raise RuntimeError("the episode is over (or init was never called): call init first")
        if not isinstance(action, str):
            raise TypeError(f"action must be the model's response text, got {type(action).__name__}")
        ids = self.tokenizer(action, add_special_tokens=False)["input_ids"]
        stepped: list[int] = []
        ref_logprobs: list[float] = []
        info: dict[str, Any] = {}
        reward = 0.0
        answered = over = False
        for token in ids:
            if answered or over:
                break
            info, r, over = self._step(token, stepped, ref_logprobs)
            reward += r
            answered = "reply" in info
        if not (answered or over) and self.end_id is not None:
            info, r, over = self._step(self.end_id, stepped, ref_logprobs)
            reward += r
            answered = "reply" in info
        self.turns += 1
        self.total_reward += reward
        self.done = over
        if over:
            self.score = info.get("score")
        metadata = {"token_ids": stepped, "dropped_tokens": ids[len(stepped):] if len(stepped) < len(ids) else [],
                    "ref_logprobs": ref_logprobs, "reply": info.get("reply", "")}
        metadata.update({k: info[k] for k in ("score", "reward_terms", "completion") if k in info})
        if over:
            metadata["completion_ref_logprobs"] = list(map(float, info["ref_logprobs"]))
        observations = [{"role": "user", "content": info["reply"]}] if answered and not over else []
        return BaseTextEnvStepOutput(observations=observations, reward=reward, done=over, metadata=metadata)

    def _step(self, token: int, stepped: list[int], ref_logprobs: list[float]) -> tuple[dict, float, bool]:
        """Step one token id; (info, reward, the episode is over)."""
        _, reward, terminated, truncated, info = self.env.step(int(token))
        stepped.append(int(token))
        if "ref_logprob" in info:  # scored as it goes (ref_scoring="step"); "episode": at the end only
            ref_logprobs.append(float(info["ref_logprob"]))
        return info, float(reward), bool(terminated or truncated)

    def get_metrics(self) -> dict[str, Any]:
        """The episode's ``turns``, ``return`` (the sum of rewards) and ``score`` (where it ended)."""
        metrics: dict[str, Any] = {"turns": self.turns, "return": self.total_reward}
        if self.score is not None:
            metrics["score"] = float(self.score)
        return metrics

    def close(self) -> None:
        """Close the textgym env."""
        self.env.close()
