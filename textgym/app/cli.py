"""The ``textgym`` command line.

``textgym demo`` runs the offline RLHF pipeline (:mod:`textgym.app.pipeline`); ``textgym train``
trains any causal LM on any text env and reward with any agent (:mod:`textgym.app.harness`);
``textgym eval`` compares models on a task's held-out prompts (:mod:`textgym.eval.report`);
``textgym bench`` runs the benchmark across reward functions (:mod:`textgym.app.bench`), ``textgym bench
overoptimization`` the reward over-optimisation map (:mod:`textgym.app.overoptimization`);
``textgym label`` collects rankings from a person (terminal or web page) or a judge
(:mod:`textgym.app.feedback`); ``textgym loop`` runs RLHF as a loop of feedback rounds
(:mod:`textgym.app.loop`); ``textgym personalize`` trains a reward model and LoRA adapters per
simulated user on one shared base (:mod:`textgym.app.personalize`); ``textgym serve`` serves any
registered env over OpenEnv's protocol (:mod:`textgym.integrations.openenv`, the ``openenv`` extra).

Parsing imports nothing heavy: ``--help`` and argument errors answer at once; each subcommand
imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
from typing import Any

from textgym.app.config import (
    BenchConfig,
    DemoConfig,
    LoopConfig,
    OverOptimizationConfig,
    PersonalizeConfig,
    TrainConfig,
    build_config,
    field_docs,
    flat_fields,
    flat_settings,
    load_config_file,
    moved_to,
)

#: The config of each subcommand that has one.
CONFIGS = {"demo": DemoConfig, "train": TrainConfig, "bench": BenchConfig, "loop": LoopConfig,
           "personalize": PersonalizeConfig}


def _flag_type(annotation: str):
    """The argparse type of a field annotated ``int``, ``float | None``, ``str``, ..."""
    base = annotation.replace(" | None", "").strip()
    return {"int": int, "float": float, "str": str}[base]


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, suppress: bool = False) -> None:
    """One ``--flag`` per setting of ``cls`` (``--rl.kl-coef`` for a section's), with its default and docstring as help.

    A section's flags form a group of the help, under the section's docstring; a list setting's flag takes
    one or more values (``--kl-coefs 0 0.1``). With ``suppress``, flags left out stay out of the parsed
    namespace (so a config file can set them).
    """
    docs, defaults = field_docs(cls), flat_settings(cls)
    groups: dict[str, Any] = {}
    for name, setting in flat_fields(cls).items():
        section, dot, _ = name.rpartition(".")
        if dot and section not in groups:
            groups[section] = parser.add_argument_group(f"{section} (--{section}.*)", docs.get(section))
        flag = f"--{name.replace('_', '-')}"
        help_text = f"{docs.get(name, '')} (default: {defaults[name]})"
        default = argparse.SUPPRESS if suppress else defaults[name]
        group = groups.get(section, parser) if dot else parser
        if setting.type in ("bool", "bool | None"):
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif str(setting.type).startswith("list["):  # a list: the flag's values (--kl-coefs 0 0.1)
            group.add_argument(flag, dest=name, nargs="+", type=_flag_type(str(setting.type)[5:-1]), default=default,
                               help=help_text, metavar=name.rpartition(".")[2].upper())
        else:
            group.add_argument(flag, dest=name, type=_flag_type(str(setting.type)), default=default, help=help_text,
                               metavar=name.rpartition(".")[2].upper())


def _configured(args: argparse.Namespace, cls: type) -> Any:
    """The config of a subcommand: defaults, then ``--config``'s file (if the subcommand takes one), then the flags."""
    values = load_config_file(args.config, cls) if getattr(args, "config", None) else {}
    for name in flat_fields(cls):
        if hasattr(args, name):
            section, dot, key = name.rpartition(".")
            (values.setdefault(section, {}) if dot else values)[key] = getattr(args, name)
    return build_config(cls, values)


def _moved_flags(command: str, extra: list[str]) -> str:
    """Where flags of an earlier textgym went (``--kl-coef`` -> ``--rl.kl-coef``), as a hint for the usage error."""
    cls = CONFIGS.get(command)
    if cls is None:
        return ""
    flags = [arg.split("=")[0] for arg in extra if arg.startswith("--")]
    moved = {flag: moved_to(cls, flag.removeprefix("--").replace("-", "_")) for flag in flags}
    hints = [f"{flag} is now --{new.replace('_', '-')}" for flag, new in moved.items() if new]
    return f" ({'; '.join(hints)})" if hints else ""


# ---------------------------------------------------------------------------------------------- demo
def _demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="the offline RLHF pipeline: SFT -> reward model -> RL -> report",
                       description="Supervised fine-tuning, a reward model from rankings, RL with a KL penalty "
                                   "through the helpfulness env, then an evaluation report with plots. Offline.")
    _add_dataclass_flags(p, DemoConfig)


