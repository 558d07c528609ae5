"""Tic-tac-toe benchmarks: environment speed vs PettingZoo, learning speed vs stable-baselines3.

Part 1, games/s with uniformly random legal moves (the same move-picking code for every env):
textgym's single env and its batched numpy form vs PettingZoo's ``tictactoe_v3``.

Part 2, learning: textgym PPO (``agents.recipes``) vs sb3-contrib's MaskablePPO (the SB3 PPO that
honours action masks) with the same hyperparameters, both against the ``mix`` opponent, for each
seed: environment steps and training wall time (evaluation excluded) until the exact evaluator
shows >= 95% wins vs random and no loss vs minimax, checked every ``eval_every`` steps.

Writes ``benchmarks/results/toy.json``. Run: ``python benchmarks/toy.py`` (``--quick`` for a smoke
run). Needs the ``bench`` extra (PettingZoo).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import textgym  # noqa: F401
from agents.ppo import PPO
from agents.recipes import TICTACTOE_ENVS, TICTACTOE_PPO, tictactoe_policy
from textgym.envs.tictactoe import TicTacToeEnv
from textgym.eval.tictactoe import exact_outcomes


def pick(mask: np.ndarray, u: float) -> int:
    """A uniformly random legal move, the same code for every environment."""
    legal = np.flatnonzero(mask)
    return int(legal[int(u * len(legal))])


def games_pettingzoo(seconds: float) -> float:
    """Games/s of PettingZoo's tictactoe_v3, both players random."""
    from pettingzoo.classic import tictactoe_v3

    env, rng, games = tictactoe_v3.env(), np.random.default_rng(0), 0
    env.reset(seed=0)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.reset()
        for _ in env.agent_iter():
            obs, _, terminated, truncated, _ = env.last()
            env.step(None if terminated or truncated else pick(obs["action_mask"], rng.random()))
        games += 1
    return games / (time.perf_counter() - start)


def games_single(seconds: float) -> float:
    """Games/s of TicTacToeEnv, a random agent against the random opponent."""
    env, rng, games = TicTacToeEnv(opponent="random"), np.random.default_rng(0), 0
    env.reset(seed=0)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, info = env.reset()
        terminated = False
        while not terminated:
            _, _, terminated, _, info = env.step(pick(info["action_mask"], rng.random()))
        games += 1
    return games / (time.perf_counter() - start)


