"""Text generation as a Gymnasium environment: the context window is the state, a token the action.

A language model writes a completion one token at a time. The environment holds the context window
(prompt plus tokens so far), a frozen reference model that scores each action, and a reward function
that scores the finished completion. With ``kl_coef`` = beta, the reward of step t is

    r_t = beta * log pi_ref(a_t | s_t) + score * [t is the last step]

An agent that adds its own ``-beta * log pi(a_t | s_t)`` to each reward maximises
``score - beta * KL(pi || pi_ref)``, the RLHF objective, and ``step`` never needs the policy's
log-probabilities.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from textgym.envs.core import DEFAULT_MODEL, CoreProperties, Credit, GenerationCore, PromptOverflow, RefScoring
from textgym.envs.turns import Turns
from textgym.rewards.base import RewardFunction


def as_token_id(action: Any) -> int:
    """One integer token id from ``action`` (int, numpy integer, or a one-element integer array)."""
    array = np.asarray(action)
    if array.size != 1 or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"action must be one integer token id, got {action!r}")
    return int(array.reshape(()))


class TextGenerationEnv(CoreProperties, gym.Env):
    """Generate a completion for a prompt, one token per step.

    ## Description
    Each episode draws a prompt (or takes ``options["prompt"]``) and lets the agent append tokens
    until it emits EOS or reaches ``max_new_tokens``. A frozen reference LM inside the environment
    scores every action incrementally with its own KV cache; the reward function scores the finished
    completion (:mod:`textgym.envs.core` explains both reference-scoring modes).

    ## Action Space
    ``Discrete(num_actions)``: the id of the next token. ``num_actions`` is the tokenizer's size,
    which is the model's vocabulary unless the model pads it larger (Qwen2 has 151,936 logits for
    151,665 tokens): ids the tokenizer cannot decode are not actions, and the reference's
    log-probabilities are taken over the actions. With ``action_mask`` set, only tokens whose mask
    entry is 1 are allowed; others raise ``ValueError``.

    ## Observation Space
    ``Dict(input_ids=Box(0, num_actions - 1, (max_context,), int64),
    attention_mask=Box(0, 1, (max_context,), int64))``: the context window, left-padded with the
    tokenizer's pad id, ``attention_mask`` 1 on real tokens (a real EOS is never masked as padding).

    ## Rewards
    ``ref_scoring="step"``: ``kl_coef * log pi_ref(a_t | s_t)`` every step, plus the reward
    function's ``score`` on the last step. ``ref_scoring="episode"``: 0 until the last step, then
    ``score + kl_coef * sum_t log pi_ref(a_t | s_t)``. Both give the same return. In a
    conversation (``turns``), each turn's reward is paid at the step that ends the turn.

    Wrappers that change what the reward means: ``gymnasium.wrappers.TimeLimit`` with fewer steps
    than ``max_new_tokens`` ends episodes without the reward function's score (truncate with
    ``max_new_tokens`` instead); ``ClipReward`` and ``NormalizeReward`` act on every step's reward,
    so they clip or rescale each per-token KL term separately, not the episode's score.

    ## Starting State
    A prompt drawn uniformly with ``self.np_random`` from ``prompts``, or ``options["prompt"]``;
    in a conversation, followed by the rules' opening.
    An empty prompt starts from the BOS token. A prompt longer than ``max_context - max_new_tokens``
    tokens keeps its last tokens with a ``PromptTruncatedWarning`` (``prompt_overflow="truncate"``)
    or raises ``ValueError`` (``prompt_overflow="error"``).

    ## Episode End
    Terminated: the action is the EOS token (in a conversation also: the rules end it). Truncated:
    ``max_new_tokens`` tokens were generated (the environment's turns count), or the rules' reply
    does not fit in what is left. ``step`` after the end raises ``RuntimeError``; call ``reset``. So
    does ``step`` after a reward function raised: that episode is over.

    ## Information
    After ``reset``: ``prompt`` (str), and ``action_mask`` (int8 of length ``action_space.n``: the
    tokenizer's size, not a padded vocabulary's) if set.
    Every step: ``ref_logprob`` (float, ``log pi_ref(a_t | s_t)`` at ``temperature``, over the
    allowed actions where a mask is in force; step mode only) and ``action_mask`` if set. On the last
    step also: ``score`` (float, the reward function's score), ``prompt`` (str), ``completion``
    (str, the decoded completion without a final EOS), ``completion_ids`` (int64 array, every
    generated token including EOS), ``ref_logprobs`` (float64 array, ``log pi_ref`` of each generated
    token, as ``ref_logprob``) and ``reward_terms`` (a dict of floats that sums to the episode's
    return: the reward function's score under its name, or each of its terms for a reward with
    ``terms`` such as a ``WeightedSum``, and ``"kl_ref"`` = ``kl_coef * sum(ref_logprobs)``).
    In a conversation (``turns``) also: ``reply`` (str) on a step whose turn the environment answered;
    at the end ``agent_mask`` (int8 per completion token: 1 for the agent's tokens, 0 for the
    environment's, which have ``ref_logprobs`` 0), ``turn_rewards`` (float64 per completion token: each
    turn's reward at its last token), and ``reward_terms["turns"]``; ``completion`` is then the whole
    conversation after the prompt and ``score`` includes the turn rewards.
    With ``credit="token"`` also ``score_parts`` (float64 per completion token: where each part of the
    reward function's score was earned; it sums to ``score``).

    ## Arguments
    The environment takes explicit arguments and knows no task. The registered ids give every
    argument a default from their task (:mod:`textgym.tasks`), so
    ``gymnasium.make("textgym/TextGeneration-v0")`` runs offline on the embedded kit: the sentiment
    task; ``textgym/Helpfulness-v0``, ``textgym/Detox-v0``, ``textgym/Greeting-v0``,
    ``textgym/TinyLanguage-v0`` and ``textgym/TextTicTacToe-v0`` pick the others, as does
    ``gymnasium.make(..., task=name)`` with a name of :data:`textgym.tasks.TASKS` (``"sentiment"``,
    ``"helpfulness"``, ``"detox"``, ``"greeting"``, ``"tiny"``, ``"tictactoe"``). Built directly, it
    needs ``prompts``, ``reward_fn`` (or ``turns``), ``max_context`` and ``max_new_tokens``.

    - ``model``: the reference causal LM, or a name for :func:`textgym.models.load_causal_lm`
      (default: ``"textgym/tiny-lm"``).
    - ``tokenizer``: its tokenizer (loaded with the model when ``model`` is a name).
    - ``prompts``: a list of prompt strings or a ``datasets.Dataset`` (``prompt_column``).
    - ``reward_fn``: a :class:`textgym.rewards.RewardFunction`.
    - ``max_context``, ``max_new_tokens``, ``kl_coef``, ``ref_scoring``, ``prompt_overflow``,
      ``prompt_column``, ``action_mask``, ``turns``, ``credit``: see :class:`textgym.envs.core.GenerationCore`.
      ``kl_coef`` is also a property: the one value the environment and the agents use (an
      adaptive KL controller sets it). ``reference``, ``reward_fn``, ``prompts``, ``max_context``,
      ``max_new_tokens``, ``tokenizer``, ``turns`` and ``temperature`` are read-only properties.
    - ``temperature``: the sampling temperature of the policy trained here (default 1): the
      reference scores ``log softmax(logits / temperature)``, so the KL shaping is the KL of the
      distribution sampled at that temperature (the agents of ``agents/`` refuse an environment whose
      temperature is not theirs). A policy's top-k or top-p is its own: the reference is not cut
      (:mod:`textgym.envs.core`).
    - ``render_mode``: None or ``"ansi"`` (the prompt and completion so far, as text).

    >>> from textgym.models.tiny import random_causal_lm, word_tokenizer
    >>> from textgym.rewards import KeywordReward
    >>> tok = word_tokenizer(["good", "bad", "movie"])
    >>> env = TextGenerationEnv(random_causal_lm(len(tok), 1, 16), tok, ["movie"],
    ...                         KeywordReward(["good"]), max_context=8, max_new_tokens=2)
    >>> obs, info = env.reset(seed=0)
    >>> obs["input_ids"].tolist(), info["prompt"]
    ([0, 0, 0, 0, 0, 0, 0, 3], 'movie')
    >>> _ = env.step(1)
    >>> obs, reward, terminated, truncated, info = env.step(1)
    >>> truncated, info["completion"], info["score"]
    (True, 'good good', 2.0)

    ## Version History
    - v0: initial version. Later in v0: ``temperature`` (default 1: unchanged); under an action mask
      (``action_mask``, or a conversation's allowed moves such as ``textgym/TextTicTacToe-v0`` with
      ``illegal="mask"``) the reference's log-probabilities are renormalised over the allowed actions,
      as the masked policy's are (they were over every action: a policy equal to the reference paid a KL).
      The ``task`` keyword is the registered ids' (:func:`textgym.tasks.make_env`): built directly, the
      environment takes explicit arguments (``prompts``, ``reward_fn``, ``max_context``, ``max_new_tokens``).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self, model: PreTrainedModel | str = DEFAULT_MODEL, tokenizer: PreTrainedTokenizerBase | None = None,
        prompts: Any = None, reward_fn: RewardFunction | None = None, *, max_context: int, max_new_tokens: int,
        kl_coef: float = 0.05,
        ref_scoring: RefScoring = "step",
        prompt_overflow: PromptOverflow = "truncate", prompt_column: str = "prompt",
        action_mask: np.ndarray | None = None, turns: Turns | None = None, render_mode: str | None = None,
        credit: Credit = "end", temperature: float = 1.0,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.core = GenerationCore(
            1, model, tokenizer, prompts, reward_fn, max_context=max_context, max_new_tokens=max_new_tokens,
            kl_coef=kl_coef, ref_scoring=ref_scoring, prompt_overflow=prompt_overflow,
            prompt_column=prompt_column, action_mask=action_mask, turns=turns, credit=credit, temperature=temperature,
        )
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(self.core.num_actions)
        self.observation_space = self.core.single_observation_space
        self._running = False

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start an episode with a new prompt (see Starting State)."""
        super().reset(seed=seed)
        prompt = self.core.choose_prompt(self.np_random, options)
        info = self.core.start([0], [prompt], [self.np_random])[0]
        self._running = True
        return self._observation(), info

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        """Append one token (see Rewards, Episode End and Information)."""
        if not self._running:
            raise RuntimeError("step() called with no episode running: call reset() first "
                               "(before the first step and after every episode end)")
        actions = np.array([as_token_id(action)], np.int64)
        self.core.check_actions(actions)
        self._running = False  # until the step succeeds: an error inside it ends the episode
        rewards, terminated, truncated, infos = self.core.step(actions)
        self._running = not (terminated[0] or truncated[0])
        return self._observation(), float(rewards[0]), bool(terminated[0]), bool(truncated[0]), infos[0]

    def render(self) -> str | None:
        """The prompt and completion so far, for ``render_mode="ansi"``."""
        return self.core.render_text(0) if self.render_mode == "ansi" else None

    def _observation(self) -> dict[str, np.ndarray]:
        return {"input_ids": self.core.input_ids[0].copy(), "attention_mask": self.core.attention_mask[0].copy()}


def check_arguments(owner: str, kwargs: dict[str, Any], known: Iterable[str]) -> None:
    """Refuse a keyword ``owner`` does not take, in one line that names it and the closest known one.

    Raises:
        ValueError: For an unknown keyword (not the TypeError Python would raise: ``gym.make`` re-raises a
            TypeError with the repr of every argument, a model's whole module tree).
    """
    known = list(known)
    unknown = [name for name in kwargs if name not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{owner} takes no argument {unknown[0]!r}{hint}; it takes {', '.join(known)}")


def make_env(**kwargs: Any) -> TextGenerationEnv:
    """The entry point of ``gym.make`` for the text envs: :class:`TextGenerationEnv`, unknown keywords named.

    >>> make_env(modle="textgym/tiny-lm")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: TextGenerationEnv takes no argument 'modle' (did you mean 'model'?); it takes model, tokenizer, ...
    """
    check_arguments("TextGenerationEnv", kwargs, list(inspect.signature(TextGenerationEnv).parameters))
    return TextGenerationEnv(**kwargs)
