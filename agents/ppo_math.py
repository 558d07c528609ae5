"""The pure math of the algorithms: advantage estimators, policy and value losses, KL estimators and controllers.

Small functions with hand-computed tests. Shapes: ``T`` steps by ``N`` environments for the toy
rollout arrays; per-token tensors of language-model episodes are (B, T), completions right-aligned,
with a 0/1 ``mask`` of the tokens that count (the agent's tokens; padding and an environment's
tokens are 0); per-episode tensors are (B,).

Means over tokens take an optional ``total``: the number of tokens the mean is over. With several
processes, each passes the count over all of them, so that the gradients the processes average
equal one process's gradient over the whole batch.
"""

from __future__ import annotations

import numpy as np
import torch


def compute_gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_values: np.ndarray,
                gamma: float, gae_lambda: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over a (T, N) rollout.

    ``dones[t]`` is True where the episode ended with step t (terminated or truncated; a
    truncation is treated as the end, as RLHF does with ``max_new_tokens``), so nothing flows from
    step t+1 back into step t. ``last_values`` (N,) bootstraps the unfinished episodes after step T-1.

    Returns:
        ``(advantages, returns)``, both (T, N), with ``returns = advantages + values``.

    Example:
        >>> adv, ret = compute_gae(np.array([[1.0], [1.0]]), np.array([[0.5], [0.5]]), np.array([[0], [1]]),
        ...                        np.array([9.0]), gamma=0.9, gae_lambda=0.5)
        >>> adv.ravel().round(4).tolist()  # delta_1 = 1 - 0.5; delta_0 = 1 + 0.9 * 0.5 - 0.5; adv_0 = 0.95 + 0.45 * 0.5
        [1.175, 0.5]
    """
    steps = rewards.shape[0]
    advantages = np.zeros_like(rewards, dtype=np.float64)
    last = np.zeros(rewards.shape[1:], dtype=np.float64)
    for t in reversed(range(steps)):
        not_done = 1.0 - dones[t]
        next_values = last_values if t == steps - 1 else values[t + 1]
        delta = rewards[t] + gamma * next_values * not_done - values[t]
        last = delta + gamma * gae_lambda * not_done * last
        advantages[t] = last
    return advantages, advantages + values


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None, total: torch.Tensor | float | None = None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1 (all entries if ``mask`` is None).

    ``total``: divide the masked sum by this count instead (module docstring).

    >>> masked_mean(torch.tensor([[1.0, 3.0], [5.0, 7.0]]), torch.tensor([[0, 1], [1, 1]])).item()
    5.0
    """
    if mask is None:
        return x.mean() if total is None else x.sum() / total
    return (x * mask).sum() / (mask.sum().clamp(min=1) if total is None else total)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor | None, reduce=None) -> torch.Tensor:
    """``(x - mean) / std`` over the entries where ``mask`` is 1; ``reduce`` sums statistics over processes.

    >>> masked_whiten(torch.tensor([1.0, 3.0, 100.0]), torch.tensor([1, 1, 0])).tolist()[:2]
    [-1.0, 1.0]
    """
    mask = torch.ones_like(x) if mask is None else mask.to(x.dtype)
    sums = torch.stack([(x * mask).sum(), (x * x * mask).sum(), mask.sum()])  # (3,)
    if reduce is not None:
        sums = reduce(sums)
    mean = sums[0] / sums[2].clamp(min=1)
    var = (sums[1] / sums[2].clamp(min=1) - mean**2).clamp(min=0)
    return (x - mean) / (var.sqrt() + 1e-8)


def token_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
              gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over language-model episodes: (B, T) rewards and values at the agent's tokens, right-aligned.

    Each row is one whole episode ending at its last column; positions where ``mask`` is 0
    (padding before the completion, an environment's tokens inside it) are skipped: the agent's
    next token follows directly, as in the agent's own sequence of decisions.

    Returns:
        ``(advantages, returns)``, (B, T), 0 where ``mask`` is 0.

    >>> adv, ret = token_gae(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 9.0, 0.5]]),
    ...                      torch.tensor([[1, 0, 1]]), gamma=1.0, gae_lambda=1.0)
    >>> adv.tolist(), ret.tolist()  # the masked middle column is skipped: both agent tokens see return 1
    ([[0.5, 0.0, 0.5]], [[1.0, 0.0, 1.0]])
    """
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])  # (B,) advantage of the next agent token
    next_values = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        here = mask[:, t] > 0
        delta = rewards[:, t] + gamma * next_values - values[:, t]
        gae = delta + gamma * gae_lambda * last
        advantages[:, t] = torch.where(here, gae, torch.zeros_like(gae))
        last = torch.where(here, gae, last)
        next_values = torch.where(here, values[:, t], next_values)
    return advantages, (advantages + values) * mask


def reward_to_go(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per token, the sum of the rewards from that token to the episode's end (0 where ``mask`` is 0).

    REINFORCE's per-token return: a token is credited with what was earned at it and after it, not before.

    >>> reward_to_go(torch.tensor([[0.0, 2.0, -1.0, 3.0]]), torch.tensor([[0, 1, 1, 1]])).tolist()
    [[0.0, 4.0, 2.0, 3.0]]
    """
    return rewards.flip(1).cumsum(1).flip(1) * mask


