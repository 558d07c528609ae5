"""Tic-tac-toe in text: a language model plays by writing its moves (``textgym/TextTicTacToe-v0``).

The rules are :class:`textgym.envs.text_tictactoe.TicTacToeTurns`; the reference model and the
policy's start is the kit's ``textgym/tictactoe-lm``, a small language model pretrained on
transcripts of random play (``python -m textgym.models.build``): it knows the transcripts' form
and plays legal moves at random, and reinforcement learning teaches it to win. No reward function:
the score is the game's result (win 1, draw 0, loss -1).
"""

from __future__ import annotations

from textgym.tasks import Task

MODEL = "textgym/tictactoe-lm"


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


TASK = Task("tictactoe", lambda split: [""], None, max_new_tokens=80, max_context=96, model=model, turns=turns,
            demonstrations=transcripts)
