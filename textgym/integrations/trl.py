"""Train TRL's ``GRPOTrainer`` on any textgym text environment, one turn or many (``pip install textgym[trl]``).

:class:`TextgymRollout` is a ``rollout_func`` for ``GRPOTrainer`` (TRL 1.16, pinned in ``constraints.txt``):
the trainer's own model plays one episode of the textgym vector env per prompt it is given
(:func:`textgym.integrations.episodes.play_episodes`: one KV cache slot per episode, the
environment's reference model and reward inside the env), and the rollout returns what TRL's
contract asks for::

    from trl import GRPOConfig, GRPOTrainer
    from textgym.integrations.trl import TextgymRollout, env_score, prompt_dataset
    from textgym.models import load_causal_lm, load_tokenizer

    trainer = GRPOTrainer(
        model=load_causal_lm("textgym/tictactoe-lm"), processing_class=load_tokenizer("textgym/tictactoe-lm"),
        reward_funcs=[env_score], train_dataset=prompt_dataset("tictactoe", repeat=64),
        args=GRPOConfig(output_dir="out", num_generations=8, per_device_train_batch_size=8, disable_dropout=True),
        rollout_func=TextgymRollout("textgym/TextTicTacToe-v0"))
    trainer.train()

What TRL receives, one entry per completion:

- ``prompt_ids``: the context the episode started from, as the environment encoded it (the prompt,
  and a conversation's opening).
- ``completion_ids``: every token after it, exactly as sampled and as the environment wrote them
  (never decoded and re-encoded between turns).
- ``logprobs``: ``log pi(a_t | s_t)`` of each agent token under the distribution it was sampled from
  (``softmax(logits / temperature)`` over the env's action space, within its action mask); 0 on the
  environment's tokens. TRL 1.16 uses them for its importance-sampling corrections only.
- ``env_mask``: 1 on the agent's tokens, 0 on the environment's (an opponent's move, a tool's
  output): TRL multiplies its loss mask by it, so the environment's tokens never enter the loss.

and, as extra fields that TRL hands to every reward function as keyword arguments:

- ``score`` (float): the environment's ``info["score"]``: the reward function's score, plus the
  turn rewards in a conversation (win 1, draw 0, loss -1 in ``TextTicTacToe-v0``).
- ``turn_rewards`` (list of floats, one per completion token): each turn's reward at its last token.
- ``ref_logprobs`` (list of floats, one per completion token): the environment's
  ``log pi_ref(a_t | s_t)``, 0 on the environment's tokens.
- ``kl`` (float): ``sum_t log pi(a_t | s_t) - log pi_ref(a_t | s_t)`` over the agent's tokens, the
  sampled estimate of ``KL(pi || pi_ref)``, both at the trainer's ``temperature``.
- ``env_return`` (float): the environment's return, the sum of its step rewards:
  ``score + kl_coef * sum(ref_logprobs)``.
- ``objective`` (float): ``env_return - kl_coef * sum(logprobs)`` = ``score - kl_coef * kl``: the
  RLHF objective with the environment's KL shaping and the agent's half added (the env's module
  :mod:`textgym.envs.text_generation` explains the split).

:func:`env_score` and :func:`env_objective` are reward functions that read them.

The KL is counted once. Either TRL's term (``GRPOConfig(beta=...)``, TRL's own reference forward
pass over each completion, with the env built with ``kl_coef=0``: the default), or the environment's
(``TextgymRollout(..., kl_coef=beta)`` with ``GRPOConfig(beta=0.0)`` and :func:`env_objective`
among the reward functions: the reference log-probs the environment computed while the episode ran,
with its KV cache, and no second reference pass). Both on raises ``ValueError``; ``kl_coef > 0``
without :func:`env_objective` warns (the env's KL would reach no reward). TRL 1.16 cannot take
precomputed reference log-probs for its own ``beta`` term: with ``beta > 0`` it always runs its
reference model (``ref_per_token_logps`` is computed inside the trainer, and a rollout's extra fields
reach only the reward functions); so the environment's reference reaches TRL through the reward.

Temperature: the rollout samples at the trainer's ``temperature`` and reports the log-probs of that
distribution, as TRL computes them, and it makes the environment with the same ``temperature``, so the
environment's reference log-probs (and ``kl``) are at it too, as TRL scores its own reference.
Sampling settings the rollout cannot honour (``top_p``, ``top_k``, ``min_p``, ``repetition_penalty``,
``generation_kwargs``, vLLM) are refused.

``environment_factory`` (TRL's tool-calling environments) is not provided: its moves are tool calls
that TRL parses from the completion text with the model's chat template and response schema
(transformers >= 5.2), and its tool results are rendered through the chat template, so it needs a
chat model trained to call tools. textgym's environments (``TextTicTacToe-v0`` included) take token
ids as actions with no chat template, which is what ``rollout_func`` carries unchanged; the kit's
models have no chat template to test a tool-calling variant with.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import gymnasium as gym
import torch
import trl  # noqa: F401  (this module is the TRL integration: ``pip install textgym[trl]``)
from datasets import Dataset

from textgym.envs.text_generation_vector import TextGenerationVectorEnv
from textgym.integrations.episodes import Episode, play_episodes
from textgym.models import model_device
from textgym.tasks import get_task


def env_score(completions: list, score: list[float], **kwargs: Any) -> list[float]:
    """A TRL reward function: the environment's score of each completion (``score`` of :class:`TextgymRollout`).

    >>> env_score(["a", "b"], score=[1.0, -1.0], turn_rewards=[[1.0], [-1.0]])
    [1.0, -1.0]
    """
    return [float(value) for value in score]


def env_objective(completions: list, objective: list[float], **kwargs: Any) -> list[float]:
    """A TRL reward function: ``score - kl_coef * kl``, the environment's KL in the reward (:class:`TextgymRollout`).

    >>> env_objective(["a"], objective=[0.75])
    [0.75]
    """
    return [float(value) for value in objective]


def prompt_dataset(task: str = "sentiment", split: str = "train", repeat: int = 1) -> Dataset:
    """A TRL ``train_dataset``: the embedded task's prompts (``prompt`` column), each ``repeat`` times.

    A game's task has one empty prompt (the rules open each game); ``repeat`` sets how many games
    an epoch plays.

    >>> len(prompt_dataset("tictactoe", repeat=16)), prompt_dataset("tictactoe")[0]
    (16, {'prompt': ''})
    """
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be a whole number >= 1, got {repeat!r}")
    return Dataset.from_dict({"prompt": list(get_task(task).prompts(split)) * repeat})


class TextgymRollout:
    """A ``rollout_func`` for TRL's ``GRPOTrainer`` that plays a textgym text environment (module docstring).

    Args:
        env_id: A registered textgym text environment (``textgym/Sentiment-v0``, ``textgym/TextTicTacToe-v0``, ...).
        kl_coef: The environment's KL shaping coefficient; 0 (default) leaves the KL to TRL's ``beta``.
            With ``kl_coef > 0``, set ``beta=0.0`` and add :func:`env_objective` to the reward functions.
        seed: Seeds the environment's first reset and the sampler (None: the trainer's ``args.seed``),
            offset by the process index under accelerate.
        **env_kwargs: Keyword arguments of the environment (``model`` for the reference, ``max_new_tokens``,
            a tic-tac-toe ``opponent``, ...).

    Calling it with ``(prompts, trainer)`` returns the fields of the module docstring: one
    episode per prompt, in order (TRL repeats each prompt ``num_generations`` times itself).
    """

    def __init__(self, env_id: str = "textgym/Sentiment-v0", *, kl_coef: float = 0.0, seed: int | None = None,
                 **env_kwargs: Any) -> None:
        if env_id not in gym.registry:
            raise ValueError(f"unknown environment id {env_id!r}; use a registered textgym text env, e.g. "
                             "'textgym/Sentiment-v0' (import textgym first)")
        if isinstance(kl_coef, bool) or not isinstance(kl_coef, int | float) or not math.isfinite(kl_coef) \
                or kl_coef < 0:
            raise ValueError(f"kl_coef must be a finite number >= 0, got {kl_coef!r}")
        self.env_id, self.kl_coef, self.seed, self.env_kwargs = env_id, float(kl_coef), seed, env_kwargs
        self._envs: dict[tuple[int, float], TextGenerationVectorEnv] = {}
        self._generator: torch.Generator | None = None
        self._checked: Any = None

    def __call__(self, prompts: list, trainer: Any) -> dict[str, list]:
        """Play one episode per prompt with ``trainer``'s model; TRL's fields (module docstring)."""
        envs, fresh = self._envs_for(len(prompts), float(trainer.args.temperature))
        if self._checked is not trainer:
            self._check(trainer, envs, prompts)
            self._checked = trainer
        model = trainer.accelerator.unwrap_model(trainer.model)
        seed = (trainer.args.seed if self.seed is None else self.seed) + trainer.accelerator.process_index
        if self._generator is None:
            self._generator = torch.Generator(device=model_device(model)).manual_seed(seed)
        episodes = play_episodes(envs, model, prompts, seed=seed if fresh else None,
                                 temperature=float(trainer.args.temperature), generator=self._generator)
        return self.fields(episodes)

    def fields(self, episodes: list[Episode]) -> dict[str, list]:
        """TRL's fields of the module docstring, from played episodes."""
        kl, objective = [], []
        for episode in episodes:
            agent = [a == 1 for a in episode.agent_mask]
            logprob = sum(lp for lp, mine in zip(episode.logprobs, agent, strict=True) if mine)
            kl.append(logprob - sum(r for r, mine in zip(episode.ref_logprobs, agent, strict=True) if mine))
            objective.append(sum(episode.rewards) - self.kl_coef * logprob)
        return {
            "prompt_ids": [e.prompt_ids for e in episodes], "completion_ids": [e.completion_ids for e in episodes],
            "logprobs": [e.logprobs for e in episodes], "env_mask": [e.agent_mask for e in episodes],
            "score": [e.score for e in episodes], "turn_rewards": [e.turn_rewards for e in episodes],
            "ref_logprobs": [e.ref_logprobs for e in episodes], "kl": kl,
            "env_return": [sum(e.rewards) for e in episodes], "objective": objective,
        }

    def _envs_for(self, count: int, temperature: float) -> tuple[TextGenerationVectorEnv, bool]:
        """The vector env with ``count`` slots, scoring its reference at ``temperature`` (new: then True)."""
        if (count, temperature) in self._envs:
            return self._envs[count, temperature], False
        kwargs = {"temperature": temperature, **self.env_kwargs}
        if kwargs["temperature"] != temperature:
            raise ValueError(f"the environment's temperature={kwargs['temperature']} is not the trainer's "
                             f"{temperature}: the KL would compare different temperatures; leave temperature out of "
                             "the environment's arguments (the rollout takes GRPOConfig.temperature)")
        not_text = (f"{self.env_id} is not a textgym text environment; TextgymRollout plays text envs whose actions "
                    "are token ids")
        try:
            envs = gym.make_vec(self.env_id, num_envs=count, vectorization_mode="vector_entry_point", **kwargs)
        except TypeError as error:  # a toy env takes no temperature
            raise (TypeError(not_text) if "temperature" in str(error) else error) from error
        if not isinstance(envs, TextGenerationVectorEnv):
            raise TypeError(f"{not_text} (its vector form is {type(envs).__name__})")
        envs.kl_coef = self.kl_coef
        self._envs[count, temperature] = envs
        return envs, True

    def _check(self, trainer: Any, envs: TextGenerationVectorEnv, prompts: list) -> None:
        """Refuse, with what to change, settings under which the rollout would not give TRL what it assumes."""
        args = trainer.args
        if not all(isinstance(p, str) for p in prompts):
            raise TypeError("TextgymRollout takes text prompts (a 'prompt' column of strings); conversational "
                            "prompts (lists of messages) are not textgym env prompts: apply the chat template first")
        unsupported = {"use_vllm": args.use_vllm, "top_p": args.top_p != 1.0, "top_k": args.top_k not in (0, None),
                       "min_p": args.min_p is not None, "repetition_penalty": args.repetition_penalty != 1.0,
                       "generation_kwargs": bool(args.generation_kwargs)}
        wrong = [name for name, on in unsupported.items() if on]
        if wrong:
            raise ValueError(f"TextgymRollout samples from softmax(logits / temperature) with the trainer's own model; "
                             f"it cannot honour GRPOConfig {', '.join(wrong)}: leave them at their defaults")
        if self.kl_coef > 0 and args.beta != 0:
            raise ValueError(f"the KL would be counted twice: the env's kl_coef={self.kl_coef} and GRPOConfig "
                             f"beta={args.beta}; keep one: TextgymRollout(kl_coef=0) for TRL's term, or beta=0.0 "
                             "with env_objective among the reward functions for the env's")
        if self.kl_coef > 0 and env_objective not in list(trainer.reward_funcs):
            warnings.warn(f"kl_coef={self.kl_coef} reaches no reward: the env's KL enters GRPO through the "
                          "env_objective reward function; add it to reward_funcs (in place of env_score)",
                          UserWarning, stacklevel=3)
        if args.mask_truncated_completions and envs.turns is not None:
            raise ValueError(f"mask_truncated_completions=True masks every completion that does not end in EOS, and "
                             f"{self.env_id}'s episodes end when the game does, not on EOS: set it to False")
        tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
        if tokenizer.get_vocab() != envs.tokenizer.get_vocab():
            raise ValueError(f"the trainer's processing_class is not {self.env_id}'s tokenizer, so TRL would decode "
                             "the env's token ids into other words: pass the env's tokenizer (or build the env "
                             "with model= and tokenizer= of the trained model)")
