"""What every language-model algorithm shares: the config, acting, the learning loop, saving and loading.

:class:`LMAgent` collects episodes with :class:`agents.rollout.Rollout`, turns them into an
:class:`agents.rollout.EpisodeBatch`, and runs the one PPO core (:mod:`agents.update`).
An algorithm is a subclass that says how to turn a batch into advantages (:meth:`LMAgent.advantages`)
and, if it differs from the clipped surrogate, what loss to minimise (:meth:`LMAgent.loss`): PPO
(:mod:`agents.lm_ppo`), RLOO (:mod:`agents.rloo`), GRPO (:mod:`agents.grpo`) and REINFORCE
(:mod:`agents.reinforce`) are one short module each, and so is a user's own
(``examples/custom_algorithm.py``, ``examples/remax.py``).

Rewards: the per-token reward an algorithm optimises is the environment's reward plus the agent's
half of the KL penalty, rebuilt from what the episode reported:
``r_t = -kl_coef * (log pi(a_t | s_t) - log pi_ref(a_t | s_t)) + task reward earned at t``
(the score at the last token, or each turn's reward at its turn's end). Both log-probabilities are
those of the distribution sampled (``temperature``; the policy's also after ``top_k`` / ``top_p``), so
the environment must be made with the agent's ``temperature`` (``learn`` refuses another). ``kl_coef`` is the
environment's (one value for both); an adaptive controller (``kl_setpoint``) steers the
environment's value. With ``kl_in_loss`` the KL leaves the reward and enters the loss instead
(``+ kl_coef * k3(pi, pi_ref)`` per token), as GRPO does by default.

Defaults per algorithm: config fields left None take the algorithm's values (:attr:`LMAgent.defaults`):
two epochs of two minibatches and the KL in the reward, except GRPO (the KL in the loss) and REINFORCE
(one step per batch).

One policy per batch: :meth:`LMAgent.prepare` starts fresh episodes before every batch, so every token
of a batch was sampled by the weights its behaviour log-probability names. Episodes still running when
a batch is full are dropped, not continued after the update on a KV cache of the old weights (that
would mix two policies in one episode, under one log-probability). Re-scoring their tokens under the
new weights would not help: the new policy did not sample them.

Determinism: every batch starts its episodes with seeds derived from ``(seed, updates, process)``, so
a run saved at an update, loaded and continued repeats the uninterrupted run bit for bit on a CPU
(``textgym train --resume``).

Devices and processes: the policy and its optimizer go through ``accelerate``: one device, or under
``accelerate launch`` data parallelism (DDP; FSDP and DeepSpeed ZeRO through accelerate's config),
each process rolling out its own episodes. Loss means are over all processes' tokens, so a
B-episode update on each of P processes equals one process's update on the P*B episodes.
"""

from __future__ import annotations

import gc
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from accelerate import Accelerator
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents.base import import_class
from agents.config import LMConfig
from agents.policy import LMPolicy
from agents.ppo_math import AdaptiveKLController, FixedKLController, kl_k3, masked_mean
from agents.rollout import EpisodeBatch, Rollout, evaluate
from agents.sampling import LMSampler
from agents.update import KLController, ppo_loss, reseed, resume_kl, run_epochs, start_kl, steer_kl
from textgym.models import disable_dropout, load_causal_lm, load_tokenizer
from textgym.models.precision import compute_frozen_in_fp32
from textgym.models.sampling import Sampling


