"""PPO's pure math against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.ppo_math import (
    AdaptiveKLController,
    FixedKLController,
    compute_gae,
    group_normalized,
    importance_weighted_loss,
    kl_estimators,
    kl_k3,
    leave_one_out,
    masked_whiten,
    policy_gradient_loss,
    policy_loss,
    reward_to_go,
    token_gae,
    value_loss,
)


def test_gae_with_lambda_one_is_discounted_return_minus_value():
    """With lambda 1, returns are the discounted sums with a bootstrap and advantages are returns minus values."""
    rewards = np.array([[1.0], [2.0], [3.0]])
    values = np.array([[0.5], [0.2], [0.1]])
    adv, ret = compute_gae(rewards, values, np.zeros((3, 1)), np.array([4.0]), gamma=0.5, gae_lambda=1.0)
    expected_returns = [1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4, 2 + 0.5 * 3 + 0.25 * 4, 3 + 0.5 * 4]
    np.testing.assert_allclose(ret.ravel(), expected_returns)
    np.testing.assert_allclose(adv.ravel(), np.array(expected_returns) - values.ravel())


def test_gae_with_lambda_zero_is_one_step_td():
    """With lambda 0, the advantage is the one-step TD error, without a bootstrap after an episode's end."""
    rewards, values = np.array([[1.0, 0.0]]), np.array([[0.3, 0.6]])
    adv, _ = compute_gae(rewards, values, np.array([[0.0, 1.0]]), np.array([2.0, 5.0]), gamma=0.9, gae_lambda=0.0)
    np.testing.assert_allclose(adv, [[1 + 0.9 * 2 - 0.3, 0 - 0.6]])  # the second env's episode ended: no bootstrap


def test_gae_stops_at_episode_ends():
    """Advantages do not carry rewards or the bootstrap value across episode ends."""
    rewards = np.array([[0.0], [1.0], [0.0], [1.0]])
    dones = np.array([[0.0], [1.0], [0.0], [1.0]])
    adv, _ = compute_gae(rewards, np.zeros((4, 1)), dones, np.array([100.0]), gamma=1.0, gae_lambda=1.0)
    np.testing.assert_allclose(adv.ravel(), [1.0, 1.0, 1.0, 1.0])


def test_policy_loss_negative_advantage_clips_low_ratios():
    """With a negative advantage, a ratio below 1 - clip is clipped, and the clipped fraction counts it."""
    new = torch.log(torch.tensor([0.5, 1.1]))
    loss, clipped = policy_loss(new, torch.zeros(2), torch.tensor([-2.0, -2.0]), clip_coef=0.2)
    # ratio 0.5: max(2*0.5, 2*0.8) = 1.6; ratio 1.1: max(2.2, 2.2) = 2.2
    assert loss.item() == pytest.approx((1.6 + 2.2) / 2)
    assert clipped.item() == 0.5


def test_value_loss_unclipped_and_clipped():
    """The value loss is half the squared error, and with clipping the larger of clipped and unclipped errors."""
    new, old, ret = torch.tensor([1.0, -1.0]), torch.tensor([0.0, 0.0]), torch.tensor([2.0, 0.0])
    assert value_loss(new, old, ret, None).item() == pytest.approx(0.5 * (1 + 1) / 2)
    # clip 0.5: first max((1-2)^2, (0.5-2)^2) = 2.25; second max(1, 0.25) = 1
    assert value_loss(new, old, ret, 0.5).item() == pytest.approx(0.5 * (2.25 + 1) / 2)


def test_kl_estimators_on_a_known_distribution():
    """On samples of a known distribution, k1 and k3 approach the exact KL and k2 is positive."""
    p, q = torch.tensor([0.25, 0.75]), torch.tensor([0.5, 0.5])  # pi = p, reference = q
    exact = float((p * (p / q).log()).sum())
    torch.manual_seed(0)
    samples = torch.distributions.Categorical(p).sample((200000,)).long()
    est = kl_estimators(p.log()[samples], q.log()[samples])
    assert est["k1"].item() == pytest.approx(exact, abs=0.005)
    assert est["k3"].item() == pytest.approx(exact, abs=0.005)
    assert est["k2"].item() > 0


def test_kl_controllers():
    """A fixed KL coefficient stays put; an adaptive one follows its setpoint, clips the error, refuses a zero one."""
    assert FixedKLController(0.05).update(100.0, 10**6) == 0.05
    ctl = AdaptiveKLController(0.2, kl_setpoint=4.0, horizon=1000)
    assert ctl.update(current_kl=4.4, n_steps=100) == pytest.approx(0.2 * (1 + 0.1 * 0.1))
    assert ctl.update(current_kl=0.0, n_steps=1000) == pytest.approx(0.2 * 1.01 * 0.8)  # error clipped at -0.2
    with pytest.raises(ValueError, match="kl_setpoint"):
        AdaptiveKLController(0.1, kl_setpoint=0.0, horizon=10)