def demo(args: argparse.Namespace) -> int:
    """Run ``textgym demo``."""
    from textgym.app.pipeline import run_demo

    run_demo(_configured(args, DemoConfig))
    return 0


# ---------------------------------------------------------------------------------------------- train
def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="RL on a causal LM through a text env (ppo, rloo, grpo, reinforce, your own)",
                       description="Train any causal LM (embedded name, hub name or path) on a registered text env "
                                   "with any reward and any agent. Values come from the defaults, then --config, "
                                   "then the flags; the whole config is validated first and saved in the run "
                                   "folder. Metrics go to metrics.csv and TensorBoard; checkpoints are atomic; "
                                   "--resume continues a killed run exactly. Under `accelerate launch` every "
                                   "process trains (data parallelism).")
    p.add_argument("--config", help="JSON or TOML file of TrainConfig fields")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    _add_dataclass_flags(p, TrainConfig, suppress=True)


def train(args: argparse.Namespace) -> int:
    """Run ``textgym train``."""
    from textgym.app.harness import train as run_train

    cfg = _configured(args, TrainConfig)
    result = run_train(cfg, resume=args.resume)
    print(f"done: {cfg.out} ({result['minutes']:.1f} minutes)")
    return 0


# ---------------------------------------------------------------------------------------------- eval
def _eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate causal LMs on a task's held-out prompts: reward, KL, perplexity, judge",
                       description="Sample one completion per held-out prompt from each model; report the reward "
                                   "distribution, KL to the reference, perplexity of held-out preferred texts, "
                                   "distinct-2 and the task's independent judge; write eval.json, report.md and "
                                   "reward_scores.png.")
    p.add_argument("--model", action="append", required=True,
                   help="NAME=PATH or PATH of a causal LM (repeatable: --model before=sft --model after=runs/x/policy)")
    p.add_argument("--task", default="sentiment", help="embedded task: sentiment, helpfulness or detox")
    p.add_argument("--reward", help="reward spec (default: the task's reward)")
    p.add_argument("--reference", help="model the KL is measured to (default: the first --model)")
    p.add_argument("--num-prompts", type=int, default=64, help="held-out prompts, one completion each")
    p.add_argument("--max-new-tokens", type=int, help="completion length limit (default: the task's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="reports/eval", help="report folder (new or empty: a report is never replaced)")


def _check_eval_args(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The ``(name, path)`` of each ``--model``, after checking the arguments; loads nothing."""
    from pathlib import Path

    if args.num_prompts < 1:
        raise ValueError(f"--num-prompts must be >= 1 (one completion per held-out prompt), got {args.num_prompts}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens} (leave it out for the task's)")
    named = [tuple(spec.split("=", 1)) if "=" in spec else (spec, spec) for spec in args.model]
    names = [name for name, _ in named]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"--model names {', '.join(map(repr, repeated))} more than once: name each model "
                         "(--model before=PATH --model after=PATH)")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists: choose another --out (an earlier report is never replaced)")
    return named


def evaluate(args: argparse.Namespace) -> int:
    """Run ``textgym eval``."""
    import json
    from pathlib import Path

    named = _check_eval_args(args)
    from textgym.eval.report import metrics_table, plot_scores
    from textgym.models import load_causal_lm, load_tokenizer
    from textgym.tasks import get_task
    from textgym.tasks.evaluation import evaluate_policy
    from textgym.tasks.rewards import make_reward

    task = get_task(args.task)
    if args.reward:
        reward_fn = make_reward(args.reward)
    elif task.reward is not None:
        reward_fn = task.reward()
    else:
        raise ValueError(f"task {task.name} scores by its conversation's turns and has no reward to report: "
                         "name one with --reward")
    reference = load_causal_lm(args.reference or named[0][1])
    results = {}
    for name, path in named:
        print(f"evaluating {name} ({path})", flush=True)
        results[name] = evaluate_policy(load_causal_lm(path), load_tokenizer(path), task.name, reward_fn, reference,
                                        num_prompts=args.num_prompts, max_new_tokens=args.max_new_tokens,
                                        seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = metrics_table(results)
    lines = [f"# textgym eval: {task.name}, reward {reward_fn.name}", "", *table, "",
             "![reward scores](reward_scores.png)", "", "## Samples", ""]
    for i, prompt in enumerate(results[named[0][0]]["prompts"][:6]):
        lines += [f"**Prompt:** {prompt.strip()}", ""] + [f"- {n}: {results[n]['samples'][i].strip()}"
                                                           for n in results] + [""]
    (out / "report.md").write_text("\n".join(lines))
    (out / "eval.json").write_text(json.dumps(results, indent=2))
    plot_scores(results, out / "reward_scores.png")
    print("\n".join(table) + f"\nreport: {out / 'report.md'}")
    return 0


# ---------------------------------------------------------------------------------------------- bench
def _bench_parser(sub, kinds: bool = True) -> None:
    """``textgym bench``; with ``kinds``, its other benchmarks (``textgym bench overoptimization``) as well.

    Without them, a stray value after an unknown flag (``--kl-coef 0.1``) is reported with the flag, not as a
    benchmark's name; the other benchmarks are only parsed where one is named first (or help is asked for).
    """
    p = sub.add_parser("bench", help="agents x rewards x seeds on the embedded tasks -> CSV/JSON, table, plot; "
                                     "or the reward over-optimisation map",
                       description="The benchmark of benchmarks/rewards.py: every agent and reference sampling on "
                                   "each reward function and seed; one row per run in rewards.csv / rewards.json, "
                                   "a summary table and a plot, in --out (runs/bench unless told). "
                                   "`textgym bench overoptimization` draws the reward over-optimisation map "
                                   "instead (benchmarks/overoptimization.py; its flags: "
                                   "`textgym bench overoptimization --help`).")
    _add_dataclass_flags(p, BenchConfig)
    if not kinds:
        return
    others = p.add_subparsers(dest="bench_kind", metavar="{overoptimization}", title="other benchmarks")
    m = others.add_parser("overoptimization", help="the reward over-optimisation map: gold, proxy, exact KL and "
                                                  "hacking indicators along training, against best-of-n",
                         description="For each reward case, algorithm and kl_coef (0 included): train on the proxy "
                                     "reward and evaluate at regular points the proxy, the gold (the task's judge or "
                                     "hidden utility), the exact KL to the reference and hacking indicators; "
                                     "best-of-n sampling is the non-RL baseline. Writes NAME.json and NAME.png "
                                     "(gold and proxy against sqrt(KL)) in --out (textgym.app.overoptimization). "
                                     "Lists take several values: --kl-coefs 0 0.1.")
    _add_dataclass_flags(m, OverOptimizationConfig)
    m.set_defaults(kind_parser=m)  # its usage answers an unknown flag
    m.add_argument("--quick", action="store_true", help="the smoke test: one case, one seed, 2 kl values, "
                   "2 evaluation points (writes NAME_quick.*)")
    m.add_argument("--estimate", action="store_true", help="time 3 updates of each (case, agent) at the configured "
                   "sizes and estimate the full map's time, instead of running it (writes NAME_estimate.*)")


def bench(args: argparse.Namespace) -> int:
    """Run ``textgym bench`` (``textgym bench overoptimization``: the over-optimisation map)."""
    if getattr(args, "bench_kind", None) == "overoptimization":
        from textgym.app.overoptimization import run_map

        run_map(_configured(args, OverOptimizationConfig), quick=args.quick, estimate_only=args.estimate)
        return 0
    from textgym.app.bench import run_benchmark

    run_benchmark(_configured(args, BenchConfig))
    return 0


# ---------------------------------------------------------------------------------------------- label
def _principle(spec: str):
    name, _, rest = spec.partition("=")
    judge, _, weight = rest.partition("@")
    if not name or not judge:
        raise argparse.ArgumentTypeError(f"principle {spec!r}: write NAME=REWARD[@WEIGHT], e.g. harmless=toxicity@0.5")
    try:
        return name, judge, float(weight or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"principle {spec!r}: the weight after @ must be a number") from None


def _label_parser(sub) -> None:
    p = sub.add_parser("label", help="rank completions by hand (terminal or web page) or with a judge",
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
    p.add_argument("--web", action="store_true", help="serve a web page for labelers instead of asking in the terminal")
    p.add_argument("--host", default="127.0.0.1", help="with --web: the address to serve on")
    p.add_argument("--port", type=int, default=8765, help="with --web: the port to serve on")


def _check_label_args(args: argparse.Namespace) -> None:
    """Refuse, before anything is sampled or written, what would give a rankings file ``label`` cannot read back."""
    from pathlib import Path

    if args.judge and args.principle:
        raise ValueError("pass --judge or --principle, not both")
    if Path(args.output).is_dir():
        raise ValueError(f"--output {args.output} is a folder: name the rankings file, e.g. "
                         f"{Path(args.output) / 'rankings.jsonl'}")
    if args.model:
        for flag, value, low, why in (("-k", args.k, 2, "a ranking compares at least 2 completions"),
                                      ("--num", args.num, 1, "prompts to sample"),
                                      ("--max-new-tokens", args.max_new_tokens, 1, "the longest completion")):
            if value < low:
                raise ValueError(f"{flag} must be >= {low} ({why}), got {value}")


def label(args: argparse.Namespace) -> int:
    """Run ``textgym label``."""
    from textgym.app.feedback import (
        Principle,
        answered,
        items_from_file,
        label_interactive,
        label_with_judge,
        sample_items,
    )
    from textgym.rewards.combine import WeightedSum
    from textgym.tasks.rewards import make_reward

    _check_label_args(args)
    done = answered(args.output)
    if args.input:
        items = [item for item in items_from_file(args.input) if item not in done]
    else:
        from textgym.models import load_causal_lm, load_tokenizer
        from textgym.tasks import get_task

        prompts = get_task(args.task).prompts(args.split)[: args.num]
        items = [item for item in sample_items(load_causal_lm(args.model), load_tokenizer(args.model), prompts,
                                               args.k, args.max_new_tokens, args.seed, skip=done.ids)
                 if item not in done]
    if done:
        print(f"resuming: {len(done)} answered, {len(items)} to go")
    if args.judge or args.principle:
        judge = make_reward(args.judge) if args.judge else WeightedSum(
            {Principle(name, make_reward(spec)): weight for name, spec, weight in args.principle})
        label_with_judge(items, args.output, judge)
    elif args.web:
        from textgym.app.web import serve

        serve(items, args.output, host=args.host, port=args.port)
    else:
        # Ctrl-C is how a person stops (answers so far are saved), even when started from a shell
        # that ignores SIGINT for its background jobs.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        label_interactive(items, args.output)
    return 0


# ---------------------------------------------------------------------------------------------- loop
def _loop_parser(sub) -> None:
    p = sub.add_parser("loop", help="RLHF as a loop: feedback on the current policy, a better reward model, RL, again",
                       description="Each round samples K completions per prompt from the current policy, collects "
                                   "rankings (a person on the terminal or a web page, a judge, or a simulated "
                                   "labeler), trains the reward model on every preference so far, runs RL from the "
                                   "current policy with the KL to the SFT reference, and evaluates. Stops at a "
                                   "judge or reward threshold or after --rounds. Each round is a folder; a killed "
                                   "loop resumes where it stopped, losing no ranking.")
    p.add_argument("--config", help="JSON or TOML file of LoopConfig fields")
    _add_dataclass_flags(p, LoopConfig, suppress=True)


def loop(args: argparse.Namespace) -> int:
    """Run ``textgym loop``."""
    from textgym.app.loop import run_loop

    run_loop(_configured(args, LoopConfig))
    return 0


# ---------------------------------------------------------------------------------------------- personalize
def _personalize_parser(sub) -> None:
    p = sub.add_parser("personalize", help="a reward model and LoRA adapters per simulated user, on one shared base",
                       description="Each simulated user of the task ranks the same answers of the SFT model; each "
                                   "user's rankings train that user's reward model, and RL trains LoRA adapters per "
                                   "user on the one SFT base (the reference: the base, adapters off). Reports each "
                                   "adapter's win rate for every user on held-out questions, and the memory of "
                                   "serving the users with N adapters against N full models. A killed run resumes "
                                   "where it stopped.")
    p.add_argument("--config", help="JSON or TOML file of PersonalizeConfig fields")
    _add_dataclass_flags(p, PersonalizeConfig, suppress=True)


def personalize(args: argparse.Namespace) -> int:
    """Run ``textgym personalize``."""
    from textgym.app.personalize import run_personalization

    run_personalization(_configured(args, PersonalizeConfig))
    return 0


# --------------------------------------------------------------------------------------------- serve
def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve a registered env over OpenEnv's protocol (pip install 'textgym[openenv]')",
                       description="Serves ENV_ID (any registered Gymnasium id) with OpenEnv's server: one env per "
                                   "WebSocket session at ws://HOST:PORT/ws; OpenEnv's clients (and "
                                   "textgym.integrations.openenv.OpenEnvGymEnv) step it. Ctrl-C stops it.")
    p.add_argument("env_id", help="a registered env id, e.g. textgym/TicTacToe-v0")
    p.add_argument("--env-kwargs", default="{}", help="JSON object of gymnasium.make keyword arguments (default: {})")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 serves every interface "
                                                      "(default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    p.add_argument("--max-sessions", type=int, default=4, help="sessions open at once (default: 4)")
    p.add_argument("--max-message-bytes", type=int, default=1 << 20,
                   help="largest WebSocket message read; a bigger one closes its connection (default: 1048576)")


def serve(args: argparse.Namespace) -> int:
    """Run ``textgym serve``."""
    import json

    try:
        from textgym.integrations.openenv import make_app, run_app
    except ImportError as err:
        print(f"textgym serve: error: {err}", file=sys.stderr)
        return 2
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as err:
        raise ValueError(f"--env-kwargs must be a JSON object, got {args.env_kwargs!r} ({err})") from None
    if not isinstance(env_kwargs, dict):
        raise ValueError(f"--env-kwargs must be a JSON object, got {args.env_kwargs!r}")
    app = make_app(args.env_id, env_kwargs, max_sessions=args.max_sessions)
    print(f"serving {args.env_id} on ws://{args.host}:{args.port}/ws (OpenEnv); Ctrl-C stops", file=sys.stderr,
          flush=True)
    run_app(app, host=args.host, port=args.port, max_message_bytes=args.max_message_bytes)
    return 0


class _Parser(argparse.ArgumentParser):
    """An argument parser, and its subcommands', that takes no abbreviations.

    A renamed flag (``--kl-coef``, now ``--rl.kl-coef``) must not pass as the start of another one
    (``textgym bench overoptimization --kl-coefs``); it is refused with its new name instead.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``textgym`` command."""
    parser = _Parser(prog="textgym", description="Text generation as an RL environment, and RLHF.")
    sub = parser.add_subparsers(dest="command", required=True)
    argv = sys.argv[1:] if argv is None else argv
    kinds = argv[1:2] == ["overoptimization"] or "-h" in argv or "--help" in argv  # textgym bench's others
    for add in (_demo_parser, _train_parser, _eval_parser, functools.partial(_bench_parser, kinds=kinds),
                _label_parser, _loop_parser, _personalize_parser, _serve_parser):
        add(sub)
    args, extra = parser.parse_known_args(argv)
    if extra:  # the subcommand's own usage, not the top level's
        kind = getattr(args, "kind_parser", None)  # textgym bench overoptimization: its own flags, none moved
        if kind is not None:
            kind.error(f"unrecognized arguments: {' '.join(extra)}")
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}{_moved_flags(args.command, extra)}")
    commands = {"demo": demo, "train": train, "eval": evaluate, "bench": bench, "label": label, "loop": loop,
                "personalize": personalize, "serve": serve}
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        print("\nstopped; everything written so far is saved", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"textgym {args.command}: error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:  # training diverged (a NaN or infinite loss or KL): nothing bad was saved
        print(f"textgym {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
