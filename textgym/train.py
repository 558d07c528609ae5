"""``textgym train``: PPO or RLOO on any causal LM, text environment and reward, resumable.

One configuration path: :class:`TrainConfig` (a docstring per field) -> command-line flags or a
JSON/TOML file -> the whole config saved as ``config.json`` beside the results. A run folder holds:

- ``config.json``: the config and the sizes derived from it;
- ``metrics.csv`` and ``tb/`` (TensorBoard): one row per update under fixed metric names
  (``objective/score``, ``objective/kl``, ``losses/policy_loss``, ``charts/SPS``, ...);
- ``checkpoints/update-NNNNNN/``: every ``checkpoint_every`` updates, written to a temporary folder
  and renamed into place, so a run killed at any moment (even by SIGKILL) leaves only whole
  checkpoints; the ``keep_checkpoints`` newest are kept;
- ``policy/`` (``save_pretrained``, loadable by plain transformers), ``eval.json`` and
  ``reward_scores.png`` at the end.

Determinism: rollouts restart at every checkpoint with seeds derived from the update count
(:meth:`agents.lm_ppo.LMPPO.learn`), so ``--resume`` from the last checkpoint reaches the same
final weights and metrics as an uninterrupted run with the same seed, bit for bit (on CPU).
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import json
import os
import resource
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

import textgym
from textgym.tasks import DEFAULT_MODEL, get_task

AGENTS = ("ppo", "rloo")
#: Metrics that measure time: logged, but not part of what a resumed run must reproduce.
TIMING_METRICS = ("charts/SPS",)
#: Settings a resumed run may change: none of them touches the training itself.
RESUME_MAY_CHANGE = ("eval_prompts", "keep_checkpoints", "tensorboard")


@dataclass
class TrainConfig:
    """Everything ``textgym train`` needs; every field is also a ``--flag``."""

    env: str = "textgym/Sentiment-v0"
    """A registered text env id (``textgym.ENV_IDS``; the ``textgym/`` prefix may be left out)."""
    model: str | None = None
    """The causal LM to train, also the frozen reference (embedded name, hub name or path); None: the task's."""
    reward: str | None = None
    """A reward spec (``sentiment``, ``rm:PATH``, ``keyword:great``; textgym.rewards.named); None: the task's."""
    agent: str = "ppo"
    """``ppo`` (value head, GAE) or ``rloo`` (leave-one-out baseline, no value head)."""
    total_steps: int = 16_384
    """Environment steps (generated tokens over all envs)."""
    num_envs: int = 16
    """Parallel contexts of the vector env."""
    max_new_tokens: int | None = None
    """Longest completion in tokens; None: the task's."""
    kl_coef: float = 0.05
    """Beta of the KL penalty to the reference."""
    kl_setpoint: float | None = None
    """If set, an adaptive controller steers kl_coef toward this KL per episode."""
    learning_rate: float = 5e-5
    """Adam learning rate."""
    batch_episodes: int = 32
    """Finished episodes per update."""
    num_minibatches: int = 2
    """Minibatches per update epoch."""
    update_epochs: int = 2
    """Passes over each batch."""
    clip_coef: float = 0.2
    """PPO ratio clipping."""
    ent_coef: float = 0.0
    """Entropy bonus."""
    gae_lambda: float = 1.0
    """PPO's GAE lambda. 1 (returns minus the value baseline) because the reward comes at the end: with
    less, a value head still learning the reward's scale bootstraps low, ending early looks better than
    going on, and PPO learns to cut answers short."""
    temperature: float = 1.0
    """Sampling temperature while acting."""
    seed: int = 0
    """Seed of the initialisation, the episodes and the sampling."""
    checkpoint_every: int = 10
    """Write a checkpoint every this many updates."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep."""
    eval_prompts: int = 64
    """Held-out prompts evaluated at the end (0: no evaluation)."""
    out: str = "runs/train"
    """Run folder."""
    tensorboard: bool = True
    """Also log to TensorBoard (``out/tb``)."""
    threads: int = 2
    """torch threads."""
    trust_remote_code: bool = False
    """Let transformers run code shipped with a hub model (only for models you trust)."""


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML config; an unknown key is an error that names it and lists the known keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    if path.suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib

        values = tomllib.loads(path.read_text())
    elif path.suffix == ".json":
        values = json.loads(path.read_text())
    else:
        raise ValueError(f"config file {path}: write it as .json or .toml")
    known = [f.name for f in dataclasses.fields(TrainConfig)]
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"config file {path}: unknown key {key!r}{hint}; known keys: {', '.join(known)}")
    return values


