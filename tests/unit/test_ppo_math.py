"""PPO math against hand values and plain-Python float64 references, with padded (masked) completions."""

from __future__ import annotations

import math

import pytest
import torch

from trl_ext.ppo_math import (
    explained_variance,
    gae,
    last_token_index,
    masked_mean,
    masked_whiten,
    per_token_rewards,
    policy_loss,
    value_loss,
)


def _batch(seed=0, b=4, t=6):
    g = torch.Generator().manual_seed(seed)
    lengths = [6, 3, 1, 5][:b]
    mask = torch.tensor([[1.0] * n + [0.0] * (t - n) for n in lengths], dtype=torch.float64)
    return g, mask, lengths


def _ref_gae(rewards, values, length, gamma, lam):
    adv, last = [0.0] * length, 0.0
    for t in reversed(range(length)):
        next_v = values[t + 1] if t + 1 < length else 0.0
        delta = rewards[t] + gamma * next_v - values[t]
        last = delta + gamma * lam * last
        adv[t] = last
    return adv, [a + v for a, v in zip(adv, values[:length])]


def test_gae_hand_values():
    # one sequence of 2 tokens: r = [0, 1], V = [0.5, 0.8], gamma 0.9, lambda 0.5
    rewards = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.8]], dtype=torch.float64)
    adv, ret = gae(rewards, values, torch.ones(1, 2, dtype=torch.float64), gamma=0.9, lam=0.5)
    d1 = 1.0 - 0.8                 # last step: next value 0
    d0 = 0.0 + 0.9 * 0.8 - 0.5
    assert adv[0].tolist() == pytest.approx([d0 + 0.45 * d1, d1])
    assert ret[0].tolist() == pytest.approx([d0 + 0.45 * d1 + 0.5, d1 + 0.8])


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.99, 1.0), (0.9, 0.0)])
def test_gae_matches_float64_reference_with_padding(gamma, lam):
    g, mask, lengths = _batch()
    rewards = torch.randn(mask.shape, generator=g, dtype=torch.float64)
    values = torch.randn(mask.shape, generator=g, dtype=torch.float64)
    poisoned_r = torch.where(mask.bool(), rewards, torch.full_like(rewards, 1e6))  # padding must not leak
    poisoned_v = torch.where(mask.bool(), values, torch.full_like(values, -1e6))
    adv, ret = gae(poisoned_r, poisoned_v, mask, gamma, lam)
    for i, n in enumerate(lengths):
        ref_adv, ref_ret = _ref_gae(rewards[i].tolist(), values[i].tolist(), n, gamma, lam)
        assert adv[i, :n].tolist() == pytest.approx(ref_adv, abs=1e-12)
        assert ret[i, :n].tolist() == pytest.approx(ref_ret, abs=1e-12)
        assert adv[i, n:].abs().sum() == 0 and ret[i, n:].abs().sum() == 0


def test_per_token_rewards_put_the_score_on_the_last_real_token():
    _, mask, lengths = _batch()
    logp = torch.full(mask.shape, -1.0, dtype=torch.float64)
    ref = torch.full(mask.shape, -1.5, dtype=torch.float64)
    scores = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    rewards, kl = per_token_rewards(scores, logp, ref, mask, beta=0.1)
    assert last_token_index(mask).tolist() == [5, 2, 0, 4]
    for i, n in enumerate(lengths):
        expected = [-0.05] * n
        expected[-1] += scores[i].item()
        assert rewards[i, :n].tolist() == pytest.approx(expected)
        assert rewards[i, n:].abs().sum() == 0
        assert kl[i].sum().item() == pytest.approx(0.5 * n)  # sequence KL = sum of log-ratios


