"""How many contrast pairs a kit reward model needs to tell tips for the question from another question's.

A contrast pair is a preference whose rejected answer gives tips meant for another question: the
reward hack PPO finds on the helpfulness task (``textgym demo``, ``textgym loop``). Each row trains a
reward model on the SFT model's trunk from the task's own rankings: ``--seed-pairs`` random pairs
(as the loop's round 0), plus N contrast pairs drawn from the rest, for E epochs. Then it reports
the task's audit on held-out rankings: how often the helpful answer scores above another question's
tips (0.5 is chance), and above a curt one.

    python benchmarks/rm_contrast.py --base runs/loop/sft    # textgym loop's SFT model; about 9 minutes
    python benchmarks/rm_contrast.py --keep-dropout          # fine-tune one first; the kit LM's dropout 0.1 kept

Writes ``benchmarks/results/rm_contrast.json`` (``rm_contrast_dropout.json`` with ``--keep-dropout``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

#: (contrast pairs, epochs) of each row; None: every contrast pair outside the seed pairs.
GRID = ((0, 2), (0, 3), (0, 5), (500, 2), (1000, 2), (1000, 3), (None, 1), (None, 2))


def contrast_pairs(pairs):
    """The pairs whose rejected answer gives another question's tips."""
    from textgym.tasks import helpfulness

    def off_topic(row: dict) -> bool:
        found = helpfulness.tips_given(row["prompt"], row["rejected"].removeprefix(row["prompt"]))
        return found is not None and found[1] > 0

    return pairs.filter(off_topic)


def main() -> None:
    """Train one reward model per row of the grid; print and save the audit."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="SFT model folder whose trunk the reward models start from (default: "
                        "fine-tune one first, as textgym loop's round 0 does: 3 more minutes)")
    parser.add_argument("--seed-pairs", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep-dropout", action="store_true", help="train with the model's dropout (TRL disables it)")
    parser.add_argument("--out", help="results file (default: benchmarks/results/rm_contrast[_dropout].json)")
    args = parser.parse_args()
    name = "rm_contrast_dropout.json" if args.keep_dropout else "rm_contrast.json"
    out = Path(args.out or Path(__file__).parent / "results" / name)

    import datasets
    import torch

    from textgym.data.preferences import rankings_to_pairs
    from textgym.rewards import RewardModel
    from textgym.rewards.training import RewardTrainingConfig, train_reward_model
    from textgym.tasks import get_task

    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    task = get_task("helpfulness")
    scratch, base = tempfile.TemporaryDirectory(), args.base or "fine-tuned as textgym loop's round 0"
    if args.base is None:
        from textgym.app.config import LoopConfig
        from textgym.app.pipeline import supervised_fine_tuning

        loop = LoopConfig()
        print("fine-tuning the SFT model (textgym loop's round 0)", flush=True)
        args.base = str(supervised_fine_tuning(task, Path(scratch.name) / "sft", loop.sft.examples, loop.sft.epochs,
                                               loop.seed))
    pairs = rankings_to_pairs(task.rankings("train")).shuffle(seed=0)
    seed, rest = pairs.select(range(args.seed_pairs)), pairs.select(range(args.seed_pairs, len(pairs)))
    contrast = contrast_pairs(rest).shuffle(seed=1)
    held = rankings_to_pairs(task.rankings("test")).shuffle(seed=0).select(range(500))
    rows = []
    print(f"{'contrast pairs':>14} {'epochs':>6} {'pair accuracy':>13} {'vs off-topic tips':>17} {'vs curt':>7} "
          f"{'seconds':>7}", flush=True)
    for count, epochs in GRID:
        count = len(contrast) if count is None else min(count, len(contrast))
        train = datasets.concatenate_datasets([seed, contrast.select(range(count))])
        began = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            metrics = train_reward_model(train.shuffle(seed=0), held, RewardTrainingConfig(
                base_model=args.base, output_dir=folder, epochs=epochs, seed=0, disable_dropout=not args.keep_dropout))
            audit = task.audit(RewardModel(folder), task.rankings("test"))
        row = {"contrast_pairs": count, "epochs": epochs,
               "pair_accuracy": metrics["after"]["accuracy"],
               "vs_off_topic_tips": audit["off-topic tips"], "vs_curt": audit["curt"],
               "seconds": time.perf_counter() - began}
        rows.append(row)
        print(f"{row['contrast_pairs']:>14} {epochs:>6} {row['pair_accuracy']:>13.3f} "
              f"{row['vs_off_topic_tips']:>17.3f} {row['vs_curt']:>7.3f} {row['seconds']:>7.0f}", flush=True)
    out.write_text(json.dumps({"base": base, "seed_pairs": args.seed_pairs, "dropout": args.keep_dropout,
                               "rows": rows}, indent=2))
    scratch.cleanup()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
