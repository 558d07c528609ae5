"""PPO for the toy environments: its config, the MLP actor-critic, and the agent that rolls out and updates.

Read top to bottom: the toy config (:class:`PPOConfig`, the shared fields of
:class:`agents.config.UpdateConfig` with defaults for small policies), the MLP actor-critic, the flat
batch of transitions, then :class:`PPO`, which collects rollouts from a Gymnasium vector environment,
computes GAE and runs the one PPO core every textgym algorithm shares (:mod:`agents.update`: the
minibatch epochs, the clipped loss, the KL controller). :class:`agents.lm_ppo.LMPPO` is the same core
on whole language-model episodes. The pure math lives in :mod:`agents.ppo_math`.

The KL penalty (:mod:`agents.update`): the agent adds ``-kl_coef * log pi(a_t | s_t)`` to each reward
of an environment that has a ``kl_coef`` (the text ones); an environment without one (tic-tac-toe)
has no KL term, and ``ent_coef`` is the usual entropy bonus.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn

from agents.base import import_class
from agents.config import UpdateConfig, bounded
from agents.ppo_math import compute_gae
from agents.update import KLController, ppo_loss, reseed, resume_kl, run_epochs, start_kl, steer_kl

MASKED = -1e8  # logit of an illegal action: probability 0, and no inf * 0 in the entropy
Obs = torch.Tensor | dict[str, torch.Tensor]


class SavedPolicy(Protocol):
    """What :meth:`PPO.load` needs of a policy class: a constructor from the saved ``init_args``."""

    @classmethod
    def from_init_args(cls, init_args: dict[str, Any]) -> nn.Module:
        """The policy ``init_args`` describe."""
        ...


def as_obs(obs: Any, device: torch.device | None = None) -> Obs:
    """A (vector) observation as tensors on ``device``: an array, or a dict of arrays (e.g. the text env's)."""
    if isinstance(obs, dict):
        return {key: torch.as_tensor(np.asarray(value), device=device) for key, value in obs.items()}
    return torch.as_tensor(np.asarray(obs), device=device)


@dataclass
class PPOConfig(UpdateConfig):
    """PPO hyperparameters for the toy environments (cleanrl's names).

    The shared fields and their bounds are :class:`agents.config.UpdateConfig`'s; the defaults below
    replace the language-model ones for small policies on short episodes.
    """

    learning_rate: float = bounded(2.5e-3, low=0)
    """Adam learning rate."""
    num_minibatches: int = bounded(4, low=1)
    """Minibatches per update epoch."""
    update_epochs: int = bounded(4, low=1)
    """Passes over each rollout."""
    gamma: float = bounded(0.99, low=0, high=1)
    """Discount."""
    gae_lambda: float = bounded(0.95, low=0, high=1)
    """GAE's lambda."""
    ent_coef: float = bounded(0.01, low=0)
    """Entropy bonus."""
    num_steps: int = bounded(32, low=1)
    """Steps per environment in each rollout."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over ``total_steps``."""
    clip_vloss: bool = True
    """Clip the value loss around the old values."""


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

    obs_perms: torch.Tensor
    """(G, obs_dim) observation index of every symmetric view (buffer, only with ``symmetries``)."""
    inverse_perms: torch.Tensor
    """(G, n_actions) permutations mapping each view's logits back (buffer, only with ``symmetries``)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...] = (64, 64),
                 symmetries: Sequence[Sequence[int]] | None = None) -> None:
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
        obs = {k: x[index] for k, x in self.obs.items()} if isinstance(self.obs, dict) else self.obs[index]
        return TransitionBatch(obs=obs, actions=self.actions[index], logprobs=self.logprobs[index],
                               values=self.values[index], advantages=self.advantages[index],
                               returns=self.returns[index], masks=None if self.masks is None else self.masks[index])


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
        self._kl_ctl: KLController | None = None
        self.global_step = 0
        self.updates = 0

    @property
    def module(self) -> nn.Module:
        """The policy itself (unwrapped from data parallelism)."""
        return self.accelerator.unwrap_model(self.policy)

    @property
    def kl_coef(self) -> float:
        """The KL coefficient of the current rollout: the environment's, or the adaptive controller's (0 before any)."""
        return self._kl_ctl.value if self._kl_ctl is not None else 0.0

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
        seed = reseed(cfg.seed, self.updates, self.accelerator.process_index, self.generator)
        kl_ctl = self._kl_ctl = start_kl(self._kl_ctl, envs, cfg)
        obs, info = envs.reset(seed=seed)
        mask = info.get("action_mask")
        returns_so_far, kl_so_far, finished_returns, finished_kl = np.zeros(n), np.zeros(n), [], []
        rows, start, first_step = [], time.perf_counter(), self.global_step
        while self.global_step < total_steps:
            if cfg.anneal_lr:
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.learning_rate * max(0.0, 1 - self.global_step / total_steps)
            keys = ("obs", "masks", "actions", "logprobs", "values", "rewards", "dones")
            buf: dict[str, list[Any]] = {k: [] for k in keys}
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
                shaped = reward - kl_ctl.value * logp  # the agent's half of the KL penalty
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
                steer_kl(kl_ctl, envs, row["objective/kl"], cfg.num_steps * n)
                finished_returns, finished_kl = [], []
            row["objective/kl_coef"] = kl_ctl.value
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

    def save(self, path: str | Path) -> None:
        """Policy weights (safetensors), its class and arguments, optimizer state and config in the folder ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        module = self.module
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, path / "policy.safetensors")
        torch.save(self.optimizer.state_dict(), path / "optimizer.pt")
        meta = {"config": asdict(self.cfg), "policy_class": f"{type(module).__module__}:{type(module).__qualname__}",
                "policy": getattr(module, "init_args", {}), "global_step": self.global_step, "updates": self.updates,
                "kl_coef": None if self._kl_ctl is None else self._kl_ctl.value}
        (path / "ppo.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: str | Path, accelerator: Accelerator | None = None) -> PPO:
        """A PPO saved by :meth:`save`, with its own policy class (weights via safetensors; optimizer weights-only)."""
        path = Path(path)
        meta = json.loads((path / "ppo.json").read_text())
        policy_class = import_class(meta.get("policy_class", "agents.ppo:MLPPolicy"), nn.Module)
        policy = cast(type[SavedPolicy], policy_class).from_init_args(meta["policy"])
        policy.load_state_dict(load_file(path / "policy.safetensors"))
        agent = cls(policy, PPOConfig(**meta["config"]), accelerator)
        agent.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
        agent.global_step, agent.updates = meta["global_step"], meta.get("updates", 0)
        agent._kl_ctl = resume_kl(agent.cfg, meta.get("kl_coef"))
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
        dicts = cast(list[dict[str, torch.Tensor]], values)
        return {k: torch.stack([v[k] for v in dicts]).flatten(0, 1) for k in dicts[0]}
    return torch.stack(cast(list[torch.Tensor], values)).flatten(0, 1)
