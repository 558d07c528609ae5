"""``textgym train``: the run harness. Any agent, any causal LM, text environment and reward; resumable.

One configuration path: :class:`textgym.app.config.TrainConfig` (a docstring per field) ->
command-line flags or a JSON/TOML file -> :func:`check_config` and :func:`make_run_reward` (everything
validated, and the reward built once, before anything is created) -> the whole config saved as
``config.json`` beside the results. A run folder holds:

- ``config.json``: the config and the sizes derived from it;
- ``metrics.csv`` and ``tb/`` (TensorBoard): one row per update under fixed metric names
  (``objective/score``, ``objective/kl``, ``losses/policy_loss``, ``charts/SPS``, ...);
- ``checkpoints/update-NNNNNN/``: every ``checkpoint_every`` updates, written to a temporary folder
  and renamed into place, so a run killed at any moment (even by SIGKILL) leaves only whole
  checkpoints; the ``keep_checkpoints`` newest are kept. Each is a model folder (weights or LoRA
  adapters, and the tokenizer) and the agent's state. ``--resume`` starts from the newest that
  loads: one that does not (truncated weights, a missing file) is renamed ``damaged-update-NNNNNN``
  with a warning naming it, and the run goes on from the one before. A run folder that was moved or
  copied resumes where it is now;
- ``policy/`` (``save_pretrained`` and the tokenizer), ``eval.json`` and ``reward_scores.png`` at the end.

The agent is any class of the agent protocol (:mod:`agents`): built as ``Class(model, tokenizer,
config)``, resumed with ``Class.load(folder)``. The harness drives its ``learn`` and stops it after
every checkpoint; each ``learn`` starts fresh episodes seeded from the update count, so ``--resume``
from the last checkpoint reaches the same final weights and metrics as an uninterrupted run with the
same seed, bit for bit (on CPU).

A run that diverges (a loss, gradient or KL that is not finite) stops before the step that would
spoil its weights, with :class:`FloatingPointError` (``textgym train`` exits 1): the checkpoints
written so far stay, and no ``policy/`` is saved. ``num_envs`` whose KV caches alone would exceed
the free memory is refused before anything is created.

Several processes: under ``accelerate launch`` every process trains (data parallelism through
accelerate) and rolls out its own ``num_envs`` episodes; only the main process writes files.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textgym.app.config import TrainConfig, changed_settings, read_saved_config, validate
from textgym.app.files import atomic_write, available_memory, fsync_tree, peak_rss_mib

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

#: Metrics that measure time: logged, but not part of what a resumed run must reproduce.
TIMING_METRICS = ("charts/SPS",)
#: Settings a resumed run may change: none of them touches the training itself (``out`` may differ
#: too: a run folder that was moved or copied resumes where it is now).
RESUME_MAY_CHANGE = ("eval_prompts", "keep_checkpoints", "out", "tensorboard", "threads", "total_steps")


def resolve_env_id(name: str) -> str:
    """The registered text env id for ``name``; the error lists the known ones."""
    import textgym

    env_id = name if name.startswith("textgym/") else f"textgym/{name}"
    text_ids = [i for i, (entry, _, _) in textgym.ENV_IDS.items() if entry == "textgym.tasks:make_env"]
    if env_id not in text_ids:
        toy = " (TicTacToe-v0 is a toy env: train it with agents.ppo.PPO, see examples/tictactoe_lesson.py)" \
            if env_id in textgym.ENV_IDS else ""
        raise ValueError(f"unknown text env {name!r}{toy}; known text envs: {', '.join(text_ids)}")
    if env_id == "textgym/TinyLanguage-v0":
        raise ValueError("textgym/TinyLanguage-v0 has an exact bigram reference, not a causal LM to fine-tune: "
                         "train it with agents.ppo.PPO as in examples/reward_hacking.py")
    return env_id


def check_config(cfg: TrainConfig) -> dict[str, Any]:
    """Validate ``cfg`` and compute the sizes derived from it (saved beside the config); creates and loads nothing.

    Types and bounds are checked first, before torch and the agents are imported, so a bad value is
    named at once. The reward spec is checked where the reward is built, once (:func:`make_run_reward`):
    a learned reward model is loaded only then.
    """
    validate(cfg)
    import textgym
    from agents import agent_class
    from textgym.models import as_dtype, resolve
    from textgym.models.sampling import Sampling
    from textgym.tasks import DEFAULT_MODEL, get_task

    env_id = resolve_env_id(cfg.env)
    klass = agent_class(cfg.agent)
    Sampling(cfg.temperature, cfg.top_k, cfg.top_p)  # temperature > 0, top_k >= 0, 0 < top_p <= 1
    group_size = cfg.group_size if cfg.group_size is not None else getattr(klass, "group_size", 1)
    if group_size < 1 or cfg.num_envs % group_size or cfg.batch_episodes % group_size:
        raise ValueError(f"group_size={group_size} must divide num_envs={cfg.num_envs} and "
                         f"batch_episodes={cfg.batch_episodes}")
    if hasattr(klass, "check_group_size"):
        klass.check_group_size(group_size)
    as_dtype(cfg.dtype)
    for name in ("model", "reference"):
        if getattr(cfg, name) is not None:
            resolve(getattr(cfg, name))  # a missing local folder fails here, before anything is created
    if cfg.reference is not None and cfg.lora_r:
        raise ValueError("reference and lora_r exclude each other: with LoRA the reference is the base model "
                         "with the adapters off")
    task = get_task(textgym.ENV_IDS[env_id][2].get("task", "sentiment"))
    from textgym.envs.core import CREDITS

    if cfg.credit not in CREDITS:
        raise ValueError(f"credit must be end or token, got {cfg.credit!r}")
    if cfg.reward is None and cfg.credit == "token":
        raise ValueError("credit=token needs a reward that scores per token: pass --reward rm:PATH")
    return {"env_id": env_id, "task": task.name, "model": cfg.model or DEFAULT_MODEL,
            "reward": cfg.reward or "(the task's)", "agent_class": f"{klass.__module__}:{klass.__qualname__}",
            "group_size": group_size,
            "max_new_tokens": task.max_new_tokens if cfg.max_new_tokens is None else cfg.max_new_tokens,
            "max_context": task.max_context}


def make_run_reward(cfg: TrainConfig) -> Any:
    """The reward ``cfg.reward`` names, built once for the run and checked against ``cfg.credit``; None: the task's.

    Called before the run folder is created, so an unknown name or a missing reward model is named
    before anything is written; the env then scores with this same object (a reward model is loaded once).

    Raises:
        ValueError: An unknown reward, or ``credit=token`` with a reward that does not score per token.
    """
    if cfg.reward is None:
        return None
    from textgym.tasks.rewards import make_reward

    reward = make_reward(cfg.reward)
    if cfg.credit == "token" and not callable(getattr(reward, "parts", None)):
        raise ValueError(f"credit=token needs a reward that scores per token (rm:PATH); {cfg.reward} does not")
    return reward


class RunFolder:
    """A run's files: config, metrics (CSV + TensorBoard) and atomic checkpoints."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.checkpoints = self.out / "checkpoints"

    def latest_checkpoint(self) -> Path | None:
        """The newest whole checkpoint (temporary folders of an interrupted write are ignored)."""
        done = self.whole_checkpoints()
        return done[0] if done else None

    def whole_checkpoints(self) -> list[Path]:
        """The checkpoints written whole (temporary folders of an interrupted write are ignored), newest first."""
        return sorted(self.checkpoints.glob("update-*"), reverse=True) if self.checkpoints.is_dir() else []

    def start(self, cfg: TrainConfig, derived: dict, resume: bool) -> list[Path]:
        """Create or reopen the folder; returns the checkpoints to resume from, newest first (none: start afresh)."""
        saved = self.out / "config.json"
        if saved.is_file() and not resume:
            raise FileExistsError(f"{self.out} already holds a run: pass --resume to continue it, "
                                  f"or choose another --out")
        if resume and not saved.is_file():
            raise FileNotFoundError(f"cannot resume {self.out}: it holds no run (no config.json); "
                                    "leave out --resume to start one")
        if resume:
            changed = changed_settings(read_saved_config(saved, "config"), cfg, RESUME_MAY_CHANGE)
            if changed:
                raise ValueError(f"cannot resume {self.out}: it was started with a different config ("
                                 + "; ".join(changed) + "). Rerun with the same config (only "
                                 + ", ".join(RESUME_MAY_CHANGE) + " may change), or choose another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write(saved, json.dumps({"config": asdict(cfg), "derived": derived}, indent=2))
        if self.checkpoints.is_dir():
            for stale in self.checkpoints.glob(".tmp-*"):  # an interrupted checkpoint write
                shutil.rmtree(stale)
        return self.whole_checkpoints() if resume else []

    def set_aside(self, checkpoint: Path) -> Path:
        """Rename a checkpoint that cannot be loaded to ``damaged-update-NNNNNN`` (kept, never resumed from)."""
        damaged = checkpoint.with_name(f"damaged-{checkpoint.name}")
        shutil.rmtree(damaged, ignore_errors=True)
        os.replace(checkpoint, damaged)
        return damaged

    def save_checkpoint(self, agent: Any, rows: list[dict], keep: int) -> Path:
        """Write the agent and the metrics so far to a temporary folder, then rename it into place."""
        final = self.checkpoints / f"update-{agent.updates:06d}"
        tmp = self.checkpoints / f".tmp-update-{agent.updates:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        agent.save(tmp)
        (tmp / "metrics.json").write_text(json.dumps(rows))
        fsync_tree(tmp)
        os.replace(tmp, final)
        for old in sorted(self.checkpoints.glob("update-*"))[:-keep]:
            shutil.rmtree(old)
        return final

    def write_metrics(self, rows: list[dict]) -> None:
        """Rewrite ``metrics.csv`` with ``rows`` (atomically: on resume it drops rows past the checkpoint)."""
        if not rows:
            atomic_write(self.out / "metrics.csv", "")
            return
        tmp = self.out / ".metrics.csv.tmp"
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.out / "metrics.csv")

    def append_metrics(self, row: dict) -> None:
        """Append one update's row to ``metrics.csv``."""
        path = self.out / "metrics.csv"
        fresh = not path.is_file() or path.stat().st_size == 0
        with open(path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if fresh:
                writer.writeheader()
            writer.writerow(row)


def load_agent(cfg: TrainConfig, derived: dict, checkpoint: Path | None, accelerator: Any) -> Any:
    """The agent: fresh from ``derived["model"]``, or resumed from ``checkpoint``."""
    from agents import agent_class
    from textgym.models import load_causal_lm, load_tokenizer

    klass = agent_class(cfg.agent)
    dtype = None if cfg.dtype == "auto" else cfg.dtype
    if checkpoint is not None:
        return klass.load(checkpoint, accelerator, dtype=dtype)
    model = load_causal_lm(derived["model"], trust_remote_code=cfg.trust_remote_code, dtype=dtype)
    policy: PreTrainedModel | PeftModel = model
    if cfg.lora_r:
        from agents.lora import lora_policy

        policy = lora_policy(model, r=cfg.lora_r, alpha=2 * cfg.lora_r)
    fields = {f.name for f in dataclasses.fields(getattr(klass, "config_class", type(cfg)))}
    config = getattr(klass, "config_class", type(cfg))(**{k: v for k, v in asdict(cfg).items() if k in fields})
    return klass(policy, load_tokenizer(derived["model"], trust_remote_code=cfg.trust_remote_code), config,
                 accelerator)


def resume_newest(folder: RunFolder, candidates: list[Path], load: Any, main: bool = True) -> tuple[Path, Any]:
    """``(checkpoint, load(checkpoint))`` for the newest of ``candidates`` (newest first) that loads.

    A checkpoint that cannot be loaded (truncated weights, a missing file) is skipped with a warning that
    names it, and (by the main process) renamed to ``damaged-update-NNNNNN``, so the run goes on from
    the one before and later checkpoints take its place.

    Raises:
        Exception: The oldest candidate's error, if none of them loads.
        MemoryError: Out of memory while loading (``torch.OutOfMemoryError`` too): no checkpoint is set aside.
        ValueError: If there are no candidates.
    """
    import torch

    for position, checkpoint in enumerate(candidates):
        try:
            return checkpoint, load(checkpoint)
        except (MemoryError, torch.OutOfMemoryError):  # the machine's trouble, not the checkpoint's
            raise
        except Exception as err:  # any damage to a checkpoint: the one before may be whole
            if position == len(candidates) - 1:
                raise
            kept = folder.set_aside(checkpoint).name if main else checkpoint.name
            warnings.warn(f"checkpoint {checkpoint} cannot be loaded ({type(err).__name__}: {err}); resuming from "
                          f"the one before, {candidates[position + 1].name} (the damaged one is kept as {kept})",
                          stacklevel=2)
    raise ValueError(f"{folder.out} holds no checkpoint to resume from")


def check_memory(cfg: TrainConfig, derived: dict, device: Any) -> None:
    """Refuse ``cfg.num_envs`` slots whose per-slot buffers alone would not fit in the memory free on ``device``.

    Each slot holds the policy's and the reference's KV caches over its window (context and
    completion), a few vocabulary-wide rows of fp32 log-probabilities, and its observation. This is
    a lower bound on what the run needs (batches, activations and the models come on top), read from
    the model's config (a local folder or the hub's cache, never the network) before anything is
    loaded. A config that cannot be read so is left to the model loading that follows.

    Raises:
        ValueError: If the estimate exceeds the free memory (the message gives both).
    """
    from transformers import AutoConfig

    from textgym.models import resolve

    try:
        config = AutoConfig.from_pretrained(resolve(derived["model"]), trust_remote_code=cfg.trust_remote_code,
                                            local_files_only=True)  # never the network: a hub model not cached
        layers, width, vocab = (int(getattr(config, name)) for name in ("num_hidden_layers", "hidden_size",
                                                                          "vocab_size"))
    except Exception:  # a model this cannot size: loading it next reports what is wrong
        return
    saved = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)  # the newer name first
    dtype = str(saved) if cfg.dtype == "auto" else cfg.dtype
    element = 2 if dtype.removeprefix("torch.") in ("bfloat16", "float16") else 4
    window = derived["max_context"] + derived["max_new_tokens"]
    per_slot = 2 * 2 * layers * width * window * element + 4 * vocab * 4 + 2 * window * 8
    free = available_memory(device)
    if free is not None and cfg.num_envs * per_slot > free:
        raise ValueError(f"num_envs={cfg.num_envs:,} needs at least {cfg.num_envs * per_slot / 2**30:,.1f} GiB for "
                         f"its slots' KV caches and log-probabilities ({per_slot / 2**20:.2f} MiB each), but "
                         f"{free / 2**30:.1f} GiB are free on {device}; use at most "
                         f"--num-envs {max(1, free // per_slot):,}")


