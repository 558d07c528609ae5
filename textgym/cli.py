"""The ``textgym`` command line.

``textgym demo`` runs the offline RLHF pipeline (:mod:`textgym.pipeline`); ``textgym label``
collects rankings from a person or a judge (see :mod:`textgym.feedback`).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys

from textgym.feedback import Principle, answered_ids, items_from_file, label_interactive, label_with_judge, sample_items


def _principle(spec: str):
    name, _, rest = spec.partition("=")
    judge, _, weight = rest.partition("@")
    if not name or not judge:
        raise argparse.ArgumentTypeError(f"principle {spec!r}: write NAME=REWARD[@WEIGHT], e.g. harmless=toxicity@0.5")
    return name, judge, float(weight or 1.0)


def _label_parser(sub) -> None:
    p = sub.add_parser("label", help="rank completions by hand or with a judge, into a rankings JSONL",
                       description="Show a prompt and K completions; rank them. Every answer is written at once; "
                                   "a rerun with the same --output resumes where it stopped.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="JSONL of {prompt, completions} rows to rank")
    source.add_argument("--model", help="causal LM to sample completions from (embedded name, hub name or path)")
    p.add_argument("--output", required=True, help="rankings JSONL to append to")
    p.add_argument("--task", default="helpfulness", help="task whose prompts are sampled (with --model)")
    p.add_argument("--split", default="test", help="prompt split (with --model)")
    p.add_argument("--num", type=int, default=20, help="prompts to sample (with --model)")
    p.add_argument("-k", type=int, default=3, help="completions per prompt (with --model)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--judge", help="rank with this reward instead of a person (e.g. helpfulness, rm:PATH)")
    p.add_argument("--principle", action="append", type=_principle, default=[],
                   help="NAME=REWARD[@WEIGHT]: rank by several principles' weighted scores (repeatable)")


def _field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (the house style documents every field)."""
    docs, body = {}, ast.parse(inspect.getsource(cls)).body[0].body
    for node, following in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr):
            docs[node.target.id] = str(following.value.value)
    return docs


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag`` per field of ``cls``, with its default and its docstring as help."""
    docs = _field_docs(cls)
    for field in dataclasses.fields(cls):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default,
                            help=f"{docs.get(field.name, '')} (default: {field.default})")


def _demo_parser(sub) -> None:
    from textgym.pipeline import DemoConfig

    p = sub.add_parser("demo", help="the offline RLHF pipeline: SFT -> reward model -> PPO -> report",
                       description="Supervised fine-tuning, a reward model from rankings, PPO with a KL penalty "
                                   "through the helpfulness env, then an evaluation report with plots. Offline.")
    _add_dataclass_flags(p, DemoConfig)


def demo(args: argparse.Namespace) -> int:
    """Run ``textgym demo``."""
    from textgym.pipeline import DemoConfig, run_demo

    run_demo(DemoConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DemoConfig)}))
    return 0


def label(args: argparse.Namespace) -> int:
    """Run ``textgym label``."""
    from textgym.models import load_causal_lm, load_tokenizer
    from textgym.rewards.combine import WeightedSum
    from textgym.rewards.named import make_reward
    from textgym.tasks import get_task

    done = answered_ids(args.output)
    if args.input:
        items = [item for item in items_from_file(args.input) if item.id not in done]
    else:
        prompts = get_task(args.task).prompts(args.split)[: args.num]
        items = list(sample_items(load_causal_lm(args.model), load_tokenizer(args.model), prompts, args.k,
                                  args.max_new_tokens, args.seed, skip=done))
    if done:
        print(f"resuming: {len(done)} answered, {len(items)} to go")
    if args.judge or args.principle:
        if args.judge and args.principle:
            raise ValueError("pass --judge or --principle, not both")
        judge = make_reward(args.judge) if args.judge else WeightedSum(
            {Principle(name, make_reward(spec)): weight for name, spec, weight in args.principle})
        label_with_judge(items, args.output, judge)
    else:
        label_interactive(items, args.output)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``textgym`` command."""
    parser = argparse.ArgumentParser(prog="textgym", description="Text generation as an RL environment, and RLHF.")
    sub = parser.add_subparsers(dest="command", required=True)
    _demo_parser(sub)
    _label_parser(sub)
    args = parser.parse_args(argv)
    try:
        return {"demo": demo, "label": label}[args.command](args)
    except KeyboardInterrupt:
        print("\nstopped; every answer given so far is saved", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as err:
        print(f"textgym {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
