"""Proximal policy optimisation (clipped surrogate, GAE, value clipping, entropy and KL terms).

Read top to bottom: the config, the MLP actor-critic for toy environments, the update that every
PPO policy shares (:func:`ppo_update`), then :class:`PPO`, which collects rollouts from a
Gymnasium vector environment and calls it. The pure math lives in :mod:`agents.ppo_math`.

The KL penalty: textgym's text environment already pays ``kl_coef * log pi_ref(a_t | s_t)``; the
agent adds the other half, ``-kl_coef * log pi(a_t | s_t)``, to each reward, so the return it
maximises is ``score - kl_coef * KL(pi || pi_ref)``. With ``kl_coef=0`` (the toy environments) that
term vanishes; ``ent_coef`` is the usual entropy bonus.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from agents import distributed
from agents.ppo_math import (
    AdaptiveKLController,
    FixedKLController,
    compute_gae,
    masked_mean,
    policy_loss,
    value_loss,
)

MASKED = -1e8  # logit of an illegal action: probability 0, and no inf * 0 in the entropy
Obs = torch.Tensor | dict[str, torch.Tensor]


def as_obs(obs: Any) -> Obs:
    """A (vector) observation as tensors: an array, or a dict of arrays (e.g. the text env's)."""
    if isinstance(obs, dict):
        return {key: torch.as_tensor(np.asarray(value)) for key, value in obs.items()}
    return torch.as_tensor(np.asarray(obs))


def _take(value: Obs, index: torch.Tensor) -> Obs:
    return {k: v[index] for k, v in value.items()} if isinstance(value, dict) else value[index]


def _stack(values: list[Obs]) -> Obs:
    """Stack T steps of (N, ...) observations and flatten to (T * N, ...)."""
    if isinstance(values[0], dict):
        return {k: torch.stack([v[k] for v in values]).flatten(0, 1) for k in values[0]}
    return torch.stack(values).flatten(0, 1)


@dataclass
class PPOConfig:
    """PPO hyperparameters (cleanrl's names)."""

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
    kl_coef: float = 0.0
    """Beta of the KL penalty to the reference (the agent's half: ``-kl_coef * log pi``)."""
    kl_setpoint: float | None = None
    """If set, an adaptive controller (Ziegler et al.) steers ``kl_coef`` toward this KL per episode."""
    kl_horizon: int = 10000
    """Horizon of the adaptive KL controller, in steps."""
    batch_episodes: int = 32
    """Text agents: finished episodes per update."""
    seed: int = 0
    """Seed of the policy's initialisation and sampling."""


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


def ppo_update(
    optimizer: torch.optim.Optimizer, parameters: list[nn.Parameter], batch: dict[str, torch.Tensor],
    evaluate: Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    cfg: PPOConfig, generator: torch.Generator,
) -> dict[str, float]:
    """PPO epochs over one flat batch; any policy plugs in through ``evaluate``.

    Args:
        optimizer: Over ``parameters``.
        parameters: What gradient clipping clips.
        batch: Tensors ``logprobs``, ``values``, ``advantages``, ``returns``, flat (B,) or per token
            (B, T) with a 0/1 ``token_mask`` (B, T), plus whatever ``evaluate`` reads. Minibatches
            are drawn over the first dimension (transitions, or whole episodes for text).
        evaluate: Minibatch -> (new log-probs, entropies, new values), shaped like ``logprobs``.
        cfg: The hyperparameters.
        generator: Shuffles the minibatches.

    Returns:
        The last epoch's losses and diagnostics, under fixed metric names.
    """
    size = batch["logprobs"].shape[0]
    mb_size = max(1, size // cfg.num_minibatches)
    stats: dict[str, float] = {}
    for _ in range(cfg.update_epochs):
        order = torch.randperm(size, generator=generator)
        for start in range(0, size, mb_size):
            mb = {k: _take(v, order[start:start + mb_size]) for k, v in batch.items()}
            new_logprob, entropy, new_value = evaluate(mb)
            mask, mb_adv = mb.get("token_mask"), mb["advantages"]
            if cfg.norm_adv and mb_adv.numel() > 1:
                mean = masked_mean(mb_adv, mask)
                std = masked_mean((mb_adv - mean) ** 2, mask).sqrt()
                mb_adv = (mb_adv - mean) / (std + 1e-8)
            pg_loss, clipfrac = policy_loss(new_logprob, mb["logprobs"], mb_adv, cfg.clip_coef, mask)
            v_loss = value_loss(new_value, mb["values"], mb["returns"], cfg.clip_coef if cfg.clip_vloss else None,
                                mask)
            loss = pg_loss - cfg.ent_coef * masked_mean(entropy, mask) + cfg.vf_coef * v_loss
            optimizer.zero_grad()
            loss.backward()
            distributed.average_gradients(parameters)  # a no-op in a single process
            nn.utils.clip_grad_norm_(parameters, cfg.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                log_ratio = new_logprob - mb["logprobs"]
                approx_kl = masked_mean((log_ratio.exp() - 1) - log_ratio, mask).item()
        stats = {"losses/policy_loss": pg_loss.item(), "losses/value_loss": v_loss.item(),
                 "losses/entropy": masked_mean(entropy, mask).item(), "losses/approx_kl": approx_kl,
                 "losses/clipfrac": clipfrac.item()}
        if cfg.target_kl is not None and distributed.mean(approx_kl) > cfg.target_kl:
            break  # decided on the ranks' mean, so every rank stops at the same epoch
    return stats


class PPO:
    """PPO for Gymnasium vector environments with discrete actions and optional action masks.

    Args:
        policy: An actor-critic module: ``policy(obs, action_mask) -> (logits, values)``.
        config: Hyperparameters.

    Example:
        >>> import gymnasium as gym, textgym
        >>> envs = gym.make_vec("textgym/TicTacToe-v0", num_envs=8, vectorization_mode="vector_entry_point")
        >>> agent = PPO(MLPPolicy(18, 9), PPOConfig(num_steps=8))
        >>> rows = agent.learn(envs, total_steps=128)
        >>> len(rows), "losses/policy_loss" in rows[-1]
        (2, True)
    """

    def __init__(self, policy: nn.Module, config: PPOConfig | None = None) -> None:
        self.cfg = config or PPOConfig()
        self.policy = policy
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=self.cfg.learning_rate, eps=1e-5, foreach=True)
        self.generator = torch.Generator().manual_seed(self.cfg.seed)
        self.kl_ctl = (AdaptiveKLController(self.cfg.kl_coef, self.cfg.kl_setpoint, self.cfg.kl_horizon)
                       if self.cfg.kl_setpoint else FixedKLController(self.cfg.kl_coef))
        self.global_step = 0

    @torch.no_grad()
    def act(self, obs: Any, *, episode_start: np.ndarray | None = None, action_mask: np.ndarray | None = None,
            deterministic: bool = False) -> np.ndarray:
        """Sample (or, ``deterministic``, take the most likely) legal action for each row of ``obs``."""
        obs_t = as_obs(obs if isinstance(obs, dict) else np.atleast_2d(obs))
        mask_t = None if action_mask is None else torch.as_tensor(np.atleast_2d(action_mask))
        logits, _ = self.policy(obs_t, mask_t)
        if deterministic:
            return logits.argmax(-1).numpy()
        return torch.distributions.Categorical(logits=logits).sample().numpy()

    def learn(self, envs: Any, total_steps: int, callback: Callable[[dict[str, float]], bool] | None = None,
              ) -> list[dict[str, float]]:
        """Collect rollouts and update until ``total_steps`` environment steps (over all envs).

        Args:
            envs: A Gymnasium ``VectorEnv`` (``AutoresetMode.SAME_STEP``); ``info["action_mask"]`` is used if
                present.
            total_steps: Budget in environment steps.
            callback: Called with each update's metrics; returning True stops training.

        Returns:
            One metrics row per update (``charts/episodic_return``, ``losses/*``, ``charts/SPS``, ...).
        """
        cfg, n = self.cfg, envs.num_envs
        torch.manual_seed(cfg.seed)
        distributed.broadcast_parameters(self.policy)
        obs, info = envs.reset(seed=cfg.seed + 100_003 * distributed.rank())  # each rank its own episodes
        mask = info.get("action_mask")
        returns_so_far, finished_returns = np.zeros(n), []
        rows, start = [], time.perf_counter()
        for update in range(max(1, total_steps // (cfg.num_steps * n))):
            if cfg.anneal_lr:
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.learning_rate * (1 - update * cfg.num_steps * n / total_steps)
            buf = {k: [] for k in ("obs", "masks", "actions", "logprobs", "values", "rewards", "dones")}
            for _ in range(cfg.num_steps):
                obs_t = as_obs(obs)
                mask_t = None if mask is None else torch.as_tensor(mask)
                with torch.no_grad():
                    logits, values = self.policy(obs_t, mask_t)
                    dist = torch.distributions.Categorical(logits=logits)
                    actions = dist.sample()
                    logprobs = dist.log_prob(actions)
                obs, reward, terminated, truncated, info = envs.step(actions.numpy())
                done = terminated | truncated
                shaped = reward - self.kl_ctl.value * logprobs.numpy()  # the agent's half of the KL penalty
                returns_so_far += reward
                finished_returns += returns_so_far[done].tolist()
                returns_so_far[done] = 0.0
                for key, value in (("obs", obs_t), ("masks", mask_t), ("actions", actions), ("logprobs", logprobs),
                                   ("values", values), ("rewards", shaped), ("dones", done)):
                    buf[key].append(value)
                mask = info.get("action_mask")
            with torch.no_grad():
                last_values = self.policy(as_obs(obs), None if mask is None else torch.as_tensor(mask))[1].numpy()
            values = torch.stack(buf["values"]).numpy()  # (T, N)
            advantages, returns = compute_gae(np.stack(buf["rewards"]), values, np.stack(buf["dones"]).astype(float),
                                              last_values, cfg.gamma, cfg.gae_lambda)
            batch = {
                "obs": _stack(buf["obs"]),  # (T*N, ...)
                "actions": torch.stack(buf["actions"]).flatten(),  # (T*N,)
                "logprobs": torch.stack(buf["logprobs"]).flatten(),
                "values": torch.as_tensor(values, dtype=torch.float32).flatten(),
                "advantages": torch.as_tensor(advantages, dtype=torch.float32).flatten(),
                "returns": torch.as_tensor(returns, dtype=torch.float32).flatten(),
            }
            if buf["masks"][0] is not None:
                batch["masks"] = torch.stack(buf["masks"]).flatten(0, 1)  # (T*N, A)
            stats = ppo_update(self.optimizer, list(self.policy.parameters()), batch, self._evaluate, cfg,
                               self.generator)
            self.global_step += cfg.num_steps * n
            row = {"global_step": self.global_step, **stats, "objective/kl_coef": self.kl_ctl.value,
                   "charts/SPS": self.global_step / (time.perf_counter() - start)}
            if finished_returns:
                row["charts/episodic_return"] = float(np.mean(finished_returns))
                finished_returns = []
            rows.append(row)
            if callback is not None and callback(row):
                break
        return rows

    def _evaluate(self, mb: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, values = self.policy(mb["obs"], mb.get("masks"))
        dist = torch.distributions.Categorical(logits=logits)
        return dist.log_prob(mb["actions"]), dist.entropy(), values

    def save(self, path: str | Path) -> None:
        """Policy weights (safetensors), optimizer state and config in the folder ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file(self.policy.state_dict(), path / "policy.safetensors")
        torch.save(self.optimizer.state_dict(), path / "optimizer.pt")
        meta = {"config": asdict(self.cfg), "policy": getattr(self.policy, "init_args", {}),
                "global_step": self.global_step}
        (path / "ppo.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> PPO:
        """An MLP-policy PPO saved by :meth:`save` (weights via safetensors; optimizer state read weights-only)."""
        path = Path(path)
        meta = json.loads((path / "ppo.json").read_text())
        policy = MLPPolicy(**{**meta["policy"], "hidden": tuple(meta["policy"]["hidden"])})
        policy.load_state_dict(load_file(path / "policy.safetensors"))
        agent = cls(policy, PPOConfig(**meta["config"]))
        agent.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
        agent.global_step = meta["global_step"]
        return agent