def build_envs(cfg: TrainConfig, derived: dict, agent: Any, accelerator: Any, reward: Any = None) -> Any:
    """The vector env, its reference on the agent's device (the same weights with LoRA, adapters off).

    ``reward``: the run's reward function (:func:`make_run_reward`); None: the task's, built by the env.
    """
    import gymnasium as gym

    from textgym.models import load_causal_lm

    if cfg.lora_r:
        from agents.lora import AdapterDisabledReference

        reference = AdapterDisabledReference(agent.model)  # the same weights, adapters off
    else:
        from textgym.models.precision import compute_frozen_in_fp32

        reference = load_causal_lm(cfg.reference or derived["model"], trust_remote_code=cfg.trust_remote_code,
                                   dtype=None if cfg.dtype == "auto" else cfg.dtype).to(accelerator.device)
        compute_frozen_in_fp32(reference.requires_grad_(False))  # where bf16 is emulated
    env_kwargs: dict[str, Any] = {"model": reference, "tokenizer": agent.tokenizer, "kl_coef": cfg.kl_coef,
                                  "max_new_tokens": derived["max_new_tokens"], "ref_scoring": "episode",
                                  "temperature": cfg.temperature}
    if cfg.credit != "end":
        env_kwargs["credit"] = cfg.credit
    if reward is not None:
        env_kwargs["reward_fn"] = reward
    return gym.make_vec(derived["env_id"], num_envs=cfg.num_envs, group_size=derived["group_size"],
                        vectorization_mode="vector_entry_point", **env_kwargs)


