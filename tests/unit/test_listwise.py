"""Plackett-Luce (listwise) loss and NDCG against hand-computed and plain-Python float64 references."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from trl_ext.losses import bradley_terry_loss, plackett_luce_loss
from trl_ext.metrics import group_ranking_metrics, ndcg


def _pl_nll(scores: list[float], ranks: list[int], top_k: int | None = None) -> float:
    """Plain-Python reference: each item a Luce choice over itself and the strictly worse items."""
    total = 0.0
    for i, (s, r) in enumerate(zip(scores, ranks)):
        better = sum(rank < r for rank in ranks)
        if top_k is not None and better >= top_k:
            continue
        pool = [scores[j] for j in range(len(scores)) if j == i or ranks[j] > r]
        total += math.log(sum(math.exp(v) for v in pool)) - s
    return total


def _t(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


def test_without_ties_it_is_the_plackett_luce_probability_of_the_ranking():
    scores = [0.3, -1.2, 2.0, 0.7]
    order = [2, 3, 0, 1]  # the ranking, best first
    ranks = [order.index(i) for i in range(4)]
    prob = 1.0
    remaining = list(order)
    for item in order:
        prob *= math.exp(scores[item]) / sum(math.exp(scores[j]) for j in remaining)
        remaining.remove(item)
    loss = plackett_luce_loss(_t(scores), _t(ranks), torch.zeros(4, dtype=torch.long))
    assert loss.item() == pytest.approx(-math.log(prob), rel=1e-12)
    # and the probabilities of all 24 rankings sum to 1
    total = sum(math.exp(-plackett_luce_loss(_t(scores), _t([p.index(i) for i in range(4)]),
                                             torch.zeros(4, dtype=torch.long)).item())
                for p in itertools.permutations(range(4)))
    assert total == pytest.approx(1.0, rel=1e-12)


def test_k2_equals_bradley_terry_exactly_with_gradients():
    scores = _t([1.3, -0.4, 0.2, 0.9], dtype=torch.float64).requires_grad_(True)
    ranks, group = _t([0, 1, 1, 0]), torch.tensor([0, 0, 1, 1])
    pl = plackett_luce_loss(scores, ranks, group)
    (g_pl,) = torch.autograd.grad(pl, scores)
    bt = bradley_terry_loss(scores[[0, 3]], scores[[1, 2]])
    (g_bt,) = torch.autograd.grad(bt, scores)
    assert pl.item() == pytest.approx(bt.item(), abs=1e-15)
    torch.testing.assert_close(g_pl, g_bt, atol=1e-15, rtol=0)


def test_ties_top_k_group_weights_and_gradients_against_the_reference():
    torch.manual_seed(0)
    scores = torch.randn(9, dtype=torch.float64, requires_grad=True)
    ranks = _t([0, 1, 1, 2, 3, 0, 0, 1, 2])  # group 0: a tie at rank 1; group 1: a tie at the top
    group = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1])
    weight = _t([2.0, 0.5])
    for top_k in (None, 1, 2):
        loss = plackett_luce_loss(scores, ranks, group, group_weight=weight, top_k=top_k)
        s, r = scores.detach().tolist(), ranks.tolist()
        expected = (2.0 * _pl_nll(s[:5], r[:5], top_k) + 0.5 * _pl_nll(s[5:], r[5:], top_k)) / 2.5
        assert loss.item() == pytest.approx(expected, rel=1e-12), top_k
    # gradient check in float64
    assert torch.autograd.gradcheck(lambda x: plackett_luce_loss(x, ranks, group, group_weight=weight, top_k=2),
                                    (scores,))


def test_tied_items_are_symmetric_and_an_all_tied_group_contributes_nothing():
    ranks, group = _t([0, 0, 1]), torch.zeros(3, dtype=torch.long)
    a = plackett_luce_loss(_t([0.5, 1.5, -1.0]), ranks, group).item()
    b = plackett_luce_loss(_t([1.5, 0.5, -1.0]), ranks, group).item()
    assert a == pytest.approx(b, rel=1e-14)
    assert plackett_luce_loss(_t([0.5, 1.5, -1.0]), _t([0, 0, 0]), group).item() == 0.0


def test_large_scores_stay_finite():
    loss = plackett_luce_loss(_t([1e4, -1e4, 3e3], dtype=torch.float32), _t([2, 1, 0], dtype=torch.float32),
                              torch.zeros(3, dtype=torch.long))
    assert torch.isfinite(loss) and loss.item() == pytest.approx((1e4 - 3e3) + 2e4, rel=1e-4)


def test_bad_shapes_and_top_k():
    with pytest.raises(ValueError, match="1-D of one length"):
        plackett_luce_loss(_t([1.0, 2.0]), _t([0, 1, 2]), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        plackett_luce_loss(_t([1.0, 2.0]), _t([0, 1]), torch.zeros(2, dtype=torch.long), top_k=0)


def _ndcg_reference(pred, ranks, k=None):
    levels = sorted(set(ranks))
    gain = {r: 2.0 ** (len(levels) - 1 - levels.index(r)) - 1.0 for r in ranks}
    n = len(pred)
    disc = [1.0 / math.log2(p + 2) if k is None or p < k else 0.0 for p in range(n)]
    ideal = sum(g * d for g, d in zip(sorted((gain[r] for r in ranks), reverse=True), disc))
    # expected DCG over every order consistent with the predictions (ties broken at random)
    orders = [o for o in itertools.permutations(range(n))
              if all(pred[o[i]] >= pred[o[i + 1]] for i in range(n - 1))]
    dcg = sum(sum(gain[ranks[item]] * disc[p] for p, item in enumerate(o)) for o in orders) / len(orders)
    return dcg / ideal


@pytest.mark.parametrize("pred,ranks,k", [([0.1, 0.9, 0.5, 0.3], [2, 0, 1, 3], None), ([1.0, 1.0, 0.2], [1, 0, 2], None),
                                          ([0.3, 0.3, 0.3, 0.1], [0, 2, 1, 1], 2), ([0.9, 0.1, 0.5], [0, 1, 1], 1),
                                          ([2.0, 1.0, 3.0, 0.0, 1.0], [3, 1, 0, 2, 0], 3)])
def test_ndcg_against_the_expected_dcg_over_tie_breaks(pred, ranks, k):
    assert ndcg(pred, ranks, k) == pytest.approx(_ndcg_reference(pred, ranks, k), rel=1e-12)


def test_ndcg_edge_cases_and_group_metrics():
    assert ndcg([3.0, 2.0, 1.0], [0, 1, 2]) == 1.0
    assert math.isnan(ndcg([1.0, 2.0], [0, 0]))  # one level: nothing to order
    assert math.isnan(ndcg([], []))
    with pytest.raises(ValueError, match="k must be >= 1"):
        ndcg([1.0], [0], k=0)
    metrics = group_ranking_metrics([0.9, 0.1, 0.5], [0, 2, 1], k=2)
    assert set(metrics) == {"kendall_tau", "spearman", "top1_accuracy", "ndcg", "ndcg@2"}
    assert metrics["ndcg"] == metrics["ndcg@2"] == 1.0
