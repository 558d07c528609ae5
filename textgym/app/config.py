"""The configurations of the textgym commands: one dataclass each, a docstring per field.

One configuration path: defaults -> a JSON/TOML file -> command-line flags -> :func:`validate`
(every value checked against its field's type and declared bounds before anything is created) ->
the whole config saved beside the results. The parts the pipelines share are sections declared once
and nested in each command's config (:class:`SFTConfig` as ``sft``, :class:`RLConfig` as ``rl``):
``--rl.kl-coef`` on the command line, ``[rl]`` in a TOML file, ``{"rl": {...}}`` in JSON and in a
saved config. This module imports nothing heavy: command-line help and argument errors answer at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.config import LMConfig, bounded


@dataclass
class TrainConfig(LMConfig):
    """Everything ``textgym train`` needs: the run, and the algorithm's hyperparameters; every field is a ``--flag``."""

    env: str = "textgym/Sentiment-v0"
    """A registered text env id (``textgym.ENV_IDS``; the ``textgym/`` prefix may be left out)."""
    model: str | None = None
    """The causal LM to train, also the frozen reference (embedded name, hub name or path); None: the task's."""
    reference: str | None = None
    """The frozen reference of the KL penalty, if not the model's own starting weights (e.g. the SFT model
    when training goes on from an earlier policy)."""
    reward: str | None = None
    """A reward spec (``sentiment``, ``rm:PATH``, ``keyword:great``; textgym.rewards.named); None: the task's."""
    agent: str = "ppo"
    """``ppo``, ``rloo``, ``grpo``, ``reinforce`` (agents.LM_AGENTS), or ``module:Class`` / ``file.py:Class``."""
    total_steps: int = bounded(16_384, low=1)
    """Environment steps (generated tokens over all envs and processes)."""
    num_envs: int = bounded(16, low=1)
    """Parallel contexts of the vector env (per process)."""
    group_size: int | None = bounded(None, low=1)
    """Slots that answer the same prompt (per-prompt baselines); None: 4 for rloo and grpo, else 1."""
    max_new_tokens: int | None = bounded(None, low=1)
    """Longest completion in tokens; None: the task's."""
    kl_coef: float = bounded(0.05, low=0)
    """Beta of the KL penalty to the reference (the environment's; the agent uses the same)."""
    credit: str = "end"
    """Where the reward's score is paid: end (at the last token) or token (each part at the token that earned
    it; needs a reward with parts, e.g. rm:PATH, whose head on each token is that token's part). ppo and
    reinforce use where each part was earned; rloo and grpo compare whole answers, so only the sum counts."""
    dtype: str = "float32"
    """Weights of the policy and the reference: float32, bfloat16, float16 or auto (the saved dtype)."""
    lora_r: int = bounded(0, low=0)
    """0: train every weight, with a separate frozen reference. >0: train LoRA adapters of this rank;
    the reference is the same base weights with the adapters off (half the memory)."""
    checkpoint_every: int = bounded(10, low=1)
    """Write a checkpoint every this many updates."""
    keep_checkpoints: int = bounded(2, low=1)
    """How many of the newest checkpoints to keep."""
    eval_prompts: int = bounded(64, low=0)
    """Held-out prompts evaluated at the end (0: no evaluation)."""
    out: str = "runs/train"
    """Run folder."""
    tensorboard: bool = True
    """Also log to TensorBoard (``out/tb``)."""
    threads: int = bounded(2, low=1)
    """torch threads."""
    trust_remote_code: bool = False
    """Let transformers run code shipped with a hub model (only for models you trust)."""


@dataclass
class SFTConfig:
    """Supervised fine-tuning of the base model on the task's demonstrations (the SFT model: RL's start, reference)."""

    examples: int = bounded(3000, low=1)
    """Demonstrations to fine-tune on (on helpfulness most of them curt: one tip, no more)."""
    epochs: int = bounded(6, low=1)
    """Passes over them."""


@dataclass
class RLConfig:
    """The RL step of a pipeline (run by ``textgym train``'s harness): its budget and its pull to the reference.

    Each command's config holds one as ``rl``, with the command's defaults (``BenchConfig().rl``).
    """

    total_steps: int = bounded(12_000, low=1)
    """Environment steps (tokens generated) of each RL run: the demo's, each round's, each user's, each case's."""
    kl_coef: float = bounded(0.1, low=0)
    """Beta of the KL penalty to the reference (the SFT model; in personalization the shared base, adapters off)."""
    learning_rate: float = bounded(3e-5, low=0)
    """Adam learning rate of the policy (of the LoRA adapters in personalization)."""


