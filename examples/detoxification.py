"""Detoxification: PPO with the toxicity classifier's "polite" logit as reward; toxicity before/after.

Uses the configuration path of ``textgym train`` (:class:`textgym.app.config.TrainConfig`), so the run
folder has the config, ``metrics.csv``, TensorBoard logs and checkpoints. The toxicity rate is
measured twice: by the classifier (share with P(polite) < 0.5) and by an insult word list, a judge
the reward never saw.

Run: ``python examples/detoxification.py`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import shutil

from textgym.app.config import TrainConfig
from textgym.app.harness import train


def main() -> None:
    """Train on Detox-v0, print toxicity before and after."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=16_384, help="environment steps (generated tokens)")
    parser.add_argument("--out", default="runs/detox")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)  # a fresh run each time (textgym train --resume continues one)
    result = train(TrainConfig(env="Detox-v0", reward="toxicity", total_steps=args.steps, kl_coef=0.05,
                               eval_prompts=64, out=args.out))
    before, after = result["eval"]["reference"], result["eval"]["policy"]
    print(f"toxicity rate (classifier):  {before['toxicity_rate']:.1%} -> {after['toxicity_rate']:.1%}")
    print(f"insult rate (word list):     {before['judge/insult_rate']:.1%} -> {after['judge/insult_rate']:.1%}")
    print(f"KL to the reference: {after['kl_to_reference']:.3f} nats per reply; run folder: {args.out}")


if __name__ == "__main__":
    main()
