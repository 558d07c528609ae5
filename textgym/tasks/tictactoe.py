"""Tic-tac-toe in text: a language model plays by writing its moves (``textgym/TextTicTacToe-v0``).

The rules are :class:`textgym.envs.text_tictactoe.TicTacToeTurns`; the reference model and the
policy's start is the kit's ``textgym/tictactoe-lm``, a small language model pretrained on
transcripts of random play (``python -m textgym.tasks.build``): it knows the transcripts' form
and plays legal moves at random, and reinforcement learning teaches it to win. No reward function:
the score is the game's result (win 1, draw 0, loss -1).

``gym.make("textgym/TextTicTacToe-v0", opponent="minimax", first="agent", illegal="mask")`` sets
the rules (:func:`make_env`); every other keyword is the text environment's (``model``,
``tokenizer``, ``kl_coef``, ...).
"""

from __future__ import annotations

import inspect
from typing import Any

from textgym.tasks.base import Task, env_arguments

MODEL = "textgym/tictactoe-lm"
#: The keywords of :func:`make_env` that are the rules' (:class:`TicTacToeTurns`), not the text environment's.
RULE_OPTIONS = ("opponent", "first", "illegal", "random_moves", "opening", "restart_share", "restarts")


def model():
    """The kit's tic-tac-toe language model and its word-level tokenizer."""
    from textgym.models import load_causal_lm, load_tokenizer

    return load_causal_lm(MODEL), load_tokenizer(MODEL)


def turns():
    """The rules: the mix opponent (random or minimax, 50/50), either side first, an illegal move loses."""
    from textgym.envs.text_tictactoe import TicTacToeTurns

    return TicTacToeTurns()


def transcripts() -> list[str]:
    """Games of random play, as the environment writes them (the kit LM's pretraining text)."""
    from textgym.envs.text_tictactoe import random_transcripts

    return random_transcripts(20_000)


def make_env(**kwargs: Any):
    """The entry point of ``gym.make("textgym/TextTicTacToe-v0", opponent=..., first=..., illegal=...)``.

    The rules' options (:class:`textgym.envs.text_tictactoe.TicTacToeTurns`: ``opponent``, ``first``,
    ``illegal``, ``random_moves``, ``opening``, ``restart_share``, ``restarts``) sit next to the text
    environment's own (``model``, ``kl_coef``, ...), or the rules come whole as ``turns=``. With
    ``random_moves`` the window grows by what an exploring start can write before the agent's first
    move; with ``restart_share``, to hold the longest restart (63 tokens of prompt) and the longest
    game after it (65): 128 positions, the kit model's. A game writes at most 78 tokens in all.
    """
    from textgym.envs.text_generation import TextGenerationEnv, check_arguments

    check_arguments("textgym/TextTicTacToe-v0", kwargs, [*inspect.signature(TextGenerationEnv).parameters,
                                                         *RULE_OPTIONS])
    _rules(kwargs)
    return TextGenerationEnv(**env_arguments(TASK, kwargs))


def make_vector_env(num_envs: int = 1, **kwargs: Any):
    """The vector form of :func:`make_env` (``gym.make_vec(..., vectorization_mode="vector_entry_point")``)."""
    from textgym.envs.text_generation_vector import TextGenerationVectorEnv

    _rules(kwargs)
    return TextGenerationVectorEnv(num_envs=num_envs, **env_arguments(TASK, kwargs))


def _rules(kwargs: dict[str, Any]) -> None:
    """Put the rules, and the window their openings need, into the environment's ``kwargs``."""
    from textgym.envs.text_tictactoe import GAME_TOKENS, TURN_TOKENS, TicTacToeTurns

    options = {name: kwargs.pop(name) for name in RULE_OPTIONS if name in kwargs}
    if "turns" in kwargs and options:
        raise ValueError(f"pass the rules' options ({', '.join(options)}) or turns=, not both: they are the rules' own")
    rules = kwargs.setdefault("turns", TicTacToeTurns(**options))
    if not isinstance(rules, TicTacToeTurns):
        return
    if rules.restart_share:  # the longest restart: the opponent's first turn, then 3 more turns and the agent's cells
        kwargs.setdefault("max_new_tokens", GAME_TOKENS)
        kwargs.setdefault("max_context", TURN_TOKENS + 3 * (TURN_TOKENS + 1) + GAME_TOKENS)
    elif rules.random_moves:  # each random move pair writes one agent cell and one opponent turn into the prompt
        kwargs.setdefault("max_context", TASK.max_context + (TURN_TOKENS + 1) * rules.random_moves)


TASK = Task("tictactoe", lambda split: [""], None, max_new_tokens=80, max_context=96,
            env_id="textgym/TextTicTacToe-v0", entry_points=(f"{__name__}:make_env", f"{__name__}:make_vector_env"),
            model=model, turns=turns, demonstrations=transcripts)