def test_policy_loss_clipping_against_reference():
    g, mask, _ = _batch(1)
    old = torch.randn(mask.shape, generator=g, dtype=torch.float64)
    new = old + 0.5 * torch.randn(mask.shape, generator=g, dtype=torch.float64)
    adv = torch.randn(mask.shape, generator=g, dtype=torch.float64)
    loss, stats = policy_loss(new, old, adv, mask, clip_eps=0.2)
    terms, clipped, kls = [], [], []
    for i in range(mask.shape[0]):
        for t in range(mask.shape[1]):
            if mask[i, t]:
                r = math.exp(new[i, t] - old[i, t])
                a = adv[i, t].item()
                u, c = -a * r, -a * min(max(r, 0.8), 1.2)
                terms.append(max(u, c))
                clipped.append(float(c > u))
                kls.append(0.5 * (new[i, t] - old[i, t]).item() ** 2)
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-12)
    assert stats["clipfrac"].item() == pytest.approx(sum(clipped) / len(clipped))
    assert stats["approx_kl"].item() == pytest.approx(sum(kls) / len(kls))
    # gradient only through unclipped tokens: at ratio 1 the loss gradient is -A / #tokens
    x = old.clone().requires_grad_(True)
    policy_loss(x, old, adv, mask)[0].backward()
    assert torch.allclose(x.grad, -adv * mask / mask.sum())


def test_value_loss_clipping_against_reference():
    g, mask, _ = _batch(2)
    old_v = torch.randn(mask.shape, generator=g, dtype=torch.float64)
    v = old_v + torch.randn(mask.shape, generator=g, dtype=torch.float64)
    ret = torch.randn(mask.shape, generator=g, dtype=torch.float64)
    loss, stats = value_loss(v, old_v, ret, mask, clip_eps=0.2)
    terms, clipped = [], []
    for i in range(mask.shape[0]):
        for t in range(mask.shape[1]):
            if mask[i, t]:
                vc = old_v[i, t] + min(max((v[i, t] - old_v[i, t]).item(), -0.2), 0.2)
                a, b = (v[i, t] - ret[i, t]).item() ** 2, (vc - ret[i, t]).item() ** 2
                terms.append(max(a, b))
                clipped.append(float(b > a))
    assert loss.item() == pytest.approx(0.5 * sum(terms) / len(terms), rel=1e-12)
    assert stats["value_clipfrac"].item() == pytest.approx(sum(clipped) / len(clipped))


def test_whiten_and_explained_variance():
    _, mask, _ = _batch()
    x = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    w = masked_whiten(x, mask)
    assert masked_mean(w, mask).item() == pytest.approx(0.0, abs=1e-9)
    vals = w[mask.bool()]
    assert vals.var(unbiased=True).item() == pytest.approx(1.0, rel=1e-6)
    assert (w * (1 - mask)).abs().sum() == 0
    ret = torch.randn(4, 6, dtype=torch.float64)
    assert explained_variance(ret, ret, mask).item() == pytest.approx(1.0)
    assert explained_variance(torch.zeros_like(ret) + masked_mean(ret, mask), ret, mask).item() == pytest.approx(0.0)


def test_asymmetric_clip_token_weights_and_sequence_level_against_reference():
    from trl_ext.ppo_math import aggregate

    g, mask, lengths = _batch(2)
    old = torch.randn(mask.shape, generator=g, dtype=torch.float64)
    new = old + 0.5 * torch.randn(mask.shape, generator=g, dtype=torch.float64)
    adv = torch.randn(mask.shape, generator=g, dtype=torch.float64)
    weight = torch.rand(mask.shape, generator=g, dtype=torch.float64) + 0.5
    loss, _ = policy_loss(new, old, adv, mask, clip_eps=0.2, clip_eps_high=0.28, token_weight=weight, level="sequence")
    per_sequence = []
    for i, n in enumerate(lengths):
        terms = []
        for t in range(n):
            r = math.exp(new[i, t] - old[i, t])
            a = adv[i, t].item()
            terms.append(max(-a * r, -a * min(max(r, 0.8), 1.28)) * weight[i, t].item())
        per_sequence.append(sum(terms) / n)
    assert loss.item() == pytest.approx(sum(per_sequence) / len(per_sequence), rel=1e-12)
    x = torch.tensor([[1.0, 3.0, 0.0], [5.0, 0.0, 0.0], [9.0, 9.0, 9.0]], dtype=torch.float64)
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    assert aggregate(x, m, "token").item() == pytest.approx(3.0)  # (1 + 3 + 5) / 3
    assert aggregate(x, m, "sequence").item() == pytest.approx(3.5)  # (2 + 5) / 2: the empty row does not count
    with pytest.raises(ValueError, match="level must be"):
        aggregate(x, m, "batch")