def test_token_gae_skips_environment_tokens_and_padding():
    """Token GAE skips padding and environment tokens, passing rewards and values only between agent tokens."""
    rewards = torch.tensor([[0.0, 0.0, 0.0, 2.0], [0.0, 1.0, 0.0, 1.0]])
    values = torch.tensor([[9.0, 1.0, 9.0, 0.5], [0.2, 0.4, 9.0, 0.6]])
    mask = torch.tensor([[0, 1, 0, 1], [1, 1, 0, 1]])  # row 0: padding, agent, env token, agent
    adv, ret = token_gae(rewards, values, mask, gamma=0.5, gae_lambda=1.0)
    # row 0: the last agent token earns 2 -> adv 2 - 0.5; the first agent token sees 0 + 0.5 * 2 = 1 -> 1 - 1
    torch.testing.assert_close(adv[0], torch.tensor([0.0, 0.0, 0.0, 1.5]))
    torch.testing.assert_close(ret[1], torch.tensor([0.0 + 0.5 * (1 + 0.5 * 1), 1 + 0.5 * 1, 0.0, 1.0]))


def test_group_advantages_by_hand():
    """Leave-one-out and group-normalised advantages match hand values; alike groups get zero; groups of one raise."""
    returns, groups = torch.tensor([1.0, 2.0, 6.0, 4.0, 4.0, 4.0]), torch.tensor([7, 7, 7, 3, 3, 3])
    torch.testing.assert_close(leave_one_out(returns, groups), torch.tensor([-3.0, -1.5, 4.5, 0.0, 0.0, 0.0]))
    centred = group_normalized(returns, groups, scale=False)
    torch.testing.assert_close(centred, torch.tensor([-2.0, -1.0, 3.0, 0.0, 0.0, 0.0]))
    scaled = group_normalized(returns, groups)  # group 7's std: sqrt((4 + 1 + 9) / 2)
    torch.testing.assert_close(scaled[:3], centred[:3] / (7**0.5 + 1e-4))
    assert scaled[3:].abs().max() == 0  # a group that scored alike gets no advantage, not a division by zero
    with pytest.raises(ValueError, match="at least 2 episodes per group"):
        leave_one_out(torch.tensor([1.0, 2.0]), torch.tensor([0, 1]))


def test_group_normalized_is_exactly_zero_on_ties_and_refuses_groups_of_one():
    """A tied group whose mean float sums do not hold exactly (3 x -0.23403046: 1e-4 off, before) gets exactly 0."""
    returns, groups = torch.tensor([-0.23403046] * 3 + [0.7, 0.2, 0.3]), torch.tensor([0, 0, 0, 1, 1, 1])
    for scale in (True, False):
        assert group_normalized(returns, groups, scale=scale)[:3].tolist() == [0.0, 0.0, 0.0]
    torch.testing.assert_close(group_normalized(returns, groups, scale=False)[3:], torch.tensor([0.3, -0.2, -0.1]))
    with pytest.raises(ValueError, match="at least 2 episodes per group, got a group of 1; collect with group_size"):
        group_normalized(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 0, 1]))


def test_reward_to_go_and_the_importance_weighted_loss_by_hand():
    """Reward-to-go sums from each token on (masked tokens 0); the ratio loss is -A * pi / pi_old."""
    rtg = reward_to_go(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.5, -1.0]]), torch.tensor([[1, 0, 1], [1, 1, 1]]))
    assert rtg.tolist() == [[3.0, 0.0, 2.0], [-0.5, -0.5, -1.0]]
    new, old = torch.log(torch.tensor([[3.0, 1.0]])), torch.zeros(1, 2)
    loss = importance_weighted_loss(new, old, torch.tensor([[2.0, 5.0]]), torch.tensor([[1.0, 0.0]]))
    assert loss.item() == pytest.approx(-6.0)  # -(2 * 3), the masked token left out


def test_policy_gradient_and_kl_terms():
    """The policy-gradient loss honours its mask or total, k3 is hand-exact, and whitening ignores masked values."""
    assert policy_gradient_loss(torch.tensor([-1.0, -3.0]), torch.tensor([2.0, -1.0]),
                                torch.tensor([1.0, 0.0])).item() == 2.0  # -(2 * -1), the masked token left out
    assert policy_gradient_loss(torch.tensor([-1.0, -3.0]), torch.tensor([2.0, -1.0]), total=4.0).item() == -0.25
    k3 = kl_k3(torch.tensor([0.0, -1.0]), torch.tensor([0.0, -2.0]))
    assert k3[0] == 0 and k3[1].item() == pytest.approx(np.exp(-1) - 1 + 1)
    white = masked_whiten(torch.tensor([1.0, 2.0, 3.0, 50.0]), torch.tensor([1, 1, 1, 0]))
    assert white[:3].tolist() == pytest.approx([-1.2247, 0.0, 1.2247], abs=1e-4)