def group_sizes(groups: torch.Tensor, minimum: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """``(same, count)``: which episodes share a group (B, B) and each episode's group size (B,).

    Raises:
        ValueError: A group has fewer than ``minimum`` episodes (a per-prompt baseline needs rivals).
    """
    same = groups[:, None] == groups[None, :]  # (B, B)
    count = same.sum(1)
    if bool((count < minimum).any()):
        raise ValueError(f"a per-prompt baseline needs at least {minimum} episodes per group, got a group of "
                         f"{int(count.min())}; collect with group_size >= {minimum}")
    return same, count


def leave_one_out(returns: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """RLOO's advantage: each episode's return minus the mean return of the other episodes of its group.

    >>> leave_one_out(torch.tensor([1.0, 3.0, 5.0, 10.0, 20.0]), torch.tensor([0, 0, 0, 1, 1])).tolist()
    [-3.0, 0.0, 3.0, -10.0, 10.0]
    """
    same, count = group_sizes(groups)
    others = (same.to(returns.dtype) @ returns - returns) / (count.to(returns.dtype) - 1)
    return returns - others


def group_normalized(returns: torch.Tensor, groups: torch.Tensor, scale: bool = True,
                     eps: float = 1e-4) -> torch.Tensor:
    """GRPO's advantage: each return minus its group's mean, divided by the group's std (if ``scale``).

    ``scale=False`` is the variant without the std (Dr. GRPO), which does not weigh prompts whose
    completions all score alike more than others. A group whose returns are tied gets exactly 0.

    >>> [round(a, 3) for a in group_normalized(torch.tensor([1.0, 3.0, 0.0, 0.0]), torch.tensor([0, 0, 1, 1])).tolist()]
    [-0.707, 0.707, 0.0, 0.0]
    """
    same, count = group_sizes(groups)
    same, count = same.to(returns.dtype), count.to(returns.dtype)
    lowest = returns[None, :].expand_as(same).masked_fill(same == 0, float("inf")).min(1).values  # (B,)
    shifted = returns - lowest  # exactly 0 across a tied group, so its mean and advantages are too
    centred = shifted - same @ shifted / count
    if not scale:
        return centred
    std = (same @ centred**2 / (count - 1).clamp(min=1)).sqrt()  # unbiased, as TRL computes it
    return centred / (std + eps)


def policy_loss(new_logprob: torch.Tensor, old_logprob: torch.Tensor, advantages: torch.Tensor,
                clip_coef: float, mask: torch.Tensor | None = None, total: torch.Tensor | float | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate loss (to minimise) and the fraction of clipped ratios.

    Inputs may be flat (B,) or per token (B, T) with a 0/1 ``mask`` of real tokens.

    >>> loss, clipped = policy_loss(torch.log(torch.tensor([1.5, 0.5])), torch.zeros(2), torch.tensor([1.0, 1.0]), 0.2)
    >>> round(loss.item(), 4), clipped.item()  # ratios 1.5 -> 1.2 and 0.5 (unclipped, pessimistic min)
    (-0.85, 1.0)
    """
    ratio = (new_logprob - old_logprob).exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)
    return (masked_mean(torch.max(unclipped, clipped), mask, total),
            masked_mean(((ratio - 1).abs() > clip_coef).float(), mask))


def value_loss(new_values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               clip_coef: float | None, mask: torch.Tensor | None = None,
               total: torch.Tensor | float | None = None) -> torch.Tensor:
    """Half the squared error of the value head, pessimistically clipped around the old values.

    >>> value_loss(torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([1.0]), clip_coef=0.5).item()
    0.5
    """
    unclipped = (new_values - returns) ** 2
    if clip_coef is None:
        return 0.5 * masked_mean(unclipped, mask, total)
    clipped = (old_values + (new_values - old_values).clamp(-clip_coef, clip_coef) - returns) ** 2
    return 0.5 * masked_mean(torch.max(unclipped, clipped), mask, total)


def policy_gradient_loss(new_logprob: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor | None = None,
                         total: torch.Tensor | float | None = None) -> torch.Tensor:
    """REINFORCE's loss: ``-advantage * log pi(a | s)``, averaged over the tokens that count.

    >>> policy_gradient_loss(torch.tensor([-1.0, -2.0]), torch.tensor([1.0, -1.0])).item()
    -0.5
    """
    return masked_mean(-advantages * new_logprob, mask, total)


def importance_weighted_loss(new_logprob: torch.Tensor, old_logprob: torch.Tensor, advantages: torch.Tensor,
                             mask: torch.Tensor | None = None, total: torch.Tensor | float | None = None,
                             ) -> torch.Tensor:
    """The policy gradient off the behaviour policy: ``-advantage * pi(a | s) / pi_old(a | s)``, unclipped.

    At the behaviour policy (ratio 1) its gradient is :func:`policy_gradient_loss`'s; after a step
    the ratio reweights the behaviour policy's tokens to the current policy (per token, as PPO's
    surrogate does, without its clipping).

    >>> importance_weighted_loss(torch.log(torch.tensor([2.0, 0.5])), torch.zeros(2), torch.tensor([1.0, -1.0])).item()
    -0.75
    """
    return masked_mean(-advantages * (new_logprob - old_logprob).exp(), mask, total)


def kl_k3(logprob: torch.Tensor, ref_logprob: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || ref) from tokens sampled from pi: never negative.

    Unbiased where ref's support lies within pi's; under a top-k/top-p cut of pi its expectation falls short
    by ref's mass outside the cut.

    >>> round(kl_k3(torch.tensor([0.0]), torch.log(torch.tensor([0.5]))).item(), 4)
    0.1931
    """
    log_ratio = ref_logprob - logprob
    return log_ratio.exp() - 1 - log_ratio


def kl_estimators(logprob: torch.Tensor, ref_logprob: torch.Tensor) -> dict[str, torch.Tensor]:
    """Schulman's estimators of KL(pi || ref) from samples of pi: k1 (unbiased), k2, k3 (>= 0; unbiased, see kl_k3).

    >>> {k: round(v.item(), 4) for k, v in kl_estimators(torch.tensor([0.0]), torch.log(torch.tensor([0.5]))).items()}
    {'k1': 0.6931, 'k2': 0.2402, 'k3': 0.1931}
    """
    log_ratio = ref_logprob - logprob  # log(ref / pi)
    return {"k1": (-log_ratio).mean(), "k2": (0.5 * log_ratio**2).mean(),
            "k3": (log_ratio.exp() - 1 - log_ratio).mean()}


class FixedKLController:
    """A constant ``kl_coef``."""

    def __init__(self, kl_coef: float) -> None:
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> float:
        """Return the (unchanged) coefficient."""
        return self.value


class AdaptiveKLController:
    """Ziegler et al. (2019): steer ``kl_coef`` so the policy's KL to the reference nears ``kl_setpoint``.

    ``coef *= 1 + clip(kl / kl_setpoint - 1, -0.2, 0.2) * n_steps / horizon``. The setpoint is named
    apart from PPO's ``target_kl``, which stops an update's epochs early instead.

    >>> ctl = AdaptiveKLController(0.1, kl_setpoint=6.0, horizon=10000)
    >>> round(ctl.update(current_kl=12.0, n_steps=1000), 4)  # error clipped to +0.2: coef * 1.02
    0.102
    """

    def __init__(self, init_kl_coef: float, kl_setpoint: float, horizon: int) -> None:
        if kl_setpoint <= 0 or horizon <= 0:
            raise ValueError(f"kl_setpoint and horizon must be > 0, got {kl_setpoint} and {horizon}")
        self.value, self.kl_setpoint, self.horizon = init_kl_coef, kl_setpoint, horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        """Move the coefficient after ``n_steps`` samples with mean KL ``current_kl``; return it."""
        error = float(np.clip(current_kl / self.kl_setpoint - 1, -0.2, 0.2))
        self.value *= 1 + error * n_steps / self.horizon
        return self.value
