"""A turn-level view of a text environment: one step is one whole turn of the agent.

Agentic trainers (and Gym-style text-env contracts such as ``Env.step(list[int])``) act a turn at
a time: the policy writes a whole answer or move, the environment answers. :class:`TurnLevel` gives
a token-level textgym environment that shape without changing a number: it steps the wrapped
environment with each token of the action in order, and observes the tokens the environment added
since (its reply), read from the context window. The token ids are exactly those given and
written: never decoded and re-encoded between turns. Rewards, KL terms, masks and every ``info`` key of
the token-level episode are kept, per token, in the turn's ``info``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from textgym.envs.text_generation import TextGenerationEnv


class TurnLevel(gym.Wrapper):
    """Steps a :class:`textgym.envs.TextGenerationEnv` one agent turn at a time.

    ## Description
    ``step(action)`` appends the action's tokens one by one (each a token-level step of the wrapped
    environment) and returns when they are all written. A turn ends where the token-level
    environment ends it: its rules' end-of-turn token, EOS, ``max_turn_tokens``, or the episode's
    end (one completion is one turn in a single-turn environment). An action may also stop short of
    the turn's end (the next action continues the same turn: ``info["turn_over"]`` is False).

    ## Action Space
    ``Sequence(Discrete(num_actions))``: the turn's token ids (a list or an integer array, at least
    one id), or a ``str``, tokenised once with the environment's tokenizer (no special tokens added).

    ## Observation Space
    ``Sequence(Discrete(num_actions))``: an int64 array of the tokens added to the context since the
    last action: after ``reset``, the whole starting context (the prompt, and a conversation's
    opening); after a turn, the environment's reply (empty when the turn is not over, the
    environment wrote nothing, or the episode ended).

    ## Rewards
    The sum of the token-level rewards of the action's tokens (the KL shaping of each, the turn's
    reward at its last token, the score at the episode's last); each is in ``info["action_rewards"]``.

    ## Starting State
    The wrapped environment's (``reset`` passes ``seed`` and ``options`` on).

    ## Episode End
    The wrapped environment's ``terminated`` and ``truncated``. An action with tokens left after its
    turn or the episode ended raises ``ValueError``, and the episode is over (call ``reset``), as
    after any error inside the token-level ``step``.

    ## Information
    After ``reset``: the wrapped environment's reset info (``prompt``, ``action_mask`` if any).
    After each step: ``action_ids`` (int64, the action's token ids as stepped), ``action_rewards``
    (float64, the token-level reward of each), ``action_ref_logprobs`` (float64, each token's
    ``log pi_ref``; only with ``ref_scoring="step"``), ``turn_over`` (bool: the environment ended the
    agent's turn or the episode), the last token-level step's ``action_mask`` (for the next turn) and
    ``reply`` (str) when the environment answered; on the episode's last step, every key of the
    wrapped environment's last step (``score``, ``completion``, ``completion_ids``,
    ``ref_logprobs``, ``reward_terms``, ``agent_mask``, ``turn_rewards``, ...).

    ## Arguments
    - ``env``: a textgym text environment, e.g. ``gymnasium.make("textgym/TextTicTacToe-v0")``.

    >>> import gymnasium as gym
    >>> from textgym.models.tiny import random_causal_lm, word_tokenizer
    >>> from textgym.rewards import KeywordReward
    >>> tok = word_tokenizer(["good", "bad", "movie"])
    >>> env = TurnLevel(gym.make("textgym/TextGeneration-v0", model=random_causal_lm(len(tok), 1, 16), tokenizer=tok,
    ...                          prompts=["movie"], reward_fn=KeywordReward(["good"]), max_context=8, max_new_tokens=2))
    >>> obs, info = env.reset(seed=0)
    >>> obs.tolist()
    [3]
    >>> obs, reward, terminated, truncated, info = env.step("good good")
    >>> info["action_ids"].tolist(), truncated, info["score"], info["turn_over"]
    ([1, 1], True, 2.0, True)

    ## Version History
    - v0: initial version.
    """

    def __init__(self, env: gym.Env) -> None:
        text_env = env.unwrapped
        if not isinstance(text_env, TextGenerationEnv):
            raise TypeError(f"TurnLevel wraps a textgym text environment (TextGenerationEnv), got "
                            f"{type(text_env).__name__}")
        if not isinstance(env.action_space, spaces.Discrete):
            raise TypeError(f"TurnLevel needs token ids as actions (a Discrete action space), got {env.action_space}")
        super().__init__(env)
        self._text_env = text_env
        tokens = spaces.Discrete(int(env.action_space.n))
        self.action_space = spaces.Sequence(tokens, stack=True)
        self.observation_space = spaces.Sequence(tokens, stack=True)
        self._length = 0  # tokens in the wrapped environment's context
        self._running = False

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode; the observation is the whole starting context."""
        obs, info = self.env.reset(seed=seed, options=options)
        context = _context(obs)
        self._length, self._running = len(context), True
        return context, info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Write one turn (see Description, Rewards and Information)."""
        if not self._running:
            raise RuntimeError("step() called with no episode running: call reset() first "
                               "(before the first step and after every episode end)")
        ids = self._token_ids(action)
        self._running = False  # until the turn is written: an error on the way ends the episode
        rewards, refs = [], []
        info: dict[str, Any] = {}
        terminated = truncated = turn_over = False
        for index, token in enumerate(ids):
            if turn_over:
                raise ValueError(f"the turn ended after {index} of the action's {len(ids)} tokens "
                                 f"({'the episode is over' if terminated or truncated else 'the environment replied'})"
                                 "; act one turn at a time (the episode is over: call reset())")
            obs, reward, terminated, truncated, info = self.env.step(int(token))
            rewards.append(float(reward))
            if "ref_logprob" in info:
                refs.append(info.pop("ref_logprob"))
            turn_over = terminated or truncated or "reply" in info
        context = _context(obs)
        added = context[self._length + len(ids):] if not (terminated or truncated) else np.zeros(0, np.int64)
        self._length, self._running = len(context), not (terminated or truncated)
        info.update(action_ids=ids, action_rewards=np.array(rewards), turn_over=bool(turn_over))
        if refs:
            info["action_ref_logprobs"] = np.array(refs)
        return added, float(sum(rewards)), bool(terminated), bool(truncated), info

    def _token_ids(self, action: Any) -> np.ndarray:
        """The action's token ids: a text is tokenised once, ids are checked as ids."""
        if isinstance(action, str):
            action = self._text_env.tokenizer(action, add_special_tokens=False)["input_ids"]
        ids = np.asarray(action)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise TypeError(f"an action is a turn: a 1-D sequence of integer token ids or a str, got {action!r:.80}")
        if ids.size == 0:
            raise ValueError("an action must hold at least one token (an empty text tokenises to none)")
        return ids.astype(np.int64)


def _context(obs: dict[str, np.ndarray]) -> np.ndarray:
    """The real tokens of a context window, oldest first."""
    return obs["input_ids"][obs["attention_mask"] == 1].astype(np.int64)
