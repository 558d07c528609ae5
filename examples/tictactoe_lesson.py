"""Tic-tac-toe, the RL vocabulary in one game: a random player, a perfect player, and PPO learning.

The agent is a player, the environment the board plus an opponent, an action a cell, the reward the
result. PPO trains against a mix of a random and a perfect (minimax) opponent; after every few
thousand steps the exact evaluator scores its greedy policy against both. Prints the scores of all
three players, draws the learning curve, and replays one PPO game against minimax.

Run: ``python examples/tictactoe_lesson.py`` (about half a minute). Writes ``tictactoe_lesson.png``.
"""

from __future__ import annotations

import argparse
import dataclasses

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import textgym  # noqa: E402, F401
from agents.base import RandomAgent  # noqa: E402
from agents.ppo import PPO  # noqa: E402
from agents.recipes import TICTACTOE_ENVS, TICTACTOE_PPO, tictactoe_policy  # noqa: E402
from textgym.envs.tictactoe import TicTacToeEnv, optimal_moves  # noqa: E402
from textgym.eval.tictactoe import exact_outcomes  # noqa: E402


def scores(policy) -> dict[str, float]:
    """Exact win rate vs random and non-loss rate vs minimax, both seats averaged."""
    return {"win vs random": exact_outcomes(policy, "random")["mean"]["win"],
            "no loss vs minimax": 1 - exact_outcomes(policy, "minimax")["mean"]["loss"]}


def perfect(obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The minimax player: its first optimal move."""
    return np.array([optimal_moves(tuple(int(x) for x in o[:9] - o[9:]))[0] for o in obs])


def main() -> None:
    """Score the baselines, train PPO with exact checkpoints, plot, replay a game."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=80_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="tictactoe_lesson.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    random_agent = RandomAgent(9, seed=0)
    random_policy = lambda obs, mask: random_agent.act(obs, action_mask=mask)  # noqa: E731  (one draw per position)
    agent = PPO(tictactoe_policy(args.seed), dataclasses.replace(TICTACTOE_PPO, seed=args.seed))
    greedy = lambda obs, mask: agent.act(obs, action_mask=mask, deterministic=True)  # noqa: E731
    for name, policy in (("random policy", random_policy), ("minimax", perfect), ("PPO, untrained", greedy)):
        print(f"{name:>16}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores(policy).items()))
    envs = gym.make_vec("textgym/TicTacToe-v0", num_envs=TICTACTOE_ENVS, vectorization_mode="vector_entry_point",
                        opponent="mix")
    curve = []

    def checkpoint(row: dict) -> bool:
        if row["global_step"] % 4096 < TICTACTOE_PPO.num_steps * TICTACTOE_ENVS:
            curve.append((row["global_step"], scores(greedy)))
        return False

    agent.learn(envs, args.steps, checkpoint)
    print(f"{'PPO, trained':>16}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores(greedy).items())
          + f"  ({agent.global_step} steps)")
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("win vs random", "no loss vs minimax"):
        ax.plot([s for s, _ in curve], [c[key] for _, c in curve], label=key)
    ax.axhline(0.95, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="environment steps", ylabel="exact rate", title="PPO against the mix opponent", ylim=(0, 1.02))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    env = TicTacToeEnv(opponent="minimax", first="agent", render_mode="ansi")
    obs, info = env.reset(seed=args.seed)
    terminated = False
    while not terminated:
        obs, _, terminated, _, info = env.step(int(greedy(obs[None], info["action_mask"][None])[0]))
    print(f"one game of PPO (X) against minimax, {info['result']}:\n{env.render()}\nwrote {args.out}")


if __name__ == "__main__":
    main()
