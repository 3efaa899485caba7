import math

import pytest
import torch

from trl_ext.losses import bradley_terry_loss, grouped_bradley_terry_loss


def _bt(x: float) -> float:
    return -math.log(1.0 / (1.0 + math.exp(-x)))


def test_bradley_terry_hand_values():
    chosen = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    rejected = torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64)
    expected = (_bt(1.0) + _bt(0.0) + _bt(-1.0)) / 3
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected, abs=1e-12)


def test_bradley_terry_margin_and_weight():
    chosen = torch.tensor([1.0, 0.5], dtype=torch.float64)
    rejected = torch.tensor([0.0, 1.0], dtype=torch.float64)
    margin = torch.tensor([0.5, 0.0], dtype=torch.float64)
    weight = torch.tensor([3.0, 1.0], dtype=torch.float64)
    expected = (3 * _bt(0.5) + 1 * _bt(-0.5)) / 4
    assert bradley_terry_loss(chosen, rejected, margin, weight).item() == pytest.approx(expected, abs=1e-12)


def test_bradley_terry_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        bradley_terry_loss(torch.zeros(2), torch.zeros(3))


def test_grouped_loss_hand_values():
    # group 0: rewards r0..r2 ranked 0,1,2 -> pairs (0,1),(0,2),(1,2); group 1: r3 > r4 -> pair (3,4)
    rewards = torch.tensor([2.0, 1.0, -1.0, 0.0, 0.5], dtype=torch.float64)
    pair_index = torch.tensor([[0, 1], [0, 2], [1, 2], [3, 4]])
    pair_group = torch.tensor([0, 0, 0, 1])
    g0 = (_bt(1.0) + _bt(3.0) + _bt(2.0)) / 3
    g1 = _bt(-0.5)
    loss = grouped_bradley_terry_loss(rewards, pair_index, pair_group)
    assert loss.item() == pytest.approx((g0 + g1) / 2, abs=1e-12)


def test_grouped_equals_weighted_pairwise_loss_and_gradients():
    torch.manual_seed(0)
    rewards = torch.randn(9, dtype=torch.float64, requires_grad=True)
    # groups of sizes 4, 2, 3 with all pairs (preferred first)
    pair_index = torch.tensor([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3], [4, 5], [6, 7], [6, 8], [7, 8]])
    pair_group = torch.tensor([0] * 6 + [1] + [2] * 3)
    grouped = grouped_bradley_terry_loss(rewards, pair_index, pair_group)
    (g_grouped,) = torch.autograd.grad(grouped, rewards)
    weight = 1.0 / torch.bincount(pair_group).to(torch.float64)[pair_group]
    pairwise = bradley_terry_loss(rewards[pair_index[:, 0]], rewards[pair_index[:, 1]], weight=weight)
    (g_pairwise,) = torch.autograd.grad(pairwise, rewards)
    assert grouped.item() == pytest.approx(pairwise.item(), abs=1e-12)
    torch.testing.assert_close(g_grouped, g_pairwise, atol=1e-12, rtol=0)


def test_grouped_loss_rejects_empty_group_and_bad_shapes():
    rewards = torch.zeros(4)
    with pytest.raises(ValueError, match=r"groups \[1\] have no pairs"):
        grouped_bradley_terry_loss(rewards, torch.tensor([[0, 1], [2, 3]]), torch.tensor([0, 2]), num_groups=3)
    with pytest.raises(ValueError, match="shape"):
        grouped_bradley_terry_loss(rewards, torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="no pairs"):
        grouped_bradley_terry_loss(rewards, torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, dtype=torch.long))


def test_zero_weights_give_zero_loss_and_zero_gradient_not_nan():
    from trl_ext.losses import weighted_mean

    values = torch.tensor([0.3, 0.7], dtype=torch.float64, requires_grad=True)
    loss = weighted_mean(values, torch.zeros(2, dtype=torch.float64))
    (grad,) = torch.autograd.grad(loss, values)
    assert loss.item() == 0.0 and grad.tolist() == [0.0, 0.0]
    chosen = torch.tensor([1.0, 0.5], dtype=torch.float64, requires_grad=True)
    loss = bradley_terry_loss(chosen, torch.zeros(2, dtype=torch.float64), weight=torch.zeros(2))
    (grad,) = torch.autograd.grad(loss, chosen)
    assert loss.item() == 0.0 and torch.isfinite(grad).all() and grad.abs().sum() == 0


def test_grouped_loss_group_weights_against_float64_reference():
    torch.manual_seed(1)
    rewards = torch.randn(5, dtype=torch.float64, requires_grad=True)
    pair_index = torch.tensor([[0, 1], [0, 2], [1, 2], [3, 4]])
    pair_group = torch.tensor([0, 0, 0, 1])
    w = torch.tensor([2.0, 0.5], dtype=torch.float64)
    loss = grouped_bradley_terry_loss(rewards, pair_index, pair_group, group_weight=w)
    r = rewards.detach().tolist()
    g0 = (_bt(r[0] - r[1]) + _bt(r[0] - r[2]) + _bt(r[1] - r[2])) / 3
    g1 = _bt(r[3] - r[4])
    assert loss.item() == pytest.approx((2.0 * g0 + 0.5 * g1) / 2.5, abs=1e-12)
    # gradient equals the pair-weighted pairwise loss with weights w_g / #pairs(g)
    (g_grouped,) = torch.autograd.grad(loss, rewards)
    pair_w = w[pair_group] / torch.bincount(pair_group).to(torch.float64)[pair_group]
    pairwise = bradley_terry_loss(rewards[pair_index[:, 0]], rewards[pair_index[:, 1]], weight=pair_w)
    (g_pairwise,) = torch.autograd.grad(pairwise, rewards)
    torch.testing.assert_close(g_grouped, g_pairwise, atol=1e-12, rtol=0)
    zero = grouped_bradley_terry_loss(rewards, pair_index, pair_group, group_weight=torch.zeros(2))
    assert zero.item() == 0.0
    with pytest.raises(ValueError, match=r"group_weight must have shape \[2\]"):
        grouped_bradley_terry_loss(rewards, pair_index, pair_group, group_weight=torch.ones(3))