def check_launch(env: Mapping[str, str] | None = None) -> None:
    """Refuse a launch that asked for several CPU processes and got one.

    ``accelerate launch --cpu --num_processes N`` starts a single process (accelerate issue #2741):
    it sets the rendezvous address but no world size. Several CPU processes come from
    ``ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N`` (torchrun underneath).
    """
    environ = os.environ if env is None else env
    sizes = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
    if environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") and "MASTER_ADDR" in environ \
            and not any(name in environ for name in sizes):
        raise ValueError("`accelerate launch --cpu --num_processes N` starts one process, not N (accelerate issue "
                         "#2741); for N CPU processes run `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu "
                         "--num_processes N ...`")


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a training run; returns the final metrics (last update and evaluation)."""
    check_launch()
    derived = check_config(cfg)
    reward = make_run_reward(cfg)
    import torch
    from accelerate import Accelerator

    from textgym.eval.report import fixed

    torch.set_num_threads(cfg.threads)
    accelerator = Accelerator()
    main = accelerator.is_main_process
    check_memory(cfg, derived, accelerator.device)  # before the folder and any allocation
    folder = RunFolder(cfg.out)
    candidates = folder.start(cfg, derived, resume) if main else []
    if accelerator.num_processes > 1:  # every process resumes from the checkpoints the main one found
        from accelerate.utils import broadcast_object_list

        candidates = broadcast_object_list([candidates])[0]
    if candidates:
        checkpoint, (agent, rows) = resume_newest(folder, candidates, lambda path: (
            load_agent(cfg, derived, path, accelerator), json.loads((path / "metrics.json").read_text())), main)
    else:
        checkpoint, agent, rows = None, load_agent(cfg, derived, None, accelerator), []
    envs = build_envs(cfg, derived, agent, accelerator, reward)
    writer = None
    if main:
        folder.write_metrics(rows)
        writer = _tensorboard(cfg, folder, rows)
    say = print if (progress and main) else (lambda *a, **k: None)
    if checkpoint:
        say(f"resuming {cfg.out} from {checkpoint.name} (step {agent.global_step:,})", flush=True)
    began, first_step = time.perf_counter(), agent.global_step

    def on_update(row: dict) -> bool:
        rows.append(row)
        say(f"update {agent.updates:>4}  step {row['global_step']:>7,}/{cfg.total_steps:,}  "
            f"score {fixed(row['objective/score'], sign=True)}  KL {fixed(row['objective/kl'])}  "
            f"{row['charts/SPS']:.0f} tokens/s",
            flush=True)
        if main:
            folder.append_metrics(row)
            if writer is not None:
                for key, value in row.items():
                    writer.add_scalar(key, value, row["global_step"])
        if agent.updates % cfg.checkpoint_every:
            return False
        if main:
            folder.save_checkpoint(agent, rows, cfg.keep_checkpoints)
        accelerator.wait_for_everyone()
        return True  # stop learn() at the checkpoint (every batch starts fresh episodes: nothing else to save)

    try:
        while agent.global_step < cfg.total_steps:
            agent.learn(envs, cfg.total_steps, on_update)
    except FloatingPointError as err:  # a non-finite loss, gradient or KL: the weights are not worth saving
        last = folder.latest_checkpoint()
        kept = f"The last good checkpoint, {last}, is kept" if last else "No checkpoint had been written yet"
        raise FloatingPointError(f"training diverged after {agent.updates} updates: {err}. {kept}, and no policy "
                                 "was saved: lower --learning-rate or --kl-coef and start a new run (another --out)"
                                 ) from err
    seconds = time.perf_counter() - began
    result: dict[str, Any] = {"train": {k: v for k, v in rows[-1].items() if k not in TIMING_METRICS} if rows else {},
                              "minutes": seconds / 60, "tokens_per_s": (agent.global_step - first_step) / seconds,
                              "peak_rss_mib": peak_rss_mib()}
    if main:
        if writer is not None:
            writer.close()
        agent.module.save_pretrained(folder.out / "policy")
        agent.tokenizer.save_pretrained(folder.out / "policy")
        if cfg.eval_prompts:
            result["eval"] = _evaluate(cfg, derived, envs, agent, say)
        atomic_write(folder.out / "eval.json", json.dumps(result, indent=2))
    accelerator.wait_for_everyone()
    if accelerator.num_processes > 1 and hasattr(agent, "close"):
        agent.close()  # tears the process group down in an order that cannot deadlock at exit
    return result


def _tensorboard(cfg: TrainConfig, folder: RunFolder, rows: list[dict]):
    """A SummaryWriter that drops events past the resumed checkpoint (None if turned off)."""
    if not cfg.tensorboard:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder.out / "tb"), purge_step=rows[-1]["global_step"] + 1 if rows else 0)


def _evaluate(cfg: TrainConfig, derived: dict, envs: Any, agent: Any, say) -> dict[str, Any]:
    """Reference model vs trained policy on held-out prompts; writes ``reward_scores.png``."""
    from textgym.eval.report import fixed, plot_scores
    from textgym.tasks.evaluation import evaluate_policy

    core = envs.unwrapped.core
    reference, reward_fn = core.reference, core.reward_fn
    results = {}
    for name, model in (("reference", reference), ("policy", agent.model)):
        results[name] = evaluate_policy(model, agent.tokenizer, derived["task"], reward_fn, reference,  # same prompts
                                        num_prompts=cfg.eval_prompts, max_new_tokens=derived["max_new_tokens"],
                                        seed=cfg.seed)
    plot_scores(results, Path(cfg.out) / "reward_scores.png")
    for name, values in results.items():
        say(f"{name:>9}: reward {values['reward']['mean']:+.3f}, KL {fixed(values.get('kl_to_reference', 0))}, "
            f"distinct-2 {values['distinct_2']:.3f}", flush=True)
    return {name: {k: v for k, v in values.items() if k not in ("prompts",)} for name, values in results.items()}