def games_batched(seconds: float, num_envs: int = 1024) -> float:
    """Games/s of the batched env, random agents (vectorised move picking) against the random opponent."""
    envs = gym.make_vec("textgym/TicTacToe-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                        opponent="random")
    rng = np.random.default_rng(0)
    _, info = envs.reset(seed=0)
    games, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        mask = info["action_mask"]
        k = (rng.random(num_envs) * mask.sum(1)).astype(np.int64)
        actions = (np.cumsum(mask, 1) > k[:, None]).argmax(1)
        _, _, terminated, _, info = envs.step(actions)
        games += int(terminated.sum())
    return games / (time.perf_counter() - start)


def reached_bar(greedy) -> bool:
    """>= 95% wins vs random and no loss vs minimax, exactly."""
    return exact_outcomes(greedy, "random")["mean"]["win"] >= 0.95 and exact_outcomes(greedy, "minimax")["mean"][
        "loss"] == 0.0


def learn_textgym(seed: int, budget: int, eval_every: int) -> dict:
    """Steps and training seconds until textgym PPO reaches the bar."""
    envs = gym.make_vec("textgym/TicTacToe-v0", num_envs=TICTACTOE_ENVS, vectorization_mode="vector_entry_point",
                        opponent="mix")
    agent = PPO(tictactoe_policy(seed), dataclasses.replace(TICTACTOE_PPO, seed=seed))
    clock = {"eval": 0.0, "done": False}

    def callback(row: dict) -> bool:
        if row["global_step"] % eval_every >= TICTACTOE_PPO.num_steps * TICTACTOE_ENVS:
            return False
        began = time.perf_counter()
        clock["done"] = reached_bar(lambda obs, mask: agent.act(obs, action_mask=mask, deterministic=True))
        clock["eval"] += time.perf_counter() - began
        return clock["done"]

    start = time.perf_counter()
    agent.learn(envs, budget, callback)
    return {"steps": agent.global_step, "seconds": time.perf_counter() - start - clock["eval"],
            "reached": clock["done"]}


def learn_sb3(seed: int, budget: int, eval_every: int) -> dict:
    """Steps and training seconds until sb3-contrib's MaskablePPO, same hyperparameters, reaches the bar."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    cfg = TICTACTOE_PPO
    envs = make_vec_env(lambda: TicTacToeEnv(opponent="mix"), n_envs=TICTACTOE_ENVS, seed=seed)
    model = MaskablePPO("MlpPolicy", envs, n_steps=cfg.num_steps, batch_size=cfg.num_steps * TICTACTOE_ENVS
                        // cfg.num_minibatches, n_epochs=cfg.update_epochs, learning_rate=cfg.learning_rate,
                        gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, clip_range=cfg.clip_coef, ent_coef=cfg.ent_coef,
                        vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm, seed=seed, device="cpu",
                        policy_kwargs={"net_arch": [128, 128], "activation_fn": torch.nn.Tanh})
    clock = {"eval": 0.0, "done": False}

    class Bar(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every >= TICTACTOE_ENVS:
                return True
            began = time.perf_counter()
            clock["done"] = reached_bar(lambda obs, mask: model.predict(obs, action_masks=mask.astype(bool),
                                                                        deterministic=True)[0])
            clock["eval"] += time.perf_counter() - began
            return not clock["done"]

    start = time.perf_counter()
    model.learn(budget, callback=Bar())
    return {"steps": model.num_timesteps, "seconds": time.perf_counter() - start - clock["eval"],
            "reached": clock["done"]}


def main() -> None:
    """Run both parts and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="per games/s measurement")
    parser.add_argument("--budget", type=int, default=150_000, help="textgym PPO step budget per seed")
    parser.add_argument("--sb3-budget", type=int, default=300_000, help="SB3 step budget per seed")
    parser.add_argument("--eval-every", type=int, default=4096)
    parser.add_argument("--output", default="benchmarks/results/toy.json")
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.seconds, args.budget, args.sb3_budget = 1, 0.5, 4096, 4096
    torch.set_num_threads(1)
    speed: dict[str, list[float]] = {"pettingzoo": [], "single": [], "batched": []}
    for _ in range(3):  # alternate, report medians
        for name, fn in (("pettingzoo", games_pettingzoo), ("single", games_single), ("batched", games_batched)):
            speed[name].append(fn(args.seconds))
    games = {k: statistics.median(v) for k, v in speed.items()}
    ratios = {"single/pettingzoo": games["single"] / games["pettingzoo"],
              "batched/pettingzoo": games["batched"] / games["pettingzoo"]}
    print(f"games/s: pettingzoo {games['pettingzoo']:.0f}, single {games['single']:.0f}, batched "
          f"{games['batched']:.0f}; single {ratios['single/pettingzoo']:.1f}x, batched "
          f"{ratios['batched/pettingzoo']:.0f}x", flush=True)
    runs: dict[str, list[dict]] = {"textgym_ppo": [], "sb3_maskable_ppo": []}
    for seed in range(args.seeds):
        runs["textgym_ppo"].append(learn_textgym(seed, args.budget, args.eval_every))
        runs["sb3_maskable_ppo"].append(learn_sb3(seed, args.sb3_budget, args.eval_every))
        print(f"seed {seed}: textgym {runs['textgym_ppo'][-1]}, sb3 {runs['sb3_maskable_ppo'][-1]}", flush=True)
    summary = {name: {"reached": sum(r["reached"] for r in rs),
                      "median_steps": statistics.median(r["steps"] for r in rs),
                      "median_seconds": statistics.median(r["seconds"] for r in rs)} for name, rs in runs.items()}
    summary["time_ratio_textgym/sb3"] = (summary["textgym_ppo"]["median_seconds"]
                                         / summary["sb3_maskable_ppo"]["median_seconds"])
    print(json.dumps(summary, indent=2))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"games_per_s": games, "games_ratios": ratios, "learning": runs,
                                             "summary": summary, "args": vars(args)}, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