#: The nested sections of the command configs, by the annotation of their field (``rl: RLConfig``).
SECTIONS: dict[str, type] = {"SFTConfig": SFTConfig, "RLConfig": RLConfig}

#: Settings that moved into a section, old flat name -> new dotted name. A saved loop folder that uses an
#: old name resumes with it read at its new place; a config file or a flag that uses one is told the new one.
MOVED = {"sft_examples": "sft.examples", "sft_epochs": "sft.epochs", "kl_coef": "rl.kl_coef",
         "learning_rate": "rl.learning_rate", "ppo_learning_rate": "rl.learning_rate", "ppo_steps": "rl.total_steps",
         "steps_per_round": "rl.total_steps", "steps": "rl.total_steps", "total_steps": "rl.total_steps"}


@dataclass
class DemoConfig:
    """Budgets of ``textgym demo`` (the defaults take a few minutes on 2 CPU cores)."""

    out: str = "reports/demo"
    """Report folder (models go in its subfolders)."""
    seed: int = 0
    """Seed of every step."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """Step 1, supervised fine-tuning."""
    rm_pairs: int = bounded(3000, low=1)
    """Pairwise comparisons (from rankings) for the reward model."""
    agent: str = "ppo"
    """The RL algorithm of step 3 (any of textgym train's)."""
    rl: RLConfig = field(default_factory=lambda: RLConfig(total_steps=24_000))
    """Step 3, RL from the SFT model with the KL penalty to it."""
    eval_prompts: int = bounded(64, low=1)
    """Held-out questions evaluated before and after the RL step (the test split holds fewer: all are used)."""
    max_new_tokens: int = bounded(48, low=1)
    """Longest answer in tokens."""
    threads: int = bounded(2, low=1)
    """torch threads."""


@dataclass
class BenchConfig:
    """What ``textgym bench`` runs; lists are comma-separated."""

    cases: str = ""
    """Reward cases to run (the tasks' bench_cases; empty: all of them)."""
    agents: str = "ppo,rloo,grpo,reference"
    """Agents: any of textgym train's, and reference (sampling from the starting model)."""
    seeds: str = "0,1,2"
    """Seeds; each (case, agent) runs once per seed."""
    rl: RLConfig = field(default_factory=lambda: RLConfig(total_steps=12_288, kl_coef=0.05, learning_rate=5e-5))
    """Every training run, the same for every agent."""
    eval_prompts: int = bounded(64, low=1)
    """Held-out prompts per evaluation."""
    out: str = "runs/bench"
    """Folder of rewards.csv, rewards.json, rewards.md and rewards.png (runs go in out/runs)."""
    threads: int = bounded(2, low=1)
    """torch threads per run."""


@dataclass
class OverOptimizationConfig:
    """What the reward over-optimisation map runs (``textgym bench overoptimization``); lists take several values.

    On the command line a list is a flag followed by its values (``--kl-coefs 0 0.1``).
    """

    cases: list[str] = bounded(["sentiment-classifier", "helpfulness-rm"])
    """Reward cases: the tasks' benchmark cases (``textgym bench``'s: sentiment-classifier,
    lexicon-sentiment, rule, helpfulness-rm, detox-classifier), or ``custom`` (``--task/--reward/--judge``)."""
    agents: list[str] = bounded(["ppo", "rloo"])
    """Algorithms (``agents.LM_AGENTS`` names: ppo, rloo, grpo, reinforce)."""
    kl_coefs: list[float] = bounded([0.0, 0.03, 0.1], low=0)
    """The KL coefficients swept (beta of the penalty to the reference)."""
    seeds: list[int] = bounded([0, 1, 2])
    """Training seeds; each (case, agent, kl_coef) runs once per seed."""
    updates: int = bounded(40, low=1)
    """Updates per run."""
    eval_every: int = bounded(8, low=1)
    """Updates between evaluations (the first is before any update)."""
    batch_episodes: int = bounded(32, low=1)
    """Finished episodes per update."""
    num_envs: int = bounded(16, low=1)
    """Episodes sampled together."""
    learning_rate: float = bounded(1e-4, low=0)
    """Adam learning rate of every agent."""
    eval_prompts: int = bounded(64, low=1)
    """Completions per evaluation, one per held-out prompt (cycling over the task's test prompts)."""
    max_new_tokens: int = bounded(0, low=0)
    """Longest answer in tokens (0: the task's)."""
    eval_seed: int = 1234
    """Sampling seed of every evaluation (the same prompts and random numbers at every point)."""
    best_of: int = bounded(32, low=1)
    """The largest n of best-of-n (a power of 2): samples per prompt drawn from the reference."""
    bootstrap: int = bounded(200, low=1)
    """Bootstrap resamples of the reference's answers for the indicators' noise."""
    noise_sigmas: float = bounded(3.0, low=0)
    """The noise threshold: an indicator moved when it is this many bootstrap standard errors away."""
    relative_change: float = bounded(0.25, low=0)
    """The relative threshold: an indicator moved when it changed by this fraction of its first value."""
    sft_examples: int = bounded(3000, low=1)
    """``rm:{rm}`` cases: demonstrations for supervised fine-tuning."""
    sft_epochs: int = bounded(6, low=1)
    """``rm:{rm}`` cases: passes over them."""
    rm_pairs: list[int] = bounded([3000], low=1)
    """``rm:{rm}`` cases: preference pairs (from the task's rankings) the reward model learns from; with several
    amounts (``--rm-pairs 300 1000 3000``) each is a case of its own, ``helpfulness-rm-300`` and so on."""
    task: str = "sentiment"
    """The custom case's task (its prompts, lengths and environment)."""
    reward: str = ""
    """The custom case's proxy reward spec (``textgym train --reward``'s, e.g. ``keyword:great``)."""
    judge: str = ""
    """The custom case's gold: a reward spec whose mean is the true objective, ``utility`` (the task's hidden
    utility) or empty (the task's judge)."""
    workers: int = bounded(2, low=1)
    """Runs in parallel, each in its own process (1: all in this process)."""
    threads: int = bounded(1, low=1)
    """torch threads per process."""
    prep: str = "runs/overoptimization"
    """Folder of the fine-tuned models and reward models (built once, reused)."""
    out: str = "runs/bench"
    """Folder of the results (``benchmarks/overoptimization.py``: benchmarks/results)."""
    name: str = "overoptimization"
    """The results' file name, without ``.json`` / ``.png``."""


@dataclass
class LoopConfig:
    """What ``textgym loop`` runs: rounds of feedback, reward modelling and RL (``textgym loop --help``)."""

    out: str = "runs/loop"
    """Loop folder: one subfolder per round, and the rankings of every round."""
    task: str = "helpfulness"
    """An embedded task with an RLHF pipeline (demonstrations and rankings)."""
    feedback: str = "simulated"
    """Who ranks: simulated (a labeler with a hidden utility), terminal, web, or judge:SPEC (a reward spec)."""
    noise: float = bounded(0.5, low=0)
    """Simulated labeler: std of the Gaussian noise added to each answer's hidden utility before ranking
    (utility units: 1 = one good tip; 0 = a perfect labeler)."""
    corrections: bool = False
    """Simulated labeler: also correct each answer it can fix by striking words out (for helpfulness: other
    questions' tips and stray facts); each correction is a preference, the edited answer over the original."""
    max_new_tokens: int = bounded(48, low=1)
    """Longest answer in tokens."""
    rounds: int = bounded(3, low=1)
    """Most rounds."""
    prompts_per_round: int = bounded(300, low=1)
    """Prompts ranked per round."""
    k: int = bounded(4, low=2)
    """Completions sampled per prompt from the current policy (a ranking compares at least 2)."""
    seed_pairs: int = bounded(3000, low=0)
    """Pairs from the task's own rankings that train the first reward model (round 0's feedback)."""
    rm_epochs: float = bounded(1.0, above=0)
    """Passes of each round's reward-model training over the seed pairs and every ranking so far."""
    rm_pooling: str = "last"
    """How each round's reward model reads its score: last (the head on the last token) or answer-sum (the head
    summed over the answer's tokens: each part of an answer adds its own share)."""
    agent: str = "ppo"
    """The RL algorithm of each round (any of textgym train's)."""
    credit: str = "end"
    """Where RL pays the reward model's score: end (at the last token) or token (each token its part: with
    answer-sum pooling the head on that token, with last the change it makes to the score)."""
    rl: RLConfig = field(default_factory=RLConfig)
    """Each round's RL from the current policy, with the KL penalty to the SFT model."""
    judge_threshold: float | None = None
    """Stop once the task's judge reaches this (e.g. P(helpful) 0.6)."""
    reward_threshold: float | None = None
    """Stop once the mean reward of held-out answers reaches this."""
    eval_prompts: int = bounded(64, low=1)
    """Held-out prompts evaluated after each round."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """The supervised fine-tuning that starts the loop (round 0)."""
    host: str = "127.0.0.1"
    """feedback=web: the address of the labelers' page."""
    port: int = bounded(8765, low=0, high=65_535)
    """feedback=web: its port."""
    seed: int = 0
    """Seed of every step."""
    threads: int = bounded(2, low=1)
    """torch threads."""


@dataclass
class PersonalizeConfig:
    """What ``textgym personalize`` runs: a reward model and LoRA adapters per simulated user, on one shared base."""

    out: str = "runs/personalize"
    """Folder: ``sft/`` (the shared base and reference), ``users/NAME/`` per user, the report and the plot."""
    task: str = "helpfulness"
    """An embedded task with an RLHF pipeline and simulated users (helpfulness: brief, thorough)."""
    users: str = ""
    """Comma-separated users of the task (empty: all of them, at least two)."""
    noise: float = bounded(0.25, low=0)
    """Std of the Gaussian noise each simulated user adds to an answer's utility before ranking."""
    prompts: int = bounded(300, low=1)
    """Prompts each user ranks (the same answers of the SFT model for every user)."""
    k: int = bounded(4, low=2)
    """Answers sampled per prompt (a ranking compares at least 2)."""
    agent: str = "ppo"
    """The RL algorithm (any of textgym train's)."""
    rl: RLConfig = field(default_factory=lambda: RLConfig(kl_coef=0.05, learning_rate=3e-4))
    """Each user's RL of LoRA adapters, with the KL penalty to the shared base (adapters off)."""
    lora_r: int = bounded(8, low=1)
    """Rank of each user's LoRA adapters."""
    eval_prompts: int = bounded(128, low=1)
    """Held-out answers per adapter for the win rates (held-out questions cycled, each answer sampled anew)."""
    max_new_tokens: int = bounded(48, low=1)
    """Longest answer in tokens."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """The supervised fine-tuning of the shared base."""
    seed: int = 0
    """Seed of every step."""
    threads: int = bounded(2, low=1)
    """torch threads."""


def section_class(setting: dataclasses.Field) -> type | None:
    """The config class of a nested section (the field ``rl: RLConfig``); None for a plain setting."""
    return SECTIONS.get(str(setting.type))


def flat_fields(cls: type) -> dict[str, dataclasses.Field]:
    """Every plain field of a config class by its dotted name (a section's as ``rl.kl_coef``), in ``--help``'s order."""
    found: dict[str, dataclasses.Field] = {}
    for setting in ordered_fields(cls):
        section = section_class(setting)
        if section is None:
            found[setting.name] = setting
        else:
            found.update({f"{setting.name}.{name}": inner for name, inner in flat_fields(section).items()})
    return found


def flat_settings(cls: type) -> dict[str, Any]:
    """Every setting of a config class by its dotted name (``rl.kl_coef``), with its default, in ``--help``'s order.

    >>> list(flat_settings(BenchConfig).items())[3:6]
    [('rl.total_steps', 12288), ('rl.kl_coef', 0.05), ('rl.learning_rate', 5e-05)]
    """
    return flatten(dataclasses.asdict(cls()), [f.name for f in ordered_fields(cls)])


def flatten(values: dict[str, Any], order: list[str] | None = None) -> dict[str, Any]:
    """Nested settings under dotted names (in ``order`` if given): ``{"rl": {"kl_coef": 0.1}}`` -> ``rl.kl_coef``.

    >>> flatten({"seed": 1, "rl": {"kl_coef": 0.1, "total_steps": 8}})
    {'seed': 1, 'rl.kl_coef': 0.1, 'rl.total_steps': 8}
    """
    flat: dict[str, Any] = {}
    for key in order or values:
        if isinstance(values[key], dict):
            flat.update({f"{key}.{name}": value for name, value in flatten(values[key]).items()})
        else:
            flat[key] = values[key]
    return flat


def nest(values: dict[str, Any]) -> dict[str, Any]:
    """Dotted names as nested settings, the inverse of :func:`flatten`.

    >>> nest({"seed": 1, "rl.kl_coef": 0.1, "rl": {"total_steps": 8}})
    {'seed': 1, 'rl': {'kl_coef': 0.1, 'total_steps': 8}}
    """
    nested: dict[str, Any] = {}
    for key, value in values.items():
        head, dot, rest = key.partition(".")
        if dot or isinstance(value, dict):
            section = nested.setdefault(head, {})
            section.update(nest({rest: value}) if dot else nest(value))
        else:
            nested[key] = value
    return nested


def build_config(cls: type, values: dict[str, Any]) -> Any:
    """A ``cls`` from nested ``values``; a section's settings left out keep ``cls``'s defaults (not the section's).

    >>> build_config(BenchConfig, {"seeds": "0", "rl": {"kl_coef": 0.2}}).rl
    RLConfig(total_steps=12288, kl_coef=0.2, learning_rate=5e-05)
    """
    defaults, settings = cls(), {}
    for setting in dataclasses.fields(cls):
        if setting.name in values:
            value = values[setting.name]
            if section_class(setting) is not None and isinstance(value, dict):
                value = dataclasses.replace(getattr(defaults, setting.name), **value)
            settings[setting.name] = value
    return cls(**settings)


def moved_to(cls: type, name: str) -> str | None:
    """Where a setting of an earlier textgym went in ``cls`` (``kl_coef`` -> ``rl.kl_coef``); None: it did not move."""
    known = flat_settings(cls)
    return MOVED.get(name) if name not in known and MOVED.get(name) in known else None


def changed_settings(saved: dict[str, Any], cfg: Any, may_change: Any) -> list[str]:
    """The settings of ``cfg`` that differ from a ``saved`` copy, as ``"name: saved X, now Y"`` (dotted names).

    A setting the saved copy lacks (added to textgym since) counts as its default; one saved under its
    old flat name (:data:`MOVED`) is read at its new place; those in ``may_change`` are not compared.
    """
    now = flatten(json.loads(json.dumps(dataclasses.asdict(cfg))))
    defaults = flatten(json.loads(json.dumps(dataclasses.asdict(type(cfg)()))))
    before = {**defaults, **{moved_to(type(cfg), k) or k: v for k, v in flatten(saved).items()}}
    return [f"{k}: saved {before.get(k)!r}, now {v!r}" for k, v in now.items()
            if before.get(k) != v and k not in may_change]


def ordered_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of a config dataclass, its own first, then those it extends (the run before the algorithm)."""
    own = cls.__dict__.get("__annotations__", {})
    fields = dataclasses.fields(cls)
    return [f for f in fields if f.name in own] + [f for f in fields if f.name not in own]


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass and of the dataclasses it extends; a section's by dotted name."""
    import ast
    import inspect

    docs: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        class_def = ast.parse(inspect.getsource(klass)).body[0]
        body = class_def.body if isinstance(class_def, ast.ClassDef) else []
        for node, following in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)):
                docs[node.target.id] = " ".join(str(following.value.value).split())
    for setting in dataclasses.fields(cls):
        section = section_class(setting)
        if section is not None:
            docs.update({f"{setting.name}.{name}": doc for name, doc in field_docs(section).items()})
    return docs


def load_config_file(path: str | Path, cls: type = TrainConfig) -> dict[str, Any]:
    """Read a JSON or TOML config as nested settings; an unknown key is an error that names it and lists the known keys.

    A section's settings go in its table (TOML ``[rl]`` / ``rl.kl_coef = 0.1``; JSON ``{"rl": {"kl_coef": 0.1}}``
    or ``{"rl.kl_coef": 0.1}``).

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        ValueError: If it is not .json or .toml, cannot be parsed (the message names the file and the
            parser's line and column), holds something other than a table of settings, or an unknown key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    parse: Callable[[str], Any]
    error: type[ValueError]  # both decoders' errors are ValueErrors
    if path.suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:
            import tomli as tomllib

        parse, kind, error = tomllib.loads, "TOML", tomllib.TOMLDecodeError
    elif path.suffix == ".json":
        parse, kind, error = json.loads, "JSON", json.JSONDecodeError
    else:
        raise ValueError(f"config file {path}: write it as .json or .toml")
    try:
        values = parse(path.read_text())
    except (error, UnicodeDecodeError) as err:
        raise ValueError(f"config file {path} is not valid {kind}: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a table of settings (a JSON object such as "
                         f'{{"kl_coef": 0.1}}), not a {type(values).__name__}')
    sections = {f.name for f in dataclasses.fields(cls) if section_class(f) is not None}
    for key, value in values.items():
        if key in sections and not isinstance(value, dict):
            raise ValueError(f"config file {path}: {key} is a table of settings ([{key}] in TOML, "
                             f'"{key}": {{...}} in JSON), not {value!r}')
    known = list(flat_settings(cls))
    for key in flatten(values):
        if key not in known:
            new = moved_to(cls, key)
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (now {new!r})" if new else f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"config file {path}: unknown key {key!r}{hint}; known keys: {', '.join(known)}")
    return nest(values)


def read_saved_config(path: str | Path, key: str | None = None) -> dict[str, Any]:
    """The config a run or loop folder saved (``path``, JSON; under ``key`` if given), errors naming the file.

    Raises:
        ValueError: If the file is not valid JSON or holds no table of settings (where told, under ``key``).
    """
    try:
        saved = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}): the folder's saved config is damaged; restore it, "
                         "or start a new run in another folder") from None
    values = saved.get(key) if key is not None and isinstance(saved, dict) else saved
    if not isinstance(values, dict):
        where = f" under {key!r}" if key is not None else ""
        raise ValueError(f"{path} holds no table of settings{where}: the folder's saved config is damaged; "
                         "restore it, or start a new run in another folder")
    return values


def validate(cfg: Any, prefix: str = "") -> None:
    """Check every setting of a config dataclass, its sections' too, against its type and its declared bounds.

    A field's bounds are declared once, in its metadata (:func:`agents.config.bounded`): counts that must
    be positive (``rounds``, ``k`` >= 2, ``rl.total_steps``), rates and coefficients that must not be
    negative, numbers that must be finite. A field without bounds is checked for its type only; None
    (where a field allows it) is never out of bounds; a list (``kl_coefs: list[float]``) must hold at
    least one value, and each is checked as a setting of its own. Errors name the setting as a dotted name
    (``rl.kl_coef``).

    Raises:
        ValueError: A value of the wrong type (``num_envs = 2.5``, ``kl_coef = "0.1"``, ``tensorboard = "no"``),
            a number that is not finite, one outside its field's bounds (``gamma = -5``), or an empty list.
    """
    for setting in dataclasses.fields(cfg):
        name, value, kind = prefix + setting.name, getattr(cfg, setting.name), str(setting.type)
        section = section_class(setting)
        if section is not None:
            if not isinstance(value, section):
                raise ValueError(f"{name} must be a section of {section.__name__} settings, got {value!r}")
            validate(value, f"{name}.")
            continue
        optional = kind.endswith(" | None")
        base = kind.removesuffix(" | None").strip()
        if value is None and optional:
            continue
        if base.startswith("list["):
            _check_list(name, setting, base.removeprefix("list[").removesuffix("]"), value)
            continue
        expected = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}[base]
        if not isinstance(value, expected) or (base != "bool" and isinstance(value, bool)):
            raise ValueError(f"{name} must be {_article(base)}{' or None' if optional else ''}, "
                             f"got {value!r} ({type(value).__name__})")
        _check_value(name, setting, value)


def _check_value(name: str, setting: dataclasses.Field, value: Any) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):  # a str or bool setting: no bounds
        return
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    _check_bounds(name, setting.metadata, value)


def _check_list(name: str, setting: dataclasses.Field, base: str, values: Any) -> None:
    """A list setting (``kl_coefs: list[float]``): at least one value, each of the type and within the bounds."""
    if not isinstance(values, list) or not values:
        raise ValueError(f"{name} must be a list of at least one value, got {values!r}")
    expected = {"int": (int,), "float": (int, float), "str": (str,)}[base]
    for value in values:
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ValueError(f"each of {name} must be {_article(base)}, got {value!r} ({type(value).__name__})")
        _check_value(name, setting, value)


def _check_bounds(name: str, bounds: Any, value: float) -> None:
    low, high, above = bounds.get("low"), bounds.get("high"), bounds.get("above")
    if above is not None and not value > above:
        raise ValueError(f"{name} must be " + (f"in ({above}, {high}]" if high is not None else f"> {above}")
                         + f", got {value}")
    if low is not None and high is not None and not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")


def _article(kind: str) -> str:
    return {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string"}[kind]