def resolve_env_id(name: str) -> str:
    """The registered text env id for ``name``; the error lists the known ones."""
    env_id = name if name.startswith("textgym/") else f"textgym/{name}"
    text_ids = [i for i, (entry, _, _) in textgym.ENV_IDS.items() if entry.startswith("textgym.envs.text_generation")]
    if env_id not in text_ids:
        toy = " (TicTacToe-v0 is a toy env: train it with agents.ppo.PPO, see examples/tictactoe_lesson.py)" \
            if env_id in textgym.ENV_IDS else ""
        raise ValueError(f"unknown text env {name!r}{toy}; known text envs: {', '.join(text_ids)}")
    if env_id == "textgym/TinyLanguage-v0":
        raise ValueError("textgym/TinyLanguage-v0 has an exact bigram reference, not a causal LM to fine-tune: "
                         "train it with agents.ppo.PPO as in examples/reward_hacking.py")
    return env_id


def check_config(cfg: TrainConfig) -> dict[str, Any]:
    """Validate ``cfg`` and compute the sizes derived from it (saved beside the config)."""
    env_id = resolve_env_id(cfg.env)
    if cfg.agent not in AGENTS:
        raise ValueError(f"unknown agent {cfg.agent!r}; known agents: {', '.join(AGENTS)}")
    for name in ("total_steps", "num_envs", "batch_episodes", "num_minibatches", "update_epochs", "checkpoint_every",
                 "keep_checkpoints"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    task = get_task(textgym.ENV_IDS[env_id][2].get("task", "sentiment"))
    if cfg.reward is not None:
        from textgym.rewards.named import make_reward

        make_reward(cfg.reward)  # an unknown name fails here, before any model loads
    return {"env_id": env_id, "task": task.name, "model": cfg.model or DEFAULT_MODEL,
            "reward": cfg.reward or "(the task's)", "max_new_tokens": cfg.max_new_tokens or task.max_new_tokens,
            "max_context": task.max_context}


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB.

    Linux's ``VmHWM`` starts afresh with each new program; ``ru_maxrss`` would carry over the
    parent's peak into a spawned child (it survives fork and exec), so it is only the fallback.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


class RunFolder:
    """A run's files: config, metrics (CSV + TensorBoard) and atomic checkpoints."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.checkpoints = self.out / "checkpoints"

    def latest_checkpoint(self) -> Path | None:
        """The newest whole checkpoint (temporary folders of an interrupted write are ignored)."""
        done = sorted(self.checkpoints.glob("update-*")) if self.checkpoints.is_dir() else []
        return done[-1] if done else None

    def start(self, cfg: TrainConfig, derived: dict, resume: bool) -> Path | None:
        """Create or reopen the folder; returns the checkpoint to resume from, if any."""
        saved = self.out / "config.json"
        if saved.is_file() and not resume:
            raise FileExistsError(f"{self.out} already holds a run: pass --resume to continue it, "
                                  f"or choose another --out")
        if resume and saved.is_file():
            before = json.loads(saved.read_text())["config"]
            now = json.loads(json.dumps(asdict(cfg)))
            changed = [f"{k}: saved {before.get(k)!r}, now {now[k]!r}" for k in now
                       if before.get(k) != now[k] and k not in RESUME_MAY_CHANGE]
            if changed:
                raise ValueError(f"cannot resume {self.out}: it was started with a different config ("
                                 + "; ".join(changed) + "). Rerun with the same config (only "
                                 + ", ".join(RESUME_MAY_CHANGE) + " may change), or choose another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        _atomic_write(saved, json.dumps({"config": asdict(cfg), "derived": derived}, indent=2))
        if self.checkpoints.is_dir():
            for stale in self.checkpoints.glob(".tmp-*"):  # an interrupted checkpoint write
                shutil.rmtree(stale)
        return self.latest_checkpoint() if resume else None

    def save_checkpoint(self, agent: Any, rows: list[dict], keep: int) -> Path:
        """Write the agent and the metrics so far to a temporary folder, then rename it into place."""
        final = self.checkpoints / f"update-{agent.updates:06d}"
        tmp = self.checkpoints / f".tmp-update-{agent.updates:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        agent.save(tmp)
        (tmp / "metrics.json").write_text(json.dumps(rows))
        _fsync_tree(tmp)
        os.replace(tmp, final)
        for old in sorted(self.checkpoints.glob("update-*"))[:-keep]:
            shutil.rmtree(old)
        return final

    def write_metrics(self, rows: list[dict]) -> None:
        """Rewrite ``metrics.csv`` with ``rows`` (atomically: on resume it drops rows past the checkpoint)."""
        if not rows:
            _atomic_write(self.out / "metrics.csv", "")
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


def build(cfg: TrainConfig, derived: dict, checkpoint: Path | None):
    """The vector env, the agent (fresh or from ``checkpoint``) and the tokenizer."""
    from agents.lm_ppo import LMPPO, CausalLMWithValueHead
    from agents.ppo import PPOConfig
    from textgym.models import load_causal_lm, load_tokenizer
    from textgym.rewards.named import make_reward

    model, remote = derived["model"], cfg.trust_remote_code
    tokenizer = load_tokenizer(model, trust_remote_code=remote)
    env_kwargs: dict[str, Any] = {"model": load_causal_lm(model, trust_remote_code=remote), "tokenizer": tokenizer,
                                  "kl_coef": cfg.kl_coef, "max_new_tokens": derived["max_new_tokens"],
                                  "ref_scoring": "episode"}
    if cfg.reward is not None:
        env_kwargs["reward_fn"] = make_reward(cfg.reward)
    envs = gym.make_vec(derived["env_id"], num_envs=cfg.num_envs, vectorization_mode="vector_entry_point",
                        **env_kwargs)
    if checkpoint is not None:
        agent = LMPPO.load(checkpoint)
        agent.temperature = cfg.temperature
    else:
        ppo_cfg = PPOConfig(learning_rate=cfg.learning_rate, batch_episodes=cfg.batch_episodes,
                            num_minibatches=cfg.num_minibatches, update_epochs=cfg.update_epochs,
                            clip_coef=cfg.clip_coef, ent_coef=cfg.ent_coef, kl_coef=cfg.kl_coef,
                            kl_setpoint=cfg.kl_setpoint, gamma=1.0, gae_lambda=cfg.gae_lambda, seed=cfg.seed)
        torch.manual_seed(cfg.seed)
        policy = CausalLMWithValueHead(load_causal_lm(model, trust_remote_code=remote))
        agent = LMPPO(policy, ppo_cfg, cfg.agent, pad_id=tokenizer.pad_token_id or 0, temperature=cfg.temperature)
    return envs, agent, tokenizer


def train(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) a training run; returns the final metrics (last update and evaluation)."""
    torch.set_num_threads(cfg.threads)
    derived = check_config(cfg)
    folder = RunFolder(cfg.out)
    checkpoint = folder.start(cfg, derived, resume)
    envs, agent, tokenizer = build(cfg, derived, checkpoint)
    rows = json.loads((checkpoint / "metrics.json").read_text()) if checkpoint else []
    folder.write_metrics(rows)
    writer = _tensorboard(cfg, folder, rows)
    if checkpoint:
        print(f"resuming {cfg.out} from {checkpoint.name} (step {agent.global_step:,})", flush=True)
    began = time.perf_counter()

    def on_update(row: dict) -> bool:
        rows.append(row)
        folder.append_metrics(row)
        if writer is not None:
            for key, value in row.items():
                writer.add_scalar(key, value, row["global_step"])
        print(f"update {agent.updates:>4}  step {row['global_step']:>7,}/{cfg.total_steps:,}  "
              f"score {row['objective/score']:+.3f}  KL {row['objective/kl']:.3f}  "
              f"{row['charts/SPS']:.0f} tokens/s", flush=True)
        if agent.updates % cfg.checkpoint_every == 0:
            folder.save_checkpoint(agent, rows, cfg.keep_checkpoints)
        return False

    first_step = agent.global_step
    agent.learn(envs, cfg.total_steps, on_update, restart_every=cfg.checkpoint_every)
    seconds = time.perf_counter() - began
    if writer is not None:
        writer.close()
    agent.policy.model.save_pretrained(folder.out / "policy")
    tokenizer.save_pretrained(folder.out / "policy")
    final = {k: v for k, v in rows[-1].items() if k not in TIMING_METRICS} if rows else {}
    result: dict[str, Any] = {"train": final, "minutes": seconds / 60,
                              "tokens_per_s": (agent.global_step - first_step) / seconds,
                              "peak_rss_mib": peak_rss_mib()}
    if cfg.eval_prompts:
        result["eval"] = _evaluate(cfg, derived, envs, agent, tokenizer)
    _atomic_write(folder.out / "eval.json", json.dumps(result, indent=2))
    return result


def _tensorboard(cfg: TrainConfig, folder: RunFolder, rows: list[dict]):
    """A SummaryWriter that drops events past the resumed checkpoint (None if turned off)."""
    if not cfg.tensorboard:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder.out / "tb"), purge_step=rows[-1]["global_step"] + 1 if rows else 0)


def _evaluate(cfg: TrainConfig, derived: dict, envs: Any, agent: Any, tokenizer: Any) -> dict[str, Any]:
    """Reference model vs trained policy on held-out prompts; writes ``reward_scores.png``."""
    from textgym.eval.report import evaluate_policy, plot_scores

    core = envs.unwrapped.core
    reference, reward_fn = core.reference, core.reward_fn
    results = {}
    for name, model in (("reference", reference), ("policy", agent.policy.model)):
        results[name] = evaluate_policy(model, tokenizer, derived["task"], reward_fn, reference,  # same prompts
                                        num_prompts=cfg.eval_prompts, max_new_tokens=derived["max_new_tokens"],
                                        seed=cfg.seed)
    plot_scores(results, Path(cfg.out) / "reward_scores.png")
    for name, values in results.items():
        print(f"{name:>9}: reward {values['reward']['mean']:+.3f}, KL {values.get('kl_to_reference', 0):.3f}, "
              f"distinct-2 {values['distinct_2']:.3f}", flush=True)
    return {name: {k: v for k, v in values.items() if k not in ("prompts",)} for name, values in results.items()}
