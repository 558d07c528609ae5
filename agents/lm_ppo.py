"""PPO and RLOO for causal language models on textgym's text-generation environment.

Acting: :class:`agents.sampling.LMSampler` keeps a KV cache per environment slot, so each token
costs a one-token forward, which also yields the sampled token's log-probability (the behaviour
policy's, PPO's "old" log-prob) and, from its last hidden state, the value. Learning: each
minibatch of whole episodes is evaluated with **one** teacher-forced forward (never one forward per
token transition); the update is the same :func:`agents.ppo.ppo_update` that trains the toy
policies, on (episodes x tokens) tensors.

Rewards: each episode's ``info`` holds the reward function's ``score`` and the reference's
per-token ``ref_logprobs``. The agent rebuilds the per-token reward
``r_t = -kl_coef * (log pi(a_t | s_t) - log pi_ref(a_t | s_t)) + score * [t is last]``, the
environment's reward plus the agent's half of the KL penalty, with its own ``kl_coef`` so that the
adaptive controller can move it. With equal ``kl_coef`` the return equals the environment's return
minus ``kl_coef * sum log pi``.

``algorithm="rloo"``: no value head; each episode's advantage is its return minus the mean return of
the other episodes in the batch (REINFORCE with a leave-one-out baseline), spread over its tokens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

from agents import distributed
from agents.ppo import PPOConfig, ppo_update
from agents.ppo_math import AdaptiveKLController, FixedKLController, compute_gae
from agents.sampling import LMSampler
from textgym.models import load_causal_lm
from textgym.models.kv import left_pad, positions_from_mask


class CausalLMWithValueHead(nn.Module):
    """A causal LM with a scalar value head on its last hidden state (one shared trunk).

    The head reads the trunk's features but its loss does not train them (the hidden state is
    detached): a value loss on raw returns would otherwise push the LM itself far from the reference
    without raising the reward. Only the policy loss and the KL penalty move the LM. (On the detox
    case of ``benchmarks/rewards.py``, this and GAE lambda 1 took PPO's KL to the reference from
    12.4 to 1.2 nats per reply at the same reward.)

    Args:
        model: Any Hugging Face causal LM.
    """

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model
        self.value_head = nn.Linear(model.get_input_embeddings().embedding_dim, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: int,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, keep, V) and values (B, keep) of the last ``keep`` positions of left-padded sequences."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         position_ids=positions_from_mask(attention_mask), output_hidden_states=True,
                         logits_to_keep=keep)
        hidden = out.hidden_states[-1][:, -keep:]  # (B, keep, H)
        return out.logits.float(), self.value_head(hidden.detach()).squeeze(-1).float()

    def save_pretrained(self, path: str | Path) -> None:
        """The LM with ``save_pretrained`` (plain transformers loads it) and ``value_head.safetensors`` beside it."""
        self.model.save_pretrained(path, safe_serialization=True)
        save_file(self.value_head.state_dict(), Path(path) / "value_head.safetensors")

    @classmethod
    def from_pretrained(cls, path: str | Path) -> CausalLMWithValueHead:
        """Load what :meth:`save_pretrained` wrote (a plain LM folder gets a fresh value head)."""
        policy = cls(load_causal_lm(path))
        head = Path(path) / "value_head.safetensors"
        if head.is_file():
            policy.value_head.load_state_dict(load_file(head))
        return policy


@dataclass
class Episode:
    """One finished episode: what the environment reported, and what the policy saw while acting."""

    prompt_ids: np.ndarray
    completion_ids: np.ndarray
    ref_logprobs: np.ndarray
    score: float
    logprobs: np.ndarray | None = None
    """log pi(a_t | s_t) when each token was sampled (the behaviour policy's), or None to recompute."""
    values: np.ndarray | None = None
    """The value head's estimate of each state when it acted, or None to recompute."""


class LMPPO:
    """PPO or RLOO for a causal LM on ``textgym/TextGeneration-v0`` and its task variants.

    Args:
        policy: The LM with a value head (RLOO ignores the head).
        config: Hyperparameters; ``batch_episodes`` finished episodes make one update.
        algorithm: ``"ppo"`` or ``"rloo"``.
        pad_id: The tokenizer's pad id.
        temperature: Sampling temperature while acting.
    """

    def __init__(self, policy: CausalLMWithValueHead, config: PPOConfig | None = None, algorithm: str = "ppo",
                 pad_id: int = 0, temperature: float = 1.0) -> None:
        if algorithm not in ("ppo", "rloo"):
            raise ValueError(f"algorithm must be 'ppo' or 'rloo', got {algorithm!r}")
        self.cfg = config or PPOConfig(learning_rate=1e-4, update_epochs=1, num_minibatches=2, kl_coef=0.05,
                                       gamma=1.0, gae_lambda=1.0)
        self.policy, self.algorithm, self.pad_id, self.temperature = policy.eval(), algorithm, pad_id, temperature
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=self.cfg.learning_rate, eps=1e-5, foreach=True)
        self.generator = torch.Generator().manual_seed(self.cfg.seed)
        self.kl_ctl = (AdaptiveKLController(self.cfg.kl_coef, self.cfg.kl_setpoint, self.cfg.kl_horizon)
                       if self.cfg.kl_setpoint else FixedKLController(self.cfg.kl_coef))
        self.sampler: LMSampler | None = None
        self.global_step = 0
        self.updates = 0
        self._sampler_seed = self.cfg.seed

    def act(self, obs: Any, *, episode_start: np.ndarray | None = None, action_mask: np.ndarray | None = None,
            deterministic: bool = False) -> np.ndarray:
        """Sample the next token of every slot (a KV cache per slot; reset where ``episode_start``)."""
        num_envs = np.atleast_2d(obs["input_ids"]).shape[0]
        if self.sampler is None or self.sampler.num_envs != num_envs:
            self.sampler = LMSampler(self.policy.model, num_envs, self.pad_id, self.temperature,
                                     seed=self._sampler_seed, value_head=self.policy.value_head)
            episode_start = np.ones(num_envs, dtype=bool)
        return self.sampler.act(obs, np.ones(num_envs, bool) if episode_start is None else episode_start)

    def learn(self, envs: Any, total_steps: int, callback: Callable[[dict[str, float]], bool] | None = None,
              restart_every: int | None = None) -> list[dict[str, float]]:
        """Roll out, update, repeat until ``total_steps`` environment steps; one metrics row per update.

        Args:
            envs: A text-generation vector env (``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")``).
            total_steps: Environment steps (tokens, over all slots) to reach; counts from earlier calls.
            callback: Called with each update's row; returning True stops.
            restart_every: Start fresh episodes every this many updates, with every seed derived from
                the update count. A run saved at such an update and loaded again then repeats the
                uninterrupted run bit for bit (``textgym train --resume``). None: only at the start.
        """
        distributed.broadcast_parameters(self.policy)
        rows, began, first_step = [], time.perf_counter(), self.global_step
        obs = starts = None
        while self.global_step < total_steps:
            if obs is None or (restart_every and self.updates % restart_every == 0):
                obs, starts = self._restart(envs)
            episodes, obs, starts = self._collect(envs, obs, starts)
            batch, stats = self._prepare(episodes)
            losses = ppo_update(self.optimizer, list(self.policy.parameters()), batch, self._evaluate,
                                self._update_config(), self.generator)
            self.kl_ctl.update(stats["objective/kl"], sum(len(e.completion_ids) for e in episodes))
            self.updates += 1
            row = {"global_step": self.global_step, "update": self.updates, **stats, **losses,
                   "objective/kl_coef": self.kl_ctl.value,
                   "charts/SPS": (self.global_step - first_step) / (time.perf_counter() - began)}
            rows.append(row)
            if callback is not None and callback(row):
                break
        return rows

    def _restart(self, envs: Any) -> tuple[dict, np.ndarray]:
        """Fresh episodes in every slot; the env, sampler and minibatch seeds follow from (seed, updates)."""
        seed = self.cfg.seed + 1_000_003 * self.updates
        torch.manual_seed(seed)
        self.generator.manual_seed(seed)
        self._sampler_seed, self.sampler = seed + 7919 * distributed.rank(), None
        obs, _ = envs.reset(seed=seed + 100_003 * distributed.rank())  # each rank its own episodes
        self._prompts: list[np.ndarray] = [np.empty(0, np.int64)] * envs.num_envs
        self._seen: list[list[tuple[float, float]]] = [[] for _ in range(envs.num_envs)]
        return obs, np.ones(envs.num_envs, dtype=bool)

    def _collect(self, envs: Any, obs: dict, starts: np.ndarray) -> tuple[list[Episode], dict, np.ndarray]:
        """Step the vector env until ``batch_episodes`` episodes have finished.

        Episodes still running at the end carry over to the next call, with their prompts and what
        the policy saw so far (``self._prompts``, ``self._seen``).
        """
        prompts, seen = self._prompts, self._seen  # per slot: prompt ids, (log-prob, value) per token
        episodes: list[Episode] = []
        while len(episodes) < self.cfg.batch_episodes:
            for slot in np.flatnonzero(starts):
                prompts[slot] = obs["input_ids"][slot][obs["attention_mask"][slot] == 1].copy()
                seen[slot] = []
            actions = self.act(obs, episode_start=starts)
            values = self.sampler.last_values
            for slot in range(envs.num_envs):
                seen[slot].append((self.sampler.last_logprobs[slot], values[slot]))
            obs, _, terminated, truncated, info = envs.step(actions)
            self.global_step += envs.num_envs
            starts = terminated | truncated
            for slot in np.flatnonzero(starts):
                final = info["final_info"]
                logprobs, values_seen = np.array(seen[slot]).T
                episodes.append(Episode(prompts[slot], final["completion_ids"][slot], final["ref_logprobs"][slot],
                                        float(final["score"][slot]), logprobs, values_seen))
        # exactly batch_episodes: equal batches give every rank the same number of minibatches
        return episodes[:self.cfg.batch_episodes], obs, starts

    @torch.no_grad()
    def _prepare(self, episodes: list[Episode]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """One teacher-forced pass over the episodes: old log-probs, values, rewards, advantages."""
        longest = max(len(e.completion_ids) for e in episodes)
        seqs = [torch.from_numpy(np.concatenate([e.prompt_ids, e.completion_ids])) for e in episodes]
        input_ids, attention_mask = left_pad(seqs, self.pad_id)  # (n, W)
        token_mask = torch.zeros((len(episodes), longest))  # (n, T): completion tokens, right-aligned
        ref = torch.zeros((len(episodes), longest))
        for row, episode in enumerate(episodes):
            token_mask[row, longest - len(episode.completion_ids):] = 1
            ref[row, longest - len(episode.completion_ids):] = torch.from_numpy(episode.ref_logprobs)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_mask": token_mask,
                 "targets": input_ids[:, -longest:]}
        if all(e.logprobs is not None for e in episodes):  # recorded while acting: no extra forward
            logprobs, values = torch.zeros_like(ref), torch.zeros_like(ref)
            for row, episode in enumerate(episodes):
                logprobs[row, longest - len(episode.logprobs):] = torch.from_numpy(episode.logprobs)
                values[row, longest - len(episode.values):] = torch.from_numpy(episode.values)
        else:
            logprobs, _, values = self._evaluate(batch)
        kl = (logprobs - ref) * token_mask  # (n, T): log pi - log pi_ref per token
        rewards = -self.kl_ctl.value * kl
        scores = torch.tensor([e.score for e in episodes])
        rewards[:, -1] += scores
        if self.algorithm == "ppo":
            dones = np.zeros((longest, len(episodes)))
            dones[-1] = 1.0  # every episode ends at its last token
            adv, ret = compute_gae(rewards.T.numpy(), (values * token_mask).T.numpy(), dones,
                                   np.zeros(len(episodes)), self.cfg.gamma, self.cfg.gae_lambda)
            advantages, returns = torch.as_tensor(adv.T).float(), torch.as_tensor(ret.T).float()
        else:
            totals = rewards.sum(1)  # (n,)
            baseline = (totals.sum() - totals) / max(1, len(episodes) - 1)
            advantages = (totals - baseline)[:, None] * token_mask
            returns = values = torch.zeros_like(advantages)
        batch.update(logprobs=logprobs, values=values * token_mask, advantages=advantages * token_mask,
                     returns=returns)
        stats = {"objective/score": float(scores.mean()), "objective/kl": float(kl.sum(1).mean()),
                 "charts/episodic_return": float(rewards.sum(1).mean()),
                 "charts/episode_length": float(token_mask.sum(1).mean())}
        return batch, stats

    def _evaluate(self, mb: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probs, entropies and values (b, T) of every completion token, in one forward."""
        longest = mb["targets"].shape[1]
        logits, values = self.policy(mb["input_ids"], mb["attention_mask"], keep=longest + 1)
        logp = torch.log_softmax(logits[:, :-1], -1)  # (b, T, V)
        logprobs = logp.gather(-1, mb["targets"].unsqueeze(-1)).squeeze(-1)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.cfg.ent_coef > 0):  # logged only, otherwise
            entropy = -(logp.exp() * logp).sum(-1)
        return logprobs, entropy, values[:, :-1]

    def _update_config(self) -> PPOConfig:
        return replace(self.cfg, vf_coef=0.0) if self.algorithm == "rloo" else self.cfg

    def save(self, path: str | Path) -> None:
        """The policy (``save_pretrained`` + value head), optimizer state and config in ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.policy.save_pretrained(path)
        torch.save(self.optimizer.state_dict(), path / "optimizer.pt")
        (path / "lm_ppo.json").write_text(json.dumps({"config": asdict(self.cfg), "algorithm": self.algorithm,
                                                      "pad_id": self.pad_id, "global_step": self.global_step,
                                                      "updates": self.updates, "kl_coef": self.kl_ctl.value},
                                                     indent=2))

    @classmethod
    def load(cls, path: str | Path) -> LMPPO:
        """Resume from :meth:`save` (optimizer state read weights-only)."""
        path = Path(path)
        meta = json.loads((path / "lm_ppo.json").read_text())
        agent = cls(CausalLMWithValueHead.from_pretrained(path), PPOConfig(**meta["config"]), meta["algorithm"],
                    meta["pad_id"])
        agent.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
        agent.global_step, agent.updates, agent.kl_ctl.value = meta["global_step"], meta["updates"], meta["kl_coef"]
        return agent
