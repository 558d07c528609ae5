"""Proximal policy optimisation: the one PPO core, and its toy-environment agent.

Read top to bottom: the toy config, the MLP actor-critic for toy environments, the update loop every
textgym algorithm shares (:func:`run_epochs`: shuffled minibatches, backward through accelerate,
gradient clipping, early stop on ``target_kl``), PPO's loss (:func:`ppo_loss`: clipped surrogate,
clipped value loss, entropy bonus), then :class:`PPO`, which collects rollouts from a Gymnasium
vector environment and calls both. :class:`agents.lm_ppo.LMPPO` is the same loss and loop on whole
language-model episodes. The pure math lives in :mod:`agents.ppo_math`.

The KL penalty: textgym's text environment pays ``kl_coef * log pi_ref(a_t | s_t)``; the agent adds
the other half, ``-kl_coef * log pi(a_t | s_t)``, to each reward, so the return it maximises is
``score - kl_coef * KL(pi || pi_ref)``. ``kl_coef`` is the environment's (one value for both); an
environment without one (tic-tac-toe) has no KL term, and ``ent_coef`` is the usual entropy bonus.

Several processes: the update runs through an ``accelerate.Accelerator``; under
``accelerate launch`` the policy is wrapped for data parallelism (gradients averaged by DDP), each
process rolls out its own episodes, and the weights stay identical on every process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn

from agents.base import import_class
from agents.ppo_math import (
    AdaptiveKLController,
    FixedKLController,
    compute_gae,
    masked_mean,
    masked_whiten,
    policy_loss,
    value_loss,
)

MASKED = -1e8  # logit of an illegal action: probability 0, and no inf * 0 in the entropy
Obs = torch.Tensor | dict[str, torch.Tensor]


def as_obs(obs: Any, device: torch.device | None = None) -> Obs:
    """A (vector) observation as tensors on ``device``: an array, or a dict of arrays (e.g. the text env's)."""
    if isinstance(obs, dict):
        return {key: torch.as_tensor(np.asarray(value), device=device) for key, value in obs.items()}
    return torch.as_tensor(np.asarray(obs), device=device)


@dataclass
class PPOConfig:
    """PPO hyperparameters for the toy environments (cleanrl's names)."""

    num_steps: int = 32
    """Steps per environment in each rollout."""
    num_minibatches: int = 4
    """Minibatches per update epoch."""
    update_epochs: int = 4
    """Passes over each rollout."""
    learning_rate: float = 2.5e-3
    """Adam learning rate."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over ``total_steps``."""
    gamma: float = 0.99
    """Discount."""
    gae_lambda: float = 0.95
    """GAE's lambda."""
    clip_coef: float = 0.2
    """Policy ratio clipping."""
    clip_vloss: bool = True
    """Clip the value loss around the old values."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    ent_coef: float = 0.01
    """Entropy bonus."""
    vf_coef: float = 0.5
    """Value loss weight."""
    max_grad_norm: float = 0.5
    """Gradient clipping."""
    target_kl: float | None = None
    """Stop an update's epochs early when the approximate KL to the rollout policy exceeds this."""
    kl_setpoint: float | None = None
    """If set, an adaptive controller (Ziegler et al.) steers the environment's ``kl_coef`` toward this KL per
    episode (the environment must report ``ref_logprob``)."""
    kl_horizon: int = 10000
    """Horizon of the adaptive KL controller, in steps."""
    seed: int = 0
    """Seed of the sampling, the shuffling and the episodes."""


class MLPPolicy(nn.Module):
    """Actor-critic MLP over flat observations: shared trunk, a logits head and a value head.

    With ``symmetries`` (permutations of the actions, under which the environment is invariant,
    e.g. :data:`textgym.envs.tictactoe.SYMMETRIES`), the logits and value are averaged over every
    symmetric view of the observation, so the policy is exactly invariant and learns each position
    once for all its symmetric copies. Observations are ``obs_dim // n_actions`` planes of
    ``n_actions`` entries, each plane permuted like the actions.

    Args:
        obs_dim: Observation length.
        n_actions: Number of discrete actions.
        hidden: Widths of the trunk's tanh layers.
        symmetries: Action permutations ``perm`` (``new[i] = old[perm[i]]``), or None.
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...] = (64, 64),
                 symmetries: list[list[int]] | None = None) -> None:
        super().__init__()
        self.init_args = {"obs_dim": obs_dim, "n_actions": n_actions, "hidden": list(hidden),
                          "symmetries": None if symmetries is None else [list(p) for p in symmetries]}
        if symmetries is not None:
            if obs_dim % n_actions:
                raise ValueError(f"symmetries need obs_dim ({obs_dim}) to be a multiple of n_actions ({n_actions})")
            perms = torch.tensor(symmetries)  # (G, A)
            planes = obs_dim // n_actions
            obs_perms = (perms[:, None, :] + n_actions * torch.arange(planes)[None, :, None]).flatten(1)  # (G, obs)
            self.register_buffer("obs_perms", obs_perms, persistent=False)
            self.register_buffer("inverse_perms", perms.argsort(1), persistent=False)
        layers, width = [], obs_dim
        for size in hidden:
            layers += [_layer(nn.Linear(width, size)), nn.Tanh()]
            width = size
        self.trunk = nn.Sequential(*layers)
        self.actor = _layer(nn.Linear(width, n_actions), std=0.01)
        self.critic = _layer(nn.Linear(width, 1), std=1.0)

    @classmethod
    def from_init_args(cls, init_args: dict[str, Any]) -> MLPPolicy:
        """The policy :attr:`init_args` describe (weights initialised; load a state dict after)."""
        return cls(**{**init_args, "hidden": tuple(init_args["hidden"])})

    def forward(self, obs: torch.Tensor, action_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked logits (B, A) and values (B,)."""
        if hasattr(self, "obs_perms"):
            views = obs[:, self.obs_perms]  # (B, G, obs): every symmetric view
            hidden = self.trunk(views)
            logits = self.actor(hidden).gather(2, self.inverse_perms.expand(obs.shape[0], -1, -1)).mean(1)  # (B, A)
            values = self.critic(hidden).mean(1).squeeze(-1)
        else:
            hidden = self.trunk(obs)
            logits, values = self.actor(hidden), self.critic(hidden).squeeze(-1)
        if action_mask is not None:
            logits = logits.masked_fill(action_mask == 0, MASKED)
        return logits, values


def _layer(layer: nn.Linear, std: float = 2**0.5) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.zeros_(layer.bias)
    return layer


# ---------------------------------------------------------------------------------------- the shared update
def run_epochs(batch: Any, loss_fn: Callable[[Any], tuple[torch.Tensor, dict[str, torch.Tensor]]],
               optimizer: torch.optim.Optimizer, parameters: list[nn.Parameter], cfg: Any,
               generator: torch.Generator, accelerator: Accelerator) -> dict[str, float]:
    """``update_epochs`` passes of shuffled minibatches over ``batch``; any algorithm plugs in through ``loss_fn``.

    Args:
        batch: Anything with ``size`` and ``select(index)`` (:class:`TransitionBatch`,
            :class:`agents.rollout.EpisodeBatch`): minibatches are drawn over its first dimension
            (transitions, or whole episodes for text).
        loss_fn: Minibatch -> (loss to minimise, diagnostics as 0-d tensors). A
            ``"losses/approx_kl"`` entry drives the early stop.
        optimizer: Over ``parameters``.
        parameters: What gradient clipping clips.
        cfg: ``num_minibatches``, ``update_epochs``, ``max_grad_norm``, ``target_kl``.
        generator: Shuffles the minibatches.
        accelerator: Backward and gradient clipping (DDP under ``accelerate launch``).

    Returns:
        The last minibatch's diagnostics, as floats (read from the device once, at the end).

    Raises:
        FloatingPointError: At the first minibatch whose gradient is not finite (a NaN or infinite loss),
            before the optimizer steps: the weights stay those of the last finite step.
    """
    mb_size = max(1, batch.size // cfg.num_minibatches)
    stats: dict[str, torch.Tensor] = {}
    for _ in range(cfg.update_epochs):
        order = torch.randperm(batch.size, generator=generator)
        for start in range(0, batch.size, mb_size):
            loss, stats = loss_fn(batch.select(order[start:start + mb_size]))
            optimizer.zero_grad()
            accelerator.backward(loss)
            norm = accelerator.clip_grad_norm_(parameters, cfg.max_grad_norm)
            # the norm is the same on every process (after the all-reduce): all stop together, before the step
            if not torch.isfinite(loss.detach() if norm is None else norm):
                raise FloatingPointError(f"the loss is {loss.item()} and its gradient's norm "
                                         f"{'unknown' if norm is None else norm.item()}: not finite (a learning rate, "
                                         "reward or KL coefficient too large?); the weights were not updated")
            optimizer.step()
        if cfg.target_kl is not None and "losses/approx_kl" in stats:
            approx_kl = accelerator.reduce(stats["losses/approx_kl"].reshape(1), "mean")
            if float(approx_kl) > cfg.target_kl:
                break  # decided on the processes' mean, so every process stops at the same epoch
    return {key: float(value) for key, value in stats.items()}


def ppo_loss(mb: Any, new_logprob: torch.Tensor, entropy: torch.Tensor, new_value: torch.Tensor | None, cfg: Any,
             mask: torch.Tensor | None = None, total: torch.Tensor | float | None = None,
             reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's loss on a minibatch: clipped surrogate + ``vf_coef`` * clipped value loss - ``ent_coef`` * entropy.

    Args:
        mb: The minibatch: ``logprobs`` (behaviour), ``values``, ``advantages``, ``returns``.
        new_logprob: The current policy's log-probabilities, shaped like ``mb.logprobs``.
        entropy: Its entropies (logged only when ``ent_coef`` is 0).
        new_value: Its values, or None for an algorithm without a value head.
        cfg: ``clip_coef``, ``norm_adv``, ``ent_coef``, ``vf_coef`` and optionally ``clip_vloss``.
        mask: Which entries count (per-token batches); None: all.
        total: Entries the means are over, across processes (:mod:`agents.ppo_math`).
        reduce: Sums statistics over processes (advantage normalisation over the whole minibatch).
    """
    advantages = masked_whiten(mb.advantages, mask, reduce) if cfg.norm_adv else mb.advantages
    pg_loss, clipfrac = policy_loss(new_logprob, mb.logprobs, advantages, cfg.clip_coef, mask, total)
    v_loss = new_logprob.new_zeros(())
    if new_value is not None:
        v_loss = value_loss(new_value, mb.values, mb.returns, cfg.clip_coef if getattr(cfg, "clip_vloss", True)
                            else None, mask, total)
    mean_entropy = masked_mean(entropy, mask, total) if entropy is not None else v_loss.new_zeros(())
    loss = pg_loss - cfg.ent_coef * mean_entropy + cfg.vf_coef * v_loss
    with torch.no_grad():  # diagnostics stay on the device: no synchronisation per minibatch
        log_ratio = new_logprob - mb.logprobs
        stats = {"losses/policy_loss": pg_loss.detach(), "losses/value_loss": v_loss.detach(),
                 "losses/entropy": mean_entropy.detach(), "losses/clipfrac": clipfrac,
                 "losses/approx_kl": masked_mean((log_ratio.exp() - 1) - log_ratio, mask)}
    return loss, stats


@dataclass
class TransitionBatch:
    """A flat batch of toy-environment transitions, (B, ...) each."""

    obs: Obs
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    masks: torch.Tensor | None = None

    @property
    def size(self) -> int:
        """Number of transitions."""
        return self.actions.shape[0]

    def select(self, index: torch.Tensor) -> TransitionBatch:
        """The transitions at ``index``."""
        take = lambda v: None if v is None else ({k: x[index] for k, x in v.items()} if isinstance(v, dict)  # noqa: E731
                                                 else v[index])
        return TransitionBatch(**{f.name: take(getattr(self, f.name)) for f in fields(self)})


# ---------------------------------------------------------------------------------------- the toy agent
class PPO:
    """PPO for Gymnasium vector environments with discrete actions and optional action masks.

    Args:
        policy: An actor-critic module: ``policy(obs, action_mask) -> (logits, values)``, with
            ``init_args`` and ``from_init_args`` to be saved and loaded (:class:`MLPPolicy`,
            :class:`agents.table_policy.LastTokenPolicy`).
        config: Hyperparameters.
        accelerator: Devices and processes (default: one made for this process).

    Example:
        >>> import gymnasium as gym, textgym
        >>> envs = gym.make_vec("textgym/TicTacToe-v0", num_envs=8, vectorization_mode="vector_entry_point")
        >>> agent = PPO(MLPPolicy(18, 9), PPOConfig(num_steps=8))
        >>> rows = agent.learn(envs, total_steps=128)
        >>> len(rows), "losses/policy_loss" in rows[-1], agent.updates
        (2, True, 2)
    """

    def __init__(self, policy: nn.Module, config: PPOConfig | None = None,
                 accelerator: Accelerator | None = None) -> None:
        self.cfg = config or PPOConfig()
        self.accelerator = accelerator or Accelerator()
        optimizer = torch.optim.Adam(policy.parameters(), lr=self.cfg.learning_rate, eps=1e-5, foreach=True)
        self.policy, self.optimizer = self.accelerator.prepare(policy, optimizer)
        self.generator = torch.Generator().manual_seed(self.cfg.seed)
        self.kl_ctl: AdaptiveKLController | FixedKLController | None = None
        self.global_step = 0
        self.updates = 0

    @property
    def module(self) -> nn.Module:
        """The policy itself (unwrapped from data parallelism)."""
        return self.accelerator.unwrap_model(self.policy)

    @torch.no_grad()
    def act(self, obs: Any, *, episode_start: np.ndarray | None = None, action_mask: np.ndarray | None = None,
            deterministic: bool = False) -> np.ndarray:
        """Sample (or, ``deterministic``, take the most likely) legal action for each row of ``obs``."""
        device = self.accelerator.device
        obs_t = as_obs(obs if isinstance(obs, dict) else np.atleast_2d(obs), device)
        mask_t = None if action_mask is None else torch.as_tensor(np.atleast_2d(action_mask), device=device)
        logits, _ = self.module(obs_t, mask_t)
        if deterministic:
            return logits.argmax(-1).cpu().numpy()
        return torch.distributions.Categorical(logits=logits).sample().cpu().numpy()

    def learn(self, envs: Any, total_steps: int, callback: Callable[[dict[str, float]], bool] | None = None,
              ) -> list[dict[str, float]]:
        """Collect rollouts and update until ``total_steps`` environment steps (over all envs).

        Each call starts fresh episodes, seeded from ``(seed, updates)``, so a run continued from
        :meth:`save` / :meth:`load` at an update repeats the uninterrupted run.

        Args:
            envs: A Gymnasium ``VectorEnv`` (``AutoresetMode.SAME_STEP``); ``info["action_mask"]`` is used if
                present, and the environment's ``kl_coef``, if it has one.
            total_steps: Budget in environment steps, counting earlier calls.
            callback: Called with each update's metrics; returning True stops training.

        Returns:
            One metrics row per update (``charts/episodic_return``, ``losses/*``, ``charts/SPS``, ...).
        """
        cfg, n, device = self.cfg, envs.num_envs, self.accelerator.device
        seed = cfg.seed + 1_000_003 * self.updates + 100_003 * self.accelerator.process_index  # each process its own
        torch.manual_seed(seed)
        self.generator.manual_seed(seed)
        self._start_kl(envs)
        obs, info = envs.reset(seed=seed)
        mask = info.get("action_mask")
        returns_so_far, kl_so_far, finished_returns, finished_kl = np.zeros(n), np.zeros(n), [], []
        rows, start, first_step = [], time.perf_counter(), self.global_step
        while self.global_step < total_steps:
            if cfg.anneal_lr:
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.learning_rate * max(0.0, 1 - self.global_step / total_steps)
            buf = {k: [] for k in ("obs", "masks", "actions", "logprobs", "values", "rewards", "dones")}
            for _ in range(cfg.num_steps):
                obs_t = as_obs(obs, device)
                mask_t = None if mask is None else torch.as_tensor(mask, device=device)
                with torch.no_grad():
                    logits, values = self.module(obs_t, mask_t)
                    dist = torch.distributions.Categorical(logits=logits)
                    actions = dist.sample()
                    logprobs = dist.log_prob(actions)
                obs, reward, terminated, truncated, info = envs.step(actions.cpu().numpy())
                done = terminated | truncated
                logp = logprobs.cpu().numpy()
                shaped = reward - self.kl_ctl.value * logp  # the agent's half of the KL penalty
                returns_so_far += reward
                kl_so_far += logp - info.get("ref_logprob", logp)
                finished_returns += returns_so_far[done].tolist()
                finished_kl += kl_so_far[done].tolist()
                returns_so_far[done] = kl_so_far[done] = 0.0
                for key, value in (("obs", obs_t), ("masks", mask_t), ("actions", actions), ("logprobs", logprobs),
                                   ("values", values), ("rewards", shaped), ("dones", done)):
                    buf[key].append(value)
                mask = info.get("action_mask")
            with torch.no_grad():
                mask_t = None if mask is None else torch.as_tensor(mask, device=device)
                last_values = self.module(as_obs(obs, device), mask_t)[1].cpu().numpy()
            batch = rollout_batch(buf, last_values, cfg, device)
            stats = self.update(batch)
            self.global_step += cfg.num_steps * n
            row = {"global_step": self.global_step, "update": self.updates, **stats,
                   "charts/SPS": (self.global_step - first_step) / (time.perf_counter() - start)}
            if finished_returns:
                row["charts/episodic_return"] = float(np.mean(finished_returns))
                row["objective/kl"] = float(np.mean(finished_kl))
                self._steer_kl(envs, row["objective/kl"], cfg.num_steps * n)
                finished_returns, finished_kl = [], []
            row["objective/kl_coef"] = self.kl_ctl.value
            rows.append(row)
            if callback is not None and callback(row):
                break
        return rows

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """One PPO update (``update_epochs`` over minibatches) from a batch of transitions."""
        stats = run_epochs(batch, self._loss, self.optimizer, list(self.policy.parameters()), self.cfg, self.generator,
                           self.accelerator)
        self.updates += 1
        return stats

    def _loss(self, mb: TransitionBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits, values = self.policy(mb.obs, mb.masks)
        dist = torch.distributions.Categorical(logits=logits)
        return ppo_loss(mb, dist.log_prob(mb.actions), dist.entropy(), values, self.cfg)

    def _start_kl(self, envs: Any) -> None:
        """The KL coefficient is the environment's; an adaptive controller takes it over (and resumes its own)."""
        env_coef = float(getattr(envs.unwrapped, "kl_coef", 0.0))
        if self.cfg.kl_setpoint is None:
            self.kl_ctl = FixedKLController(env_coef)
            return
        if not hasattr(envs.unwrapped, "kl_coef"):
            raise ValueError("kl_setpoint needs an environment with a kl_coef (a text environment)")
        if self.kl_ctl is None:
            self.kl_ctl = AdaptiveKLController(env_coef, self.cfg.kl_setpoint, self.cfg.kl_horizon)
        envs.unwrapped.kl_coef = self.kl_ctl.value

    def _steer_kl(self, envs: Any, kl: float, n_steps: int) -> None:
        if isinstance(self.kl_ctl, AdaptiveKLController):
            envs.unwrapped.kl_coef = self.kl_ctl.update(kl, n_steps)

    def save(self, path: str | Path) -> None:
        """Policy weights (safetensors), its class and arguments, optimizer state and config in the folder ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        module = self.module
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, path / "policy.safetensors")
        torch.save(self.optimizer.state_dict(), path / "optimizer.pt")
        meta = {"config": asdict(self.cfg), "policy_class": f"{type(module).__module__}:{type(module).__qualname__}",
                "policy": getattr(module, "init_args", {}), "global_step": self.global_step, "updates": self.updates,
                "kl_coef": None if self.kl_ctl is None else self.kl_ctl.value}
        (path / "ppo.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: str | Path, accelerator: Accelerator | None = None) -> PPO:
        """A PPO saved by :meth:`save`, with its own policy class (weights via safetensors; optimizer weights-only)."""
        path = Path(path)
        meta = json.loads((path / "ppo.json").read_text())
        policy_class = import_class(meta.get("policy_class", "agents.ppo:MLPPolicy"), nn.Module)
        policy = policy_class.from_init_args(meta["policy"])
        policy.load_state_dict(load_file(path / "policy.safetensors"))
        agent = cls(policy, PPOConfig(**meta["config"]), accelerator)
        agent.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
        agent.global_step, agent.updates = meta["global_step"], meta.get("updates", 0)
        if meta.get("kl_coef") is not None and agent.cfg.kl_setpoint is not None:
            agent.kl_ctl = AdaptiveKLController(meta["kl_coef"], agent.cfg.kl_setpoint, agent.cfg.kl_horizon)
        return agent


def rollout_batch(buf: dict[str, list], last_values: np.ndarray, cfg: PPOConfig, device: torch.device,
                  ) -> TransitionBatch:
    """T steps of N environments (lists of T per-step tensors) -> GAE -> one flat batch of T * N transitions.

    Transition ``t * N + i`` is step t of environment i in every field.
    """
    values = torch.stack(buf["values"]).cpu().numpy()  # (T, N)
    advantages, returns = compute_gae(np.stack(buf["rewards"]), values, np.stack(buf["dones"]).astype(float),
                                      last_values, cfg.gamma, cfg.gae_lambda)
    as_flat = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device).flatten()  # noqa: E731
    return TransitionBatch(
        obs=_stack(buf["obs"]),  # (T*N, ...)
        actions=torch.stack(buf["actions"]).flatten(),  # (T*N,)
        logprobs=torch.stack(buf["logprobs"]).flatten(),
        values=as_flat(values), advantages=as_flat(advantages), returns=as_flat(returns),
        masks=torch.stack(buf["masks"]).flatten(0, 1) if buf["masks"][0] is not None else None,  # (T*N, A)
    )


def _stack(values: list[Obs]) -> Obs:
    """Stack T steps of (N, ...) observations and flatten to (T * N, ...)."""
    if isinstance(values[0], dict):
        return {k: torch.stack([v[k] for v in values]).flatten(0, 1) for k in values[0]}
    return torch.stack(values).flatten(0, 1)
