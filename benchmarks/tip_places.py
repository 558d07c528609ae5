"""Where a helpfulness policy's off-topic tips sit: the off-topic rate of its 1st, 2nd, 3rd and later tips.

The share of answers with a tip meant for another question grows with the tips per answer alone. This
script separates the two: it samples answers to the held-out questions from each saved policy and
counts, for each place in the answer, how many tips were given there and how many of them were
meant for another question (``textgym.tasks.helpfulness.tips_in_order``).

    python benchmarks/tip_places.py runs/loop/sft runs/loop/round-03/rl/policy    # about a minute a policy

Writes ``benchmarks/results/tip_places.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PLACES = ("1st", "2nd", "3rd", "4th+")


def tip_places(policy: str, answers: int, max_new_tokens: int, seed: int) -> dict:
    """Sample ``answers`` answers from ``policy``, the held-out questions in turn; count tips per place."""
    from textgym.eval.text import sample_completions
    from textgym.models import load_causal_lm, load_tokenizer
    from textgym.tasks import helpfulness
    from textgym.tasks.evaluation import heldout_texts

    model, tokenizer = load_causal_lm(policy), load_tokenizer(policy)
    questions = list(dict.fromkeys(heldout_texts("helpfulness", limit=10_000)[1]))
    prompts = [questions[i % len(questions)] for i in range(answers)]
    samples = []
    for start in range(0, answers, 128):  # one KV cache of 128 slots at a time
        batch = prompts[start:start + 128]
        samples += tokenizer.batch_decode(sample_completions(model, tokenizer, batch, max_new_tokens, seed + start),
                                          skip_special_tokens=True)
    tips, off = [0] * len(PLACES), [0] * len(PLACES)
    with_off = given = 0
    for prompt, answer in zip(prompts, samples, strict=True):
        order = helpfulness.tips_in_order(prompt, answer) or []
        with_off += any(order)
        given += len(order)
        for place, other in enumerate(order):
            tips[min(place, len(PLACES) - 1)] += 1
            off[min(place, len(PLACES) - 1)] += other
    return {"policy": policy, "answers": answers, "tips_per_answer": given / answers,
            "answers_with_an_off_topic_tip": with_off / answers,
            "places": {name: {"tips": t, "off_topic": o} for name, t, o in zip(PLACES, tips, off, strict=True)}}


def main() -> None:
    """Count each policy's tips per place; print the table and save the JSON."""
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policies", nargs="+", help="saved policy folders (e.g. a loop's sft/ and round-NN/rl/policy)")
    parser.add_argument("--answers", type=int, default=512, help="answers sampled per policy")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="longest answer in tokens")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", default="benchmarks/results/tip_places.json", help="where to write the results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print("| policy | tips per answer | " + " | ".join(f"{p} tip off topic" for p in PLACES)
          + " | answers with an off-topic tip |")
    print("|---|---|" + "---|" * len(PLACES) + "---|")
    for policy in args.policies:
        row = tip_places(policy, args.answers, args.max_new_tokens, args.seed)
        rows.append(row)
        cells = [f"{c['off_topic']}/{c['tips']} = {c['off_topic'] / c['tips']:.3f}" if c["tips"] else "-"
                 for c in row["places"].values()]
        print(f"| {policy} | {row['tips_per_answer']:.2f} | " + " | ".join(cells)
              + f" | {row['answers_with_an_off_topic_tip']:.3f} |", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
