"""Tic-tac-toe two ways: LM PPO writing its moves (``TextTicTacToe-v0``) vs MLP PPO on the board (``TicTacToe-v0``).

Both agents train against the mix opponent (random or minimax per game) until the bar, no loss
against minimax and at least 90% wins against random, scored exactly (every position, or for the
language model every game history, both seats averaged) every ``--eval-every`` steps, or until the
step budget. The language model starts as the kit's ``textgym/tictactoe-lm`` (random legal play) with
the recipe ``agents.recipes.TEXT_TICTACTOE_LM`` (which trains on every episode's symmetric copies) in
its environment ``agents.recipes.TEXT_TICTACTOE_RULES``, and once more with exploring starts (up to 2
random moves a side before the agent's first, the opponent's openings a third each in the centre, a
corner and an edge: ``random_moves=2, opening="class"``), and once more with restarts at its mistakes
(half of the games begin where the greedy policy, at the last evaluation, plays a move that is not
optimal against minimax, or on the lines that correct such a move: ``restart_share=0.5`` and
:func:`textgym.eval.tictactoe.mistakes_with_history`);
the MLP with ``agents.recipes.TICTACTOE_PPO``, its policy averaged over the board's 8 symmetries, and
once more without that averaging.
Reports steps and training seconds to the bar (evaluation excluded), per seed, and the exact scores
where each run stopped. Writes ``benchmarks/results/text_tictactoe.json`` and a plot of the learning
curves next to it.

Run: ``python benchmarks/text_tictactoe.py`` (3 seeds; ``--quick`` for a smoke run; ``--rows lm`` reruns
one row and keeps the others from the results file).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import torch

import textgym  # noqa: F401
from agents.lm_ppo import LMPPO
from agents.ppo import PPO
from agents.recipes import (
    TEXT_TICTACTOE_ENVS,
    TEXT_TICTACTOE_LM,
    TEXT_TICTACTOE_RESTART_SHARE,
    TEXT_TICTACTOE_RULES,
    TICTACTOE_ENVS,
    TICTACTOE_PPO,
    tictactoe_policy,
)
from textgym.eval.tictactoe import exact_outcomes, exact_outcomes_with_history, mistakes_with_history, text_policy
from textgym.models import load_causal_lm, load_tokenizer

WINS, LOSSES = 0.9, 0.0  # the bar: at least 90% wins against random, no loss against minimax
#: The table's rows: --rows names and their labels.
ROWS = {"mlp": "MLP PPO, board as numbers", "mlp-plain": "MLP PPO, no symmetry averaging",
        "lm": "LM PPO, board as text", "lm-starts": "LM PPO, board as text, exploring starts",
        "lm-restarts": "LM PPO, board as text, restarts at its mistakes"}
COLORS = ("tab:blue", "tab:gray", "tab:orange", "tab:brown", "tab:red")  # the rows' colours in the plot


def scores(outcomes: Callable[[str], dict]) -> dict[str, float]:
    """Exact win rate against random and loss rate against minimax, both seats averaged."""
    return {"win vs random": outcomes("random")["mean"]["win"], "loss vs minimax": outcomes("minimax")["mean"]["loss"]}


def at_bar(score: dict[str, float]) -> bool:
    """Whether ``score`` meets the bar."""
    return score["win vs random"] >= WINS and score["loss vs minimax"] <= LOSSES


def train_to_bar(agent, envs, budget: int, every: int, score: Callable[[], dict[str, float]]) -> dict:
    """``agent.learn`` in slices of ``every`` steps until the bar or ``budget``; the curve and where it stopped."""
    curve, seconds = [(0, 0.0, score())], 0.0
    while agent.global_step < budget and not at_bar(curve[-1][2]):
        began = time.perf_counter()
        agent.learn(envs, min(budget, agent.global_step + every))
        seconds += time.perf_counter() - began
        curve.append((agent.global_step, seconds, score()))
    step, seconds, final = curve[-1]
    return {"reached": at_bar(final), "steps": step, "seconds": seconds, **final, "curve": curve}


def mlp_run(seed: int, budget: int, every: int, symmetric: bool = True) -> dict:
    """MLP PPO on the 18-float board (its policy averaged over the 8 symmetries, or not)."""
    torch.manual_seed(seed)
    agent = PPO(tictactoe_policy(seed, symmetric), dataclasses.replace(TICTACTOE_PPO, seed=seed))
    envs = gym.make_vec("textgym/TicTacToe-v0", num_envs=TICTACTOE_ENVS, vectorization_mode="vector_entry_point",
                        opponent="mix")
    greedy = lambda obs, mask: agent.act(obs, action_mask=mask, deterministic=True)  # noqa: E731
    return train_to_bar(agent, envs, budget, every, lambda: scores(lambda o: exact_outcomes(greedy, o)))


def lm_run(seed: int, budget: int, every: int, exploring_starts: bool = False, restarts: bool = False) -> dict:
    """LM PPO writing its moves, from the kit's random-play LM, illegal cells masked, no KL penalty.

    With ``restarts``, every evaluation also sets the games' restarts to the greedy policy's mistakes
    against minimax, with the lines that correct them (:func:`mistakes_with_history`).
    """
    torch.manual_seed(seed)
    tokenizer = load_tokenizer("textgym/tictactoe-lm")
    agent = LMPPO(load_causal_lm("textgym/tictactoe-lm"), tokenizer, dataclasses.replace(TEXT_TICTACTOE_LM, seed=seed))
    rules = dict(TEXT_TICTACTOE_RULES)
    if exploring_starts:
        rules.update(random_moves=2, opening="class")
    if restarts:
        rules.update(restart_share=TEXT_TICTACTOE_RESTART_SHARE)
    envs = gym.make_vec("textgym/TextTicTacToe-v0", num_envs=TEXT_TICTACTOE_ENVS,
                        vectorization_mode="vector_entry_point", **rules)

    def score() -> dict[str, float]:
        policy = text_policy(agent.model, tokenizer, legal_only=True)
        if restarts:
            envs.turns.restarts = mistakes_with_history(policy, "minimax")
        return scores(lambda o: exact_outcomes_with_history(policy, o))

    return train_to_bar(agent, envs, budget, every, score)


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    """Learning curves of every seed: wins against random and losses against minimax, by environment steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key in zip(axes, ("win vs random", "loss vs minimax"), strict=True):
        for name in runs:
            color = COLORS[list(ROWS.values()).index(name)]
            for i, run in enumerate(runs[name]):
                ax.plot([s for s, _, _ in run["curve"]], [c[key] for _, _, c in run["curve"]], color=color,
                        alpha=0.8, label=name if i == 0 else None)
        ax.axhline(WINS if key.startswith("win") else LOSSES, color="gray", ls=":", label="the bar")
        ax.set(xlabel="environment steps", title=f"exact {key}", ylim=(-0.02, 1.02), xlim=(0, None))
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    """Train both agents on every seed; print the table; write the JSON and the plot."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--mlp-budget", type=int, default=300_000)
    parser.add_argument("--lm-budget", type=int, default=131_072)
    parser.add_argument("--mlp-every", type=int, default=4096, help="MLP steps between exact evaluations")
    parser.add_argument("--eval-every", type=int, default=16_384, help="LM steps between exact evaluations")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default="benchmarks/results/text_tictactoe.json")
    parser.add_argument("--quick", action="store_true", help="one seed, tiny budgets (a smoke run)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"the rows to run, of {','.join(ROWS)}; the others "
                        "are kept from --output when it has them")
    args = parser.parse_args()
    rows = args.rows.split(",")
    if unknown := set(rows) - set(ROWS):
        parser.error(f"unknown rows {sorted(unknown)}; choose from {','.join(ROWS)}")
    if args.quick:
        args.seeds, args.mlp_budget, args.lm_budget, args.mlp_every, args.eval_every = 1, 2048, 1024, 1024, 512
    torch.set_num_threads(args.threads)
    agents = {"mlp": lambda seed: mlp_run(seed, args.mlp_budget, args.mlp_every),
              "mlp-plain": lambda seed: mlp_run(seed, args.mlp_budget, args.mlp_every, False),
              "lm": lambda seed: lm_run(seed, args.lm_budget, args.eval_every),
              "lm-starts": lambda seed: lm_run(seed, args.lm_budget, args.eval_every, True),
              "lm-restarts": lambda seed: lm_run(seed, args.lm_budget, args.eval_every, restarts=True)}
    out = Path(args.output)
    before = json.loads(out.read_text()) if out.is_file() else {"runs": {}, "args": {}}
    runs: dict[str, list[dict]] = {ROWS[row]: [] for row in rows}
    for seed in range(args.seeds):
        for row in rows:
            runs[ROWS[row]].append(agents[row](seed))
        for name, rs in runs.items():
            r = rs[-1]
            print(f"seed {seed} {name}: {'reached' if r['reached'] else 'not reached'} after {r['steps']} steps, "
                  f"{r['seconds']:.0f} s; wins vs random {r['win vs random']:.3f}, losses vs minimax "
                  f"{r['loss vs minimax']:.3f}", flush=True)
    arguments = {name: vars(args) for name in runs}
    for row, name in ROWS.items():  # rows not run this time: as the results file has them
        if row not in rows and name in before["runs"]:
            runs[name], arguments[name] = before["runs"][name], before["args"].get(name, before["args"])
    runs = {name: runs[name] for name in ROWS.values() if name in runs}
    summary = {name: {"reached": f"{sum(r['reached'] for r in rs)}/{len(rs)}",
                      "median_steps": statistics.median(r["steps"] for r in rs),
                      "median_seconds": statistics.median(r["seconds"] for r in rs)} for name, rs in runs.items()}
    print(json.dumps(summary, indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "summary": summary, "args": arguments}, indent=2) + "\n")
    plot(runs, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
