"""Tuned configurations, measured by the benchmarks (``benchmarks/toy.py``)."""

from __future__ import annotations

import torch

from agents.config import LMConfig
from agents.ppo import MLPPolicy, PPOConfig
from agents.table_policy import LastTokenPolicy
from textgym.envs.tictactoe import SYMMETRIES
from textgym.models.bigram import bigram_table

#: PPO on ``textgym/TicTacToe-v0`` against the ``mix`` opponent, 64 envs.
TICTACTOE_PPO = PPOConfig(num_steps=16, num_minibatches=4, update_epochs=8, learning_rate=5e-3, gamma=1.0,
                          gae_lambda=0.95, ent_coef=0.02)
TICTACTOE_ENVS = 64


def tictactoe_policy(seed: int = 0, symmetric: bool = True) -> MLPPolicy:
    """The tic-tac-toe actor-critic, initialised from ``seed``: 128 x 128 tanh, averaged over the 8 board symmetries."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MLPPolicy(18, 9, (128, 128), SYMMETRIES if symmetric else None)


#: LM PPO on ``textgym/TextTicTacToe-v0`` (the mix opponent, ``illegal="mask"``, ``kl_coef=0``), 32 envs, from
#: the kit's ``textgym/tictactoe-lm``: a value loss that trains the trunk too, an entropy bonus, and every
#: episode's 7 symmetric copies (the MLP's symmetry averaging, as data), hence one epoch per update.
TEXT_TICTACTOE_LM = LMConfig(learning_rate=1e-3, batch_episodes=128, num_minibatches=4, update_epochs=1,
                             gae_lambda=0.95, ent_coef=0.02, value_trunk_grad=True, symmetries=True)
TEXT_TICTACTOE_ENVS = 32
#: ``TEXT_TICTACTOE_LM``'s environment (``gym.make_vec("textgym/TextTicTacToe-v0", **TEXT_TICTACTOE_RULES)``): the
#: mix opponent, occupied cells masked, no KL penalty (staying near random play is not the goal). Exploring starts
#: (``random_moves=2, opening="class"``) did not lower the losses over 3 seeds (``benchmarks/text_tictactoe.py``).
TEXT_TICTACTOE_RULES = {"opponent": "mix", "illegal": "mask", "kl_coef": 0.0, "ref_scoring": "episode"}
#: The share of games that begin at the greedy LM's mistakes against minimax, and on the lines that correct them
#: (``restart_share``; the training loop refreshes ``envs.turns.restarts`` with
#: :func:`textgym.eval.tictactoe.mistakes_with_history` at every evaluation).
TEXT_TICTACTOE_RESTART_SHARE = 0.5


#: PPO on ``textgym/TinyLanguage-v0`` (the KL coefficient is the env's), 32 envs.
TINY_LANGUAGE_PPO = PPOConfig(num_steps=16, num_minibatches=4, update_epochs=4, learning_rate=0.05, gamma=1.0,
                              ent_coef=0.0)
TINY_LANGUAGE_ENVS = 32


def tiny_language_policy(max_new_tokens: int = 12) -> LastTokenPolicy:
    """A last-token policy that starts as the tiny language's reference bigram."""
    return LastTokenPolicy(torch.log(torch.as_tensor(bigram_table())), max_new_tokens)
