r"""Multi-turn text environments: the environment writes into the context between the agent's turns.

A multi-turn environment is the text-generation environment with a :class:`Turns` object: the
rules of the conversation. The agent writes tokens; when its turn ends (the rules' end-of-turn
token, EOS, or ``max_turn_tokens`` tokens), the environment decodes the turn, asks the rules for a
:class:`Reply` (an opponent's move, a tool's output, a user's answer), and writes the reply's tokens
into the context. Those tokens are state, never actions: they earn no KL term and no policy
gradient, the reference model scores none of them, and the reference's and the sampler's KV caches
ingest them incrementally (:meth:`textgym.models.kv.SlotKVCache.extend`), never re-encoding the
context. ``info`` says whose each token is (``agent_mask``) and where each turn's reward was earned
(``turn_rewards``).

Writing a multi-turn environment is writing its rules (a guessing game, in full)::

    class Guess(Turns):
        end_of_turn = "\n"

        def begin(self, prompt, rng):
            return {"secret": int(rng.integers(1, 10)), "tries": 0}, Reply("Guess my number (1-9):\n")

        def reply(self, state, text):
            state["tries"] += 1
            guess = text.strip()
            if guess == str(state["secret"]):
                return Reply("Right!", reward=1.0, done=True)
            if state["tries"] == 3:
                return Reply("No more tries.", reward=-1.0, done=True)
            return Reply("Higher.\n" if guess.isdigit() and int(guess) < state["secret"] else "Lower.\n")

and passing ``turns=Guess()`` to :class:`textgym.envs.TextGenerationEnv` (or its vector form).
``textgym/TextTicTacToe-v0`` (:mod:`textgym.envs.text_tictactoe`) is the worked example.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Reply:
    """The environment's turn."""

    text: str = ""
    """What the environment writes into the context (tokenised, appended, never an action)."""
    reward: float = 0.0
    """Reward for the agent's turn that just ended (given at that turn's last token)."""
    done: bool = False
    """The episode is over (``terminated``); ``text`` is then not written."""
    allowed: list[str] | None = None
    """The tokens (as text, one token each) the agent may write during its next turn; None: any.

    The environment turns them into ``info["action_mask"]`` with its own tokenizer."""


class Turns:
    """The rules of a multi-turn environment; subclass and implement :meth:`begin` and :meth:`reply`.

    Attributes:
        end_of_turn: The text of the token that ends the agent's turn (it must be one token of the
            tokenizer), or None: turns end on EOS or after ``max_turn_tokens`` tokens only. EOS also
            ends the agent's turn, and then the episode, whatever the reply says.
        max_turn_tokens: The longest agent turn; the turn ends after this many tokens.
    """

    end_of_turn: str | None = None
    max_turn_tokens: int = 32

    def begin(self, prompt: str, rng: np.random.Generator) -> tuple[Any, Reply]:
        """Start an episode from ``prompt``: the episode's state, and an opening written after the prompt.

        ``rng`` is the environment's generator for this episode (the same one every call of this
        episode); every random choice of the rules must come from it.
        """
        raise NotImplementedError

    def reply(self, state: Any, text: str) -> Reply:
        """The environment's answer to the agent's turn ``text`` (decoded, without its end-of-turn token)."""
        raise NotImplementedError

    def symmetries(self, tokenizer: Any) -> Callable[[np.ndarray], list[tuple[np.ndarray, np.ndarray]]] | None:
        """The game's symmetries as token maps, or None (the default: none).

        Rules whose games have symmetries (a board's rotations and reflections) return a function
        from an episode's token ids (L,) to its equivalent episodes: one ``(ids, action_map)`` per
        symmetry other than the identity, where ``ids`` (L,) is the same episode seen through the
        symmetry (same length, the agent's tokens at the same places, the same rewards) and
        ``action_map`` (A,) sends each action token to its image (padding maps to itself). An agent
        may train on these copies too (``LMConfig(symmetries=True)``): the data a symmetric network
        gets for free.
        """
        return None
