"""The one PPO core (agents/update.py): the loss by hand, the minibatch epochs, the seeds and the KL controller."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator

from agents.config import LMConfig, UpdateConfig
from agents.ppo import PPOConfig, TransitionBatch
from agents.ppo_math import AdaptiveKLController, FixedKLController
from agents.update import ppo_loss, reseed, resume_kl, run_epochs, start_kl, steer_kl


def minibatch(advantages=(1.0, -1.0), values=(0.0, 0.0), returns=(1.0, 1.0)):
    """A two-entry minibatch sampled at log-probability 0."""
    return SimpleNamespace(logprobs=torch.zeros(len(advantages)), values=torch.tensor(values),
                           advantages=torch.tensor(advantages), returns=torch.tensor(returns))


def test_both_configs_share_the_update_fields_and_keep_their_defaults():
    """The shared fields are declared once; each config keeps the defaults it had."""
    shared = {f.name for f in dataclasses.fields(UpdateConfig)}
    assert shared <= {f.name for f in dataclasses.fields(PPOConfig)} and issubclass(PPOConfig, UpdateConfig)
    assert shared <= {f.name for f in dataclasses.fields(LMConfig)} and issubclass(LMConfig, UpdateConfig)
    assert {f.name for f in dataclasses.fields(PPOConfig)} - shared == {"num_steps", "anneal_lr", "clip_vloss"}
    assert dataclasses.asdict(PPOConfig()) == {
        "num_steps": 32, "num_minibatches": 4, "update_epochs": 4, "learning_rate": 2.5e-3, "anneal_lr": False,
        "gamma": 0.99, "gae_lambda": 0.95, "clip_coef": 0.2, "clip_vloss": True, "norm_adv": True, "ent_coef": 0.01,
        "vf_coef": 0.5, "max_grad_norm": 0.5, "target_kl": None, "kl_setpoint": None, "kl_horizon": 10000, "seed": 0}


def test_ppo_loss_adds_the_entropy_bonus_and_always_logs_the_entropy():
    """The mean entropy is logged at any ``ent_coef`` and enters the loss times it; None is no term, logged 0."""
    entropy = torch.tensor([1.0, 3.0])
    for ent_coef in (0.0, 0.5):
        loss, stats = ppo_loss(minibatch(), torch.zeros(2), entropy, None, UpdateConfig(norm_adv=False,
                                                                                           ent_coef=ent_coef))
        assert stats["losses/entropy"].item() == 2.0 and loss.item() == pytest.approx(-ent_coef * 2.0)
    loss, stats = ppo_loss(minibatch(), torch.zeros(2), None, None, UpdateConfig(norm_adv=False, ent_coef=0.5))
    assert loss.item() == 0.0 and stats["losses/entropy"].item() == 0.0


def test_ppo_loss_clips_the_value_loss_unless_the_toy_config_says_not():
    """New value 2, old 0, return 3, clip 0.2: clipped to 0.2, 0.5 * max(1, 2.8 ** 2) = 3.92; unclipped 0.5 * 1."""
    mb = minibatch(values=(0.0, 0.0), returns=(3.0, 3.0))
    values = torch.tensor([2.0, 2.0])
    _, clipped = ppo_loss(mb, torch.zeros(2), None, values, UpdateConfig(norm_adv=False))
    _, unclipped = ppo_loss(mb, torch.zeros(2), None, values, PPOConfig(norm_adv=False, clip_vloss=False))
    assert clipped["losses/value_loss"].item() == pytest.approx(3.92)
    assert unclipped["losses/value_loss"].item() == pytest.approx(0.5)


def toy_batch(size=8):
    """A batch of ``size`` one-feature transitions for a linear policy over 2 actions."""
    return TransitionBatch(obs=torch.ones(size, 1), actions=torch.zeros(size, dtype=torch.long),
                           logprobs=torch.full((size,), -0.6931), values=torch.zeros(size),
                           advantages=torch.ones(size), returns=torch.ones(size))


def run(cfg, loss_of=None, size=8, policy=None):
    """``run_epochs`` of a linear 2-action policy on :func:`toy_batch`; the minibatch sizes seen and the weight."""
    policy = policy or torch.nn.Linear(1, 2)
    seen = []

    def loss_fn(mb):
        seen.append(mb.size)
        logprob = torch.log_softmax(policy(mb.obs), -1).gather(1, mb.actions[:, None]).squeeze(1)
        loss, stats = ppo_loss(mb, logprob, None, None, cfg)
        return (loss_of(loss) if loss_of else loss), stats

    optimizer = torch.optim.SGD(policy.parameters(), lr=1.0)
    stats = run_epochs(toy_batch(size), loss_fn, optimizer, list(policy.parameters()), cfg,
                       torch.Generator().manual_seed(0), Accelerator(cpu=True))
    return seen, policy.weight.detach().clone(), stats


def test_run_epochs_passes_over_every_minibatch_of_every_epoch():
    """Two epochs of four minibatches of two: eight steps, and the diagnostics as floats."""
    seen, _, stats = run(UpdateConfig(num_minibatches=4, update_epochs=2, norm_adv=False))
    assert seen == [2] * 8 and isinstance(stats["losses/policy_loss"], float)


def test_run_epochs_stops_after_the_epoch_whose_kl_passes_target_kl():
    """A large step moves the policy far from the behaviour one: ``target_kl`` stops after the first epoch."""
    seen, _, stats = run(UpdateConfig(num_minibatches=1, update_epochs=5, norm_adv=False, target_kl=1e-6,
                                      max_grad_norm=100.0))
    assert seen == [8] and stats["losses/approx_kl"] > 1e-6


def test_run_epochs_refuses_a_non_finite_gradient_before_stepping():
    """A NaN loss raises before the optimizer steps: the weights are untouched (a finite loss moves them)."""
    policy = torch.nn.Linear(1, 2)
    before = policy.weight.detach().clone()
    with pytest.raises(FloatingPointError, match="not finite"):
        run(UpdateConfig(num_minibatches=1, update_epochs=1), loss_of=lambda loss: loss * float("nan"), policy=policy)
    assert torch.equal(policy.weight, before)
    _, after, _ = run(UpdateConfig(num_minibatches=1, update_epochs=1, norm_adv=False), policy=policy)
    assert not torch.equal(after, before)


def test_run_epochs_needs_the_algorithms_values_filled_in():
    """An LMConfig field left None (the algorithm's value) must be filled by the agent before an update."""
    with pytest.raises(ValueError, match="num_minibatches and update_epochs"):
        run(LMConfig())


def test_reseed_derives_one_seed_per_update_and_process():
    """The same (seed, updates, process) draw the same; another update or process draws differently."""
    generator = torch.Generator()
    draws = {}
    for key in ((0, 0, 0), (0, 0, 0), (0, 1, 0), (0, 0, 1)):
        reseed(*key, generator)
        draws.setdefault(key, []).append((torch.rand(1).item(), torch.randperm(5, generator=generator).tolist()))
    assert draws[(0, 0, 0)][0] == draws[(0, 0, 0)][1]
    assert len({str(d[0]) for d in draws.values()}) == 3


def test_start_steer_and_resume_the_kl_controller():
    """Fixed: the env's coefficient (0 without one). Adaptive: steers the env's, kept across rollouts and resumed."""
    envs = SimpleNamespace(unwrapped=SimpleNamespace(kl_coef=0.3))
    fixed = start_kl(None, envs, UpdateConfig())
    assert isinstance(fixed, FixedKLController) and fixed.value == 0.3
    assert steer_kl(fixed, envs, kl=100.0, n_steps=1000) == 0.3 and envs.unwrapped.kl_coef == 0.3
    assert start_kl(None, SimpleNamespace(unwrapped=SimpleNamespace()), UpdateConfig()).value == 0.0
    cfg = UpdateConfig(kl_setpoint=1.0, kl_horizon=1000)
    adaptive = start_kl(fixed, envs, cfg)
    assert isinstance(adaptive, AdaptiveKLController) and adaptive.value == 0.3
    assert steer_kl(adaptive, envs, kl=2.0, n_steps=1000) == pytest.approx(0.36) == envs.unwrapped.kl_coef
    envs.unwrapped.kl_coef = 0.3  # a fresh environment: the controller gives it its own value
    assert start_kl(adaptive, envs, cfg) is adaptive and envs.unwrapped.kl_coef == pytest.approx(0.36)
    resumed = resume_kl(cfg, adaptive.value)
    assert isinstance(resumed, AdaptiveKLController) and resumed.value == adaptive.value
    assert resume_kl(UpdateConfig(), 0.36) is None and resume_kl(cfg, None) is None
    with pytest.raises(ValueError, match="kl_setpoint needs an environment with a kl_coef"):
        start_kl(None, SimpleNamespace(unwrapped=SimpleNamespace()), cfg)
