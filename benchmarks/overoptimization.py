"""The reward over-optimisation map: when does optimising a proxy reward stop helping the true objective?

Gold, proxy, exact KL and hacking indicators along training, for each reward case, algorithm and
``kl_coef``, against best-of-n sampling: what it measures is :mod:`textgym.app.overoptimization`'s
docstring. The same as ``textgym bench overoptimization --out benchmarks/results`` (flags: ``python
benchmarks/overoptimization.py --help``).

    python benchmarks/overoptimization.py             # the map: about 25 minutes on 2 cores (--estimate)
    python benchmarks/overoptimization.py --quick     # one case, one seed, 2 kl values, 2 points: a minute
    python benchmarks/overoptimization.py --estimate  # time a few updates of each run; print the map's time
    python benchmarks/overoptimization.py --cases custom --task sentiment --reward keyword:great \
        --judge lexicon-sentiment
    python benchmarks/overoptimization.py --cases helpfulness-rm --rm-pairs 300 1000 3000 --name overoptimization_rm

Writes ``overoptimization.json`` and ``overoptimization.png`` to ``benchmarks/results``
(``overoptimization_quick.*`` with ``--quick``).
"""

import sys

from textgym.app.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(["bench", "overoptimization", *([] if "--out" in args else ["--out", "benchmarks/results"]),
                   *args]))
