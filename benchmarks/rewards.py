"""Benchmark across reward functions: PPO, RLOO, GRPO and reference sampling x five rewards x seeds.

Each run is a fresh process; one row per run goes to ``benchmarks/results/rewards.csv`` and
``rewards.json``; ``rewards.md`` has the mean ± std table and the quality bars, ``rewards.png`` the
plot. The same as ``textgym bench --out benchmarks/results`` (flags: ``python benchmarks/rewards.py
--help``); the cases are the tasks' (:func:`textgym.app.bench.cases`).

    python benchmarks/rewards.py                          # 3 seeds, all cases
    python benchmarks/rewards.py --cases rule --seeds 0   # one case, one seed
"""

import sys

from textgym.app.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(["bench", *([] if "--out" in args else ["--out", "benchmarks/results"]), *args]))
