"""Benchmark across reward functions: PPO, RLOO and reference sampling x five rewards x seeds.

Each run is a fresh process; one row per run goes to ``benchmarks/results/rewards.csv`` and
``rewards.json``; ``rewards.md`` has the mean ± std table and the quality bars, ``rewards.png`` the
plot. The same as ``textgym bench`` (flags: ``python benchmarks/rewards.py --help``); the cases
are listed in :mod:`textgym.bench`.

    python benchmarks/rewards.py                          # 3 seeds, all cases (about 20 minutes on 2 cores)
    python benchmarks/rewards.py --cases rule --seeds 0   # one case, one seed
"""

import sys

from textgym.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
