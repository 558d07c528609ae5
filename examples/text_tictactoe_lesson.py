"""The same game, two agents, one interface: PPO on an 18-float board, and a language model writing its moves.

``textgym/TicTacToe-v0`` gives an MLP the board as numbers; ``textgym/TextTicTacToe-v0`` gives a
language model the game's transcript (``board . . . / . X . / . . . move``), the model writes a cell
(one token), and the environment writes the opponent's move and the new board into the context.
Both learn with PPO through ``reset()`` / ``step()``, against the same mix opponent (random or
minimax per game), and both are scored exactly: every position (or, for the language model, every
game history) is asked once, then the game tree is averaged over the opponent's replies.

The language model starts as the kit's ``textgym/tictactoe-lm``, pretrained on transcripts of random
play: it writes legal moves, at random. Illegal cells are masked (``illegal="mask"``); the KL
penalty to the random-play reference is off (``kl_coef=0``), since staying near random play is not
the goal here. Its recipe (``agents.recipes.TEXT_TICTACTOE_LM``) trains on each game's 7 rotated and
reflected copies too: the MLP gets the same from averaging its policy over the board's symmetries.

Run: ``python examples/text_tictactoe_lesson.py`` (about 5 minutes on 2 CPU cores). Writes
``text_tictactoe_lesson.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import textgym  # noqa: E402, F401
from agents.lm_ppo import LMPPO  # noqa: E402
from agents.ppo import PPO  # noqa: E402
from agents.recipes import (  # noqa: E402
    TEXT_TICTACTOE_ENVS,
    TEXT_TICTACTOE_LM,
    TEXT_TICTACTOE_RULES,
    TICTACTOE_ENVS,
    TICTACTOE_PPO,
    tictactoe_policy,
)
from textgym.eval.tictactoe import exact_outcomes, exact_outcomes_with_history, text_policy  # noqa: E402
from textgym.models import load_causal_lm, load_tokenizer  # noqa: E402


def summary(outcomes) -> dict[str, float]:
    """Win rate against random play and loss rate against minimax, both seats averaged."""
    return {"win vs random": outcomes("random")["mean"]["win"], "loss vs minimax": outcomes("minimax")["mean"]["loss"]}


def train(agent, envs, steps: int, every: int, score) -> list[tuple[int, float, dict[str, float]]]:
    """``agent.learn`` in slices of ``every`` steps; the exact scores after each (step, seconds, scores)."""
    curve, seconds = [(0, 0.0, score())], 0.0
    while agent.global_step < steps:
        began = time.perf_counter()
        agent.learn(envs, min(steps, agent.global_step + every))
        seconds += time.perf_counter() - began
        curve.append((agent.global_step, seconds, score()))
    return curve


def main() -> None:
    """Train both agents, print their exact scores, plot the learning curves."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=65_536, help="environment steps of each agent")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="text_tictactoe_lesson.png")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    every = max(args.steps // 8, 512)

    mlp = PPO(tictactoe_policy(args.seed), dataclasses.replace(TICTACTOE_PPO, seed=args.seed))
    board_envs = gym.make_vec("textgym/TicTacToe-v0", num_envs=TICTACTOE_ENVS, vectorization_mode="vector_entry_point",
                              opponent="mix")
    greedy = lambda obs, mask: mlp.act(obs, action_mask=mask, deterministic=True)  # noqa: E731
    mlp_curve = train(mlp, board_envs, args.steps, every, lambda: summary(lambda o: exact_outcomes(greedy, o)))

    tokenizer = load_tokenizer("textgym/tictactoe-lm")
    lm = LMPPO(load_causal_lm("textgym/tictactoe-lm"), tokenizer,
               dataclasses.replace(TEXT_TICTACTOE_LM, seed=args.seed))
    text_envs = gym.make_vec("textgym/TextTicTacToe-v0", num_envs=TEXT_TICTACTOE_ENVS,
                             vectorization_mode="vector_entry_point", **TEXT_TICTACTOE_RULES)
    writes = lambda o: exact_outcomes_with_history(text_policy(lm.model, tokenizer, legal_only=True), o)  # noqa: E731
    lm_curve = train(lm, text_envs, args.steps, every, lambda: summary(writes))

    print(f"{'agent':<28} {'steps':>7} {'seconds':>8} {'win vs random':>14} {'loss vs minimax':>16}")
    for name, curve in (("MLP PPO, board as numbers", mlp_curve), ("LM PPO, board as text", lm_curve)):
        for label, (step, seconds, score) in (("start", curve[0]), ("end", curve[-1])):
            print(f"{name + ', ' + label:<28} {step:>7} {seconds:>8.1f} {score['win vs random']:>14.3f} "
                  f"{score['loss vs minimax']:>16.3f}")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, curve, style in (("MLP", mlp_curve, "-"), ("LM", lm_curve, "--")):
        for key, color in (("win vs random", "tab:green"), ("loss vs minimax", "tab:red")):
            ax.plot([s for s, _, _ in curve], [c[key] for _, _, c in curve], style, color=color, label=f"{name}: {key}")
    ax.set(xlabel="environment steps", ylabel="exact rate", ylim=(0, 1.02),
           title="PPO on tic-tac-toe: the board as numbers vs as text")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