class LMAgent:
    """Base of the language-model algorithms (module docstring); subclasses implement :meth:`advantages`.

    Args:
        model: The policy's causal LM (plain or with LoRA adapters), or a name for
            :func:`textgym.models.load_causal_lm`. It is trained in place.
        tokenizer: Its tokenizer (saved with every checkpoint); loaded with ``model`` when that is a name.
        config: Hyperparameters.
        accelerator: Devices and processes (default: one made for this process).
    """

    #: Whether the algorithm trains a value head.
    value_head: ClassVar[bool] = False
    #: The environment's group size ``textgym train`` uses unless told otherwise (per-prompt baselines need > 1).
    group_size: ClassVar[int] = 1
    #: The smallest group size the algorithm's baseline works with (:meth:`check_group_size`).
    min_group_size: ClassVar[int] = 1
    #: The values of the config fields left None (a subclass overrides some: ``{**LMAgent.defaults, ...}``).
    defaults: ClassVar[dict[str, Any]] = {"num_minibatches": 2, "update_epochs": 2, "kl_in_loss": False}
    #: The hyperparameters' dataclass (a subclass may extend :class:`LMConfig`).
    config_class: ClassVar[type] = LMConfig

    def __init__(self, model: PreTrainedModel | str, tokenizer: PreTrainedTokenizerBase | None = None,
                 config: LMConfig | None = None, accelerator: Accelerator | None = None) -> None:
        if isinstance(model, str):
            tokenizer = tokenizer or load_tokenizer(model)
            model = load_causal_lm(model)
        if tokenizer is None:
            raise ValueError("pass the tokenizer of the model: it is saved with every checkpoint")
        config = config or LMConfig()
        self.cfg = replace(config, **{k: v for k, v in self.defaults.items() if getattr(config, k) is None})
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        self.accelerator = accelerator or Accelerator()
        disable_dropout(model)  # acting and learning must see the same policy
        compute_frozen_in_fp32(model, device=self.accelerator.device)  # a LoRA base, where bf16 is emulated
        if self.cfg.gradient_checkpointing:
            _enable_checkpointing(model)
        sampling = Sampling(self.cfg.temperature, self.cfg.top_k, self.cfg.top_p)
        if self.cfg.kl_in_loss and sampling.truncates:
            raise ValueError(f"{type(self).__name__} with kl_in_loss=True cannot sample with top_k/top_p: the k3 KL "
                             "term is biased when the policy's distribution is cut (the reference's mass outside "
                             "the cut is never sampled); set kl_in_loss=False (textgym train: --no-kl-in-loss) to "
                             "put the KL in the reward, or sample without top_k/top_p")
        policy = LMPolicy(model, value_head=self.value_head, value_trunk_grad=self.cfg.value_trunk_grad,
                          sampling=sampling)
        trainable = [p for p in policy.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=self.cfg.learning_rate, eps=1e-5, foreach=True)
        self.policy, self.optimizer = self.accelerator.prepare(policy.eval(), optimizer)
        self.generator = torch.Generator().manual_seed(self.cfg.seed)
        self._kl_ctl: KLController | None = None
        self.sampler: LMSampler | None = None
        self.envs: Any = None  # the environment of the last prepare() or update(), for the hooks
        self.num_actions: int | None = None
        self.global_step = 0
        self.updates = 0

    def close(self) -> None:
        """End a multi-process run: drop the data-parallel wrapper, then tear the process group down.

        Call it once, on every process, after the last collective (it waits for every process). The
        order matters with torch's gloo backend: a process group destroyed by the data-parallel
        reducer at exit, while a gloo worker thread still releases a tensor (it needs the GIL that
        the exiting thread holds), deadlocks; destroyed here, after the reducer, it does not. The
        agent still acts, saves and learns in this process afterwards.
        """
        if self.accelerator.num_processes == 1 or not torch.distributed.is_initialized():
            return
        group = torch.distributed.distributed_c10d._get_default_group()
        self.accelerator.wait_for_everyone()
        self.policy = self.accelerator.unwrap_model(self.policy)
        self.accelerator.free_memory()  # forgets the prepared wrapper
        gc.collect()  # the wrapper's reducer goes now, while the group is still referenced here
        self.accelerator.end_training()
        del group  # the last reference: destroyed through its own binding, which releases the GIL

    # ------------------------------------------------------------------------------------------ acting
    @property
    def module(self) -> LMPolicy:
        """The policy module itself (unwrapped from data parallelism)."""
        return self.accelerator.unwrap_model(self.policy)

    @property
    def model(self) -> PreTrainedModel:
        """The trained causal LM."""
        return self.module.model

    def act(self, obs: Any, *, episode_start: np.ndarray | None = None, action_mask: np.ndarray | None = None,
            deterministic: bool = False) -> np.ndarray:
        """Sample the next token of every slot (a KV cache per slot; reset where ``episode_start``)."""
        num_envs = np.atleast_2d(obs["input_ids"]).shape[0]
        if self.sampler is None or self.sampler.num_envs != num_envs:
            self.sampler = self.make_sampler(num_envs, self.cfg.seed)
            episode_start = np.ones(num_envs, dtype=bool)
        starts = np.ones(num_envs, bool) if episode_start is None else episode_start
        return self.sampler.act(obs, starts, action_mask, deterministic)

    def make_sampler(self, num_envs: int, seed: int | None = None) -> LMSampler:
        """A sampler of the current policy for ``num_envs`` slots, with the agent's sampling settings.

        It samples from the trained LM (the weights are shared: an update changes what it draws) at the
        config's ``temperature``, ``top_k`` and ``top_p``, among the environment's :attr:`num_actions`,
        and records the value head's estimates where the algorithm has one. :meth:`prepare` makes one
        per batch; a :class:`agents.rollout.Rollout` takes it to collect episodes.

        Args:
            num_envs: Environment slots (the vector env's ``num_envs``).
            seed: Seed of its random generator (None: torch's global generator).
        """
        return LMSampler(self.model, num_envs, self.pad_id, self.cfg.temperature, seed=seed,
                         value_head=self.module.value_head, num_actions=self.num_actions, top_k=self.cfg.top_k,
                         top_p=self.cfg.top_p)

    # ------------------------------------------------------------------------------------------ learning
    def learn(self, envs: Any, total_steps: int, callback: Callable[[dict[str, float]], bool] | None = None,
              ) -> list[dict[str, float]]:
        """Roll out, update, repeat until ``total_steps`` environment steps; one metrics row per update.

        Args:
            envs: A text-generation vector env (``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")``).
            total_steps: Environment steps (tokens, over all slots) to reach; counts from earlier calls.
            callback: Called with each update's row; returning True stops (a later call continues
                with fresh episodes, seeded from the update count).
        """
        rows: list[dict[str, float]] = []
        began, first_step = time.perf_counter(), self.global_step
        while self.global_step < total_steps:
            rollout = self.prepare(envs)  # fresh episodes: none runs across an update
            episodes = rollout.collect(self.cfg.batch_episodes)
            steps = torch.tensor(rollout.steps, device=self.accelerator.device)
            self.global_step += int(self.reduce(steps))  # every process counts every process's steps: all stop together
            row = self.update(EpisodeBatch.from_episodes(episodes, self.pad_id, self.accelerator.device), envs)
            rows.append({"global_step": self.global_step, **row,
                         "charts/SPS": (self.global_step - first_step) / (time.perf_counter() - began)})
            if callback is not None and callback(rows[-1]):
                break
        return rows

    def prepare(self, envs: Any) -> Rollout:
        """Get ready to act in ``envs`` and to update from its episodes; return a rollout of fresh episodes.

        Checks the environment's prompt groups (:meth:`check_group_size`) and temperature, takes its action space and
        KL coefficient, reseeds torch, the minibatch order and a new sampler (:attr:`sampler`) from
        ``(seed, updates, process)``, and resets the environment with that seed. :meth:`learn` calls
        it before every batch (module docstring); after it, :meth:`update` takes a batch of the
        rollout's episodes, and the hooks find the environment in :attr:`envs`. A rollout serves one
        batch: call ``prepare`` again before the next (a hook such as ReMax's baseline resets the
        environment, and the episodes of the next batch must come from the updated weights).
        """
        self.check_group_size(int(getattr(envs.unwrapped, "group_size", 1)))
        seed = reseed(self.cfg.seed, self.updates, self.accelerator.process_index, self.generator)
        self.envs, self.num_actions = envs, int(envs.single_action_space.n)
        _check_temperature(envs, self.cfg.temperature)
        self._kl_ctl = start_kl(self._kl_ctl, envs, self.cfg)
        self.sampler = self.make_sampler(envs.num_envs, seed + 7919)
        return Rollout(envs, self.sampler, seed=seed)

    @classmethod
    def check_group_size(cls, group_size: int) -> None:
        """Refuse prompt groups smaller than the algorithm's baseline needs (:attr:`min_group_size`)."""
        if group_size < cls.min_group_size:
            raise ValueError(f"{cls.__name__} compares the completions of one prompt and needs groups of at least "
                             f"{cls.min_group_size}; the environment has group_size={group_size}: make it with "
                             f"gym.make_vec(..., group_size={max(cls.group_size, cls.min_group_size)}) "
                             f"(textgym train: --group-size)")

    def update(self, batch: EpisodeBatch, envs: Any = None) -> dict[str, float]:
        """One update from a batch of finished episodes; returns its metrics.

        ``envs``: the environment whose ``kl_coef`` applies and an adaptive controller steers; None
        keeps the one of the last :meth:`prepare` (a coefficient of 0 before any).

        Raises:
            FloatingPointError: If the batch's KL to the reference, or a minibatch's loss or gradient, is
                not finite (a diverged policy); the weights are those of the last finite step.
        """
        self.envs = envs = envs if envs is not None else self.envs
        if self._kl_ctl is None:
            self._kl_ctl = FixedKLController(float(envs.unwrapped.kl_coef) if envs is not None else 0.0)
        kl_ctl = self._kl_ctl
        with torch.no_grad():
            rewards = self.rewards(batch)
            self.advantages(batch, rewards)
            stats = self._episode_stats(batch, rewards)
            if not math.isfinite(stats["objective/kl"]):  # a diverged policy: no update can learn from this batch
                raise FloatingPointError(f"the KL to the reference is {stats['objective/kl']}: not finite (the policy "
                                         "diverged); the weights were not updated")
            if self.cfg.symmetries:
                batch = self.with_symmetries(batch, envs)
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        self.policy.train()
        try:
            losses = run_epochs(batch, self.loss, self.optimizer, trainable, self.cfg, self.generator, self.accelerator)
        finally:
            self.policy.eval()
        self.updates += 1
        tokens = int(batch.token_mask.sum().item()) * self.accelerator.num_processes
        beta = steer_kl(kl_ctl, envs, stats["objective/kl"], tokens)
        return {"update": self.updates, **stats, **losses, "objective/kl_coef": beta}

    def with_symmetries(self, batch: EpisodeBatch, envs: Any = None) -> EpisodeBatch:
        """``batch`` and its symmetric copies (the rules' token maps), each with its own action masks.

        What :meth:`update` trains on with ``symmetries=True``: ``batch`` first, then one copy per
        symmetry of ``envs`` (None: the environment of the last :meth:`prepare`), so ``1 + copies``
        times the episodes.

        A copy is the same decisions seen through a symmetry, so it keeps everything else of its
        episode: rewards, advantages, value targets, and the behaviour log-probabilities and values,
        the ones a symmetric policy would give it. PPO's ratio on a copy then measures how far the
        policy has moved from that, and the clipping bounds it. (Re-scoring the copies under the
        current policy instead treats moves the policy did not sample there as its own; it learned
        worse.)
        """
        envs = envs if envs is not None else self.envs
        transform = getattr(envs.unwrapped, "symmetries", None) if envs is not None else None
        if transform is None:
            raise ValueError("LMConfig(symmetries=True) needs an environment whose rules have symmetries "
                             "(Turns.symmetries), such as textgym/TextTicTacToe-v0; set symmetries=False")
        device = batch.input_ids.device
        variants = [transform(row) for row in batch.input_ids.cpu().numpy()]  # per episode: [(ids, action_map)]
        copies = [batch]
        for k in range(len(variants[0])):
            copy = replace(batch, input_ids=torch.as_tensor(np.stack([v[k][0] for v in variants]), device=device))
            if batch.action_mask is not None:  # an allowed action stays allowed as its image
                images = torch.as_tensor(np.stack([v[k][1] for v in variants]), device=device)  # (B, V)
                images = images[:, None, :batch.action_mask.shape[-1]].expand_as(batch.action_mask)
                copy.action_mask = torch.zeros_like(batch.action_mask).scatter_(2, images, batch.action_mask)
            copies.append(copy)
        return EpisodeBatch.concat(copies)

    @property
    def kl_coef(self) -> float:
        """The KL coefficient of the current update: the environment's, or the adaptive controller's (0 before any).

        Setting it sets the coefficient the next :meth:`update` applies (an adaptive controller steers on
        from the value set), e.g. to update from episodes collected elsewhere; :meth:`prepare` then takes
        the environment's again, or, with an adaptive controller, gives it the controller's.
        """
        return self._kl_ctl.value if self._kl_ctl is not None else 0.0

    @kl_coef.setter
    def kl_coef(self, value: float) -> None:
        if self._kl_ctl is None:
            self._kl_ctl = FixedKLController(float(value))
        else:
            self._kl_ctl.value = float(value)

    def rewards(self, batch: EpisodeBatch) -> torch.Tensor:
        """Per-token rewards (B, T): the task reward where earned, minus the KL penalty on the agent's tokens."""
        if self.cfg.kl_in_loss:
            return batch.token_scores * batch.token_mask
        kl = (batch.logprobs - batch.ref_logprobs) * batch.token_mask
        return (batch.token_scores - self.kl_coef * kl) * batch.token_mask

    def advantages(self, batch: EpisodeBatch, rewards: torch.Tensor) -> None:
        """Set ``batch.advantages`` (B, T) (and ``batch.returns`` for a value head) from the rewards.

        The hook may use the batch's prompts (``batch.prompts``, ``batch.prompt_lengths``) and the
        environment (:attr:`envs`): e.g. answer the prompts greedily there for a baseline
        (:func:`agents.rollout.complete`), which is free to reset it, since every batch starts afresh.
        """
        raise NotImplementedError

    def loss(self, mb: EpisodeBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The clipped surrogate on a minibatch (with PPO's value loss if the algorithm has a value head)."""
        logprobs, entropy, values = evaluate(self.policy, mb, self.num_actions, entropy=True)
        mask = mb.token_mask
        loss, stats = ppo_loss(mb, logprobs, entropy, values, self.cfg, mask, self.total(mask), self.reduce)
        return self.add_kl_loss(loss, stats, logprobs, mb)

    def add_kl_loss(self, loss: torch.Tensor, stats: dict[str, torch.Tensor], logprobs: torch.Tensor,
                    mb: EpisodeBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """With ``kl_in_loss``: ``loss + kl_coef * mean k3(pi, pi_ref)`` over the agent's tokens."""
        if not self.cfg.kl_in_loss:
            return loss, stats
        kl = masked_mean(kl_k3(logprobs, mb.ref_logprobs), mb.token_mask, self.total(mb.token_mask))
        return loss + self.kl_coef * kl, {**stats, "losses/kl": kl.detach()}

    def total(self, mask: torch.Tensor) -> torch.Tensor:
        """The count a per-process loss mean divides by: all processes' tokens over the number of processes."""
        return self.reduce(mask.sum()) / self.accelerator.num_processes

    def reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the processes (itself in one process)."""
        return self.accelerator.reduce(tensor, "sum") if self.accelerator.num_processes > 1 else tensor

    def _episode_stats(self, batch: EpisodeBatch, rewards: torch.Tensor) -> dict[str, float]:
        mask = batch.token_mask
        log_ratio = (batch.logprobs - batch.ref_logprobs) * mask
        # k3 is unbiased only where the reference's support is the policy's: under top-k/top-p, report k1
        kl = log_ratio if self.module.sampling.truncates else kl_k3(batch.logprobs, batch.ref_logprobs).mul(mask)
        per_episode = torch.stack([batch.scores, kl.sum(1), log_ratio.sum(1), rewards.sum(1), mask.sum(1)])  # (5, B)
        means = self.reduce(per_episode.sum(1)) / (batch.size * self.accelerator.num_processes)
        names = ("objective/score", "objective/kl", "objective/kl_k1", "charts/episodic_return",
                 "charts/episode_length")
        return dict(zip(names, means.tolist(), strict=True))

    # ------------------------------------------------------------------------------------------ saving
    def save(self, path: str | Path) -> None:
        """Everything to act and to resume, in the folder ``path``; the folder is also a model folder.

        The LM (``save_pretrained``: full weights, or LoRA adapters naming their base model) and its
        tokenizer, so ``transformers.pipeline("text-generation", model=path)`` generates with it;
        the value head, the optimizer state and ``agent.json`` (class, config, counters) beside.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.module.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        torch.save(self.optimizer.state_dict(), path / "optimizer.pt")
        meta = {"class": f"{type(self).__module__}:{type(self).__qualname__}", "config": asdict(self.cfg),
                "global_step": self.global_step, "updates": self.updates,
                "kl_coef": self._kl_ctl.value if isinstance(self._kl_ctl, AdaptiveKLController) else None}
        (path / "agent.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: str | Path, accelerator: Accelerator | None = None, **model_kwargs: Any) -> LMAgent:
        """Resume from :meth:`save`: the saved class, trainable (LoRA adapters too); optimizer state weights-only.

        ``model_kwargs`` go to :func:`textgym.models.load_causal_lm` (``dtype``, ``device_map``).
        """
        path = Path(path)
        meta = json.loads((path / "agent.json").read_text())
        klass = cls if cls is not LMAgent else import_class(meta["class"], LMAgent)
        config_class = klass.config_class
        model = load_causal_lm(path, trainable=True, **model_kwargs)
        agent = klass(model, load_tokenizer(path), config_class(**meta["config"]), accelerator)
        agent.module.load_value_head(path)
        agent.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
        agent.global_step, agent.updates = meta["global_step"], meta["updates"]
        agent._kl_ctl = resume_kl(agent.cfg, meta.get("kl_coef"))
        return agent


def _check_temperature(envs: Any, temperature: float) -> None:
    """Refuse an environment whose reference is scored at another temperature than the policy samples at."""
    env_temperature = getattr(envs.unwrapped, "temperature", 1.0)
    if env_temperature != temperature:
        raise ValueError(f"the agent samples at temperature {temperature} but the environment scores the reference "
                         f"at {env_temperature}: the KL would compare different temperatures; make the environment "
                         f"with temperature={temperature}")


def _enable_checkpointing(model: PreTrainedModel) -> None:
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.24 (the old name goes in 6)
        model.activation_checkpointing_enable({"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "enable_input_require_grads"):  # peft: the frozen embeddings must pass gradients on
        model.enable_input_require_grads()
