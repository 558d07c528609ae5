"""The reward-KL frontier: PPO on the tiny language for a sweep of ``kl_coef`` values.

Each point is one run's exact expected reward against its exact KL to the reference: a larger
penalty buys fluency (low KL) with reward. Run: ``python examples/kl_sweep.py`` (a few minutes on 2 CPU cores).
Writes ``kl_sweep.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from reward_hacking import train  # noqa: E402


def main() -> None:
    """Sweep, print a table, plot the frontier."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30_000, help="environment steps per run")
    parser.add_argument("--kl-coefs", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0])
    parser.add_argument("--out", default="kl_sweep.png")
    args = parser.parse_args()
    points = []
    print(f"{'kl_coef':>8} {'E[#good]':>9} {'KL':>8} {'length':>7}")
    for kl_coef in args.kl_coefs:
        final = train(kl_coef, args.steps)[1][-1]
        points.append((kl_coef, final["kl"], final["reward"]))
        print(f"{kl_coef:>8.2f} {final['reward']:>9.3f} {final['kl']:>8.3f} {final['length']:>7.2f}")
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([p[1] for p in points], [p[2] for p in points], "o-")
    for kl_coef, kl, reward in points:
        ax.annotate(f"{kl_coef:g}", (kl, reward), textcoords="offset points", xytext=(4, 4))
    ax.set(xscale="symlog", xlabel="KL(policy || reference), nats (exact)", ylabel='expected "good" (exact)',
           title="reward vs KL, labelled by kl_coef")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
