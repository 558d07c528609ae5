"""The one PPO core: the update every textgym algorithm runs, toy or text.

Read top to bottom: how an update seeds itself (:func:`reseed`), how the KL coefficient is taken from
the environment and steered (:func:`start_kl`, :func:`steer_kl`, :func:`resume_kl`), the loop over
minibatch epochs (:func:`run_epochs`: shuffled minibatches, backward through accelerate, gradient
clipping, early stop on ``target_kl``) and PPO's loss (:func:`ppo_loss`: clipped surrogate, clipped
value loss, entropy bonus). The toy agent (:class:`agents.ppo.PPO`, transitions of a Gymnasium vector
env) and the language-model algorithms (:class:`agents.lm.LMAgent`, whole episodes) both call these;
each says only how to collect a batch and evaluate a minibatch.

Why apart from :mod:`agents.ppo_math`: that module holds pure math (tensors in, tensors out, tested
by hand-computed cases); this one holds the update's steps, which drive an optimizer through
``accelerate``, reseed torch and set the environment's ``kl_coef``.

The KL penalty: textgym's text environment pays ``kl_coef * log pi_ref(a_t | s_t)``; the agent adds
the other half, ``-kl_coef * log pi(a_t | s_t)``, to each reward, so the return it maximises is
``score - kl_coef * KL(pi || pi_ref)``. ``kl_coef`` is the environment's (one value for both); an
adaptive controller (``kl_setpoint``) takes it over and steers it.

Several processes: the update runs through an ``accelerate.Accelerator``; under ``accelerate launch``
the policy is wrapped for data parallelism (gradients averaged by DDP), each process rolls out its
own episodes, and the weights stay identical on every process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from torch import nn

from agents.config import UpdateConfig
from agents.ppo_math import (
    AdaptiveKLController,
    FixedKLController,
    masked_mean,
    masked_whiten,
    policy_loss,
    value_loss,
)

KLController = AdaptiveKLController | FixedKLController


class Batch(Protocol):
    """What :func:`run_epochs` draws minibatches from: a transition or an episode batch.

    :class:`agents.ppo.TransitionBatch` and :class:`agents.rollout.EpisodeBatch` are two.
    """

    @property
    def size(self) -> int:
        """Entries along the first dimension (transitions, or whole episodes for text)."""
        ...

    def select(self, index: torch.Tensor) -> Any:
        """The entries at ``index``."""
        ...


def reseed(seed: int, updates: int, process_index: int, generator: torch.Generator) -> int:
    """Seed torch and the minibatch ``generator`` for the next rollout and update; return the seed used.

    The seed derives from ``(seed, updates, process_index)``: each process draws its own episodes, and a
    run saved after an update, loaded and continued draws what the uninterrupted run would have.

    >>> reseed(0, updates=2, process_index=1, generator=torch.Generator())
    2100009
    """
    derived = seed + 1_000_003 * updates + 100_003 * process_index
    torch.manual_seed(derived)
    generator.manual_seed(derived)
    return derived


def start_kl(controller: KLController | None, envs: Any, cfg: UpdateConfig) -> KLController:
    """The KL controller of the next rollout: the environment's ``kl_coef``, or an adaptive controller's.

    Without ``cfg.kl_setpoint``: a fixed controller at the environment's coefficient (0 for an
    environment without one, such as tic-tac-toe). With it: ``controller`` if it is already adaptive
    (one resumed from a checkpoint, or steered by earlier updates), else a new one starting from the
    environment's coefficient; either way the environment is given the controller's value.

    Raises:
        ValueError: ``kl_setpoint`` is set but the environment has no ``kl_coef`` to steer.
    """
    env = envs.unwrapped
    if cfg.kl_setpoint is None:
        return FixedKLController(float(getattr(env, "kl_coef", 0.0)))
    if not hasattr(env, "kl_coef"):
        raise ValueError("kl_setpoint needs an environment with a kl_coef (a text environment)")
    if not isinstance(controller, AdaptiveKLController):
        controller = AdaptiveKLController(float(env.kl_coef), cfg.kl_setpoint, cfg.kl_horizon)
    env.kl_coef = controller.value
    return controller


def steer_kl(controller: KLController, envs: Any, kl: float, n_steps: int) -> float:
    """Update ``controller`` with the mean KL per episode over ``n_steps`` steps; return the new coefficient.

    An adaptive controller's value becomes the environment's ``kl_coef`` (``envs`` None: no environment
    to tell); a fixed one changes nothing.
    """
    value = controller.update(kl, n_steps)
    if envs is not None and isinstance(controller, AdaptiveKLController):
        envs.unwrapped.kl_coef = value
    return value


def resume_kl(cfg: UpdateConfig, kl_coef: float | None) -> AdaptiveKLController | None:
    """The adaptive controller a checkpoint saved with coefficient ``kl_coef``; None where there is none to resume.

    :func:`start_kl` then keeps it, so a resumed run steers on from where it stopped.

    >>> resume_kl(UpdateConfig(kl_setpoint=6.0), 0.12).value, resume_kl(UpdateConfig(), 0.12)
    (0.12, None)
    """
    if kl_coef is None or cfg.kl_setpoint is None:
        return None
    return AdaptiveKLController(kl_coef, cfg.kl_setpoint, cfg.kl_horizon)


def run_epochs(batch: Batch, loss_fn: Callable[[Any], tuple[torch.Tensor, dict[str, torch.Tensor]]],
               optimizer: torch.optim.Optimizer, parameters: list[nn.Parameter], cfg: UpdateConfig,
               generator: torch.Generator, accelerator: Accelerator) -> dict[str, float]:
    """``update_epochs`` passes of shuffled minibatches over ``batch``; any algorithm plugs in through ``loss_fn``.

    Args:
        batch: Anything with ``size`` and ``select(index)`` (:class:`Batch`): minibatches are drawn over
            its first dimension (transitions, or whole episodes for text).
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
        ValueError: ``num_minibatches`` or ``update_epochs`` is None (an agent fills them before it updates).
        FloatingPointError: At the first minibatch whose gradient is not finite (a NaN or infinite loss),
            before the optimizer steps: the weights stay those of the last finite step.
    """
    if cfg.num_minibatches is None or cfg.update_epochs is None:
        raise ValueError("num_minibatches and update_epochs must be set: None stands for the algorithm's value, "
                         "which the agent fills in when it is made")
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


def ppo_loss(mb: Any, new_logprob: torch.Tensor, entropy: torch.Tensor | None, new_value: torch.Tensor | None,
             cfg: UpdateConfig, mask: torch.Tensor | None = None, total: torch.Tensor | float | None = None,
             reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's loss on a minibatch: clipped surrogate + ``vf_coef`` * clipped value loss - ``ent_coef`` * entropy.

    Args:
        mb: The minibatch: ``logprobs`` (behaviour), ``values``, ``advantages``, ``returns``.
        new_logprob: The current policy's log-probabilities, shaped like ``mb.logprobs``.
        entropy: Its entropies, shaped alike, or None. Their mean over the entries that count is
            always logged (``losses/entropy``) and enters the loss times ``ent_coef`` (so at 0 it is
            only logged); None: no entropy term, logged as 0.
        new_value: Its values, or None for an algorithm without a value head (no value loss, logged as 0).
        cfg: ``clip_coef``, ``norm_adv``, ``ent_coef``, ``vf_coef``; the value loss is clipped with
            ``clip_coef`` unless the config has ``clip_vloss`` False (:class:`agents.ppo.PPOConfig`).
        mask: Which entries count (per-token batches); None: all.
        total: Entries the means are over, across processes (:mod:`agents.ppo_math`).
        reduce: Sums statistics over processes (advantage normalisation over the whole minibatch).

    Returns:
        The loss, and diagnostics as 0-d tensors (``losses/policy_loss``, ``losses/value_loss``,
        ``losses/entropy``, ``losses/clipfrac``, ``losses/approx_kl``).

    Example:
        >>> from types import SimpleNamespace
        >>> mb = SimpleNamespace(logprobs=torch.zeros(2), values=torch.zeros(2), advantages=torch.tensor([1.0, -1.0]),
        ...                      returns=torch.zeros(2))
        >>> cfg = UpdateConfig(norm_adv=False, ent_coef=0.5)
        >>> loss, stats = ppo_loss(mb, torch.zeros(2), torch.tensor([1.0, 3.0]), None, cfg)
        >>> loss.item(), stats["losses/entropy"].item()  # surrogate 0 at ratio 1, minus 0.5 * mean entropy 2
        (-1.0, 2.0)
    """
    advantages = masked_whiten(mb.advantages, mask, reduce) if cfg.norm_adv else mb.advantages
    pg_loss, clipfrac = policy_loss(new_logprob, mb.logprobs, advantages, cfg.clip_coef, mask, total)
    v_loss = new_logprob.new_zeros(())
    if new_value is not None:
        clip_vloss = getattr(cfg, "clip_vloss", True)  # the toy config's switch; the LM algorithms always clip
        v_loss = value_loss(new_value, mb.values, mb.returns, cfg.clip_coef if clip_vloss else None, mask, total)
    mean_entropy = masked_mean(entropy, mask, total) if entropy is not None else v_loss.new_zeros(())
    loss = pg_loss + cfg.vf_coef * v_loss
    if cfg.ent_coef:  # at 0 the entropies stay out of the graph, and their backward is skipped
        loss = loss - cfg.ent_coef * mean_entropy
    with torch.no_grad():  # diagnostics stay on the device: no synchronisation per minibatch
        log_ratio = new_logprob - mb.logprobs
        stats = {"losses/policy_loss": pg_loss.detach(), "losses/value_loss": v_loss.detach(),
                 "losses/entropy": mean_entropy.detach(), "losses/clipfrac": clipfrac,
                 "losses/approx_kl": masked_mean((log_ratio.exp() - 1) - log_ratio, mask)}
    return loss, stats
