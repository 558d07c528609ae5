"""Train a helpfulness reward model from rankings, then plot how it scores chosen vs rejected answers.

Rankings of five answers per question (the embedded helpfulness task) become pairwise comparisons,
and a scalar head on the tiny LM learns ``-log sigmoid(r_chosen - r_rejected)``. Writes the model,
``reward_metrics.json`` and ``reward_scores.png`` to ``--out``.

Run: ``python examples/train_reward_model.py`` (about a minute on 2 CPU cores), or with
``--max-pairs 200`` for a quick look.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from textgym.data import synthetic  # noqa: E402
from textgym.data.preferences import rankings_to_pairs  # noqa: E402
from textgym.rewards import RewardModel  # noqa: E402
from textgym.rewards.training import RewardTrainingConfig, train_reward_model  # noqa: E402


def main() -> None:
    """Train, evaluate, plot."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/helpfulness-rm")
    parser.add_argument("--max-pairs", type=int, default=4000, help="training pairs used")
    parser.add_argument("--test-pairs", type=int, default=1000, help="held-out pairs evaluated")
    args = parser.parse_args()
    data = synthetic.dialogues()
    train = rankings_to_pairs(data["train"]).shuffle(seed=0)
    test = rankings_to_pairs(data["test"]).shuffle(seed=0)
    train, test = train.select(range(min(args.max_pairs, len(train)))), test.select(range(min(args.test_pairs,
                                                                                               len(test))))
    print(f"{len(data['train'])} ranked questions -> {len(train)} training pairs; {len(test)} held-out pairs")
    metrics = train_reward_model(train, test, RewardTrainingConfig(output_dir=args.out))
    for when in ("before", "after"):
        print(f"held-out {when} training: accuracy {metrics[when]['accuracy']:.3f}, loss {metrics[when]['loss']:.3f}")
    reward = RewardModel(args.out)
    chosen = reward(test["prompt"], test["chosen"])
    rejected = reward(test["prompt"], test["rejected"])
    fig, (hist, box) = plt.subplots(1, 2, figsize=(10, 4))
    hist.hist([chosen, rejected], bins=30, label=["chosen", "rejected"], alpha=0.7)
    hist.set(title="reward of held-out answers", xlabel="reward", ylabel="answers")
    hist.legend()
    box.boxplot([chosen, rejected], tick_labels=["chosen", "rejected"])
    box.set(title=f"pairwise accuracy {metrics['after']['accuracy']:.3f}", ylabel="reward")
    fig.tight_layout()
    fig.savefig(Path(args.out) / "reward_scores.png", dpi=100)
    print(f"saved the model, reward_metrics.json and reward_scores.png in {args.out}")


if __name__ == "__main__":
    main()
