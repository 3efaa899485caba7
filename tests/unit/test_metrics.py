"""Tests for trl_ext.metrics: hand-computed values, NaN cases, and agreement with scipy / brute force."""

from __future__ import annotations

import math
import random
import time

import pytest
import torch

from trl_ext.metrics import (
    group_ranking_metrics,
    kendall_tau,
    pair_accuracy,
    pairwise_auc,
    spearman,
    top1_correct,
)

# ---------------------------------------------------------------------------------------------------------------------
# pair_accuracy


def test_pair_accuracy_a_tie_is_not_a_win() -> None:
    chosen = torch.tensor([1.0, 2.0, 3.0, 4.0])
    rejected = torch.tensor([0.0, 2.0, 5.0, 4.0])
    # win, tie, loss, tie -> (1 + 0 + 0 + 0) / 4: TRL's `accuracy` / `rewards/accuracies` meaning
    acc = pair_accuracy(chosen, rejected)
    assert acc.dim() == 0
    assert acc.item() == pytest.approx(0.25)
    assert acc.item() == pytest.approx((chosen > rejected).float().mean().item())  # the formula TRL logs


def test_pair_accuracy_all_ties_is_zero() -> None:
    x = torch.zeros(7)
    assert pair_accuracy(x, x).item() == 0.0


def test_pair_accuracy_weighted() -> None:
    chosen = torch.tensor([1.0, 2.0, 3.0, 4.0])
    rejected = torch.tensor([0.0, 2.0, 5.0, 4.0])
    weight = torch.tensor([1.0, 1.0, 2.0, 0.0])
    # (1*1 + 1*0 + 2*0 + 0*0) / (1 + 1 + 2 + 0) = 1 / 4
    assert pair_accuracy(chosen, rejected, weight).item() == pytest.approx(0.25)


def test_pair_accuracy_2d_and_int_inputs() -> None:
    chosen = torch.tensor([[3, 1], [2, 2]])
    rejected = torch.tensor([[1, 3], [2, 0]])
    assert pair_accuracy(chosen, rejected).item() == pytest.approx((1 + 0 + 0 + 1) / 4)


def test_pair_accuracy_no_grad_leak() -> None:
    chosen = torch.tensor([1.0, 0.0], requires_grad=True)
    acc = pair_accuracy(chosen, torch.zeros(2))
    assert not acc.requires_grad


def test_pair_accuracy_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        pair_accuracy(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"weight.*\(2,\)"):
        pair_accuracy(torch.zeros(3), torch.zeros(3), torch.ones(2))


# ---------------------------------------------------------------------------------------------------------------------
# pairwise_auc


def _brute_auc(pos: list[float], neg: list[float]) -> float:
    total = 0.0
    for p in pos:
        for n in neg:
            total += 1.0 if p > n else 0.5 if p == n else 0.0
    return total / (len(pos) * len(neg))


def test_pairwise_auc_hand_computed() -> None:
    pos = [0.9, 0.5, 0.5]
    neg = [0.5, 0.1]
    # 0.9 beats both (2); each 0.5 ties 0.5 (0.5) and beats 0.1 (1) -> 2 + 1.5 + 1.5 = 5 of 6 pairs.
    assert pairwise_auc(pos, neg) == pytest.approx(5 / 6)


def test_pairwise_auc_extremes_and_tensor_input() -> None:
    assert pairwise_auc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == pytest.approx(1.0)
    assert pairwise_auc([0.0, 1.0], [2.0, 3.0]) == pytest.approx(0.0)
    assert pairwise_auc([1.0, 1.0], [1.0]) == pytest.approx(0.5)


def test_pairwise_auc_empty_is_nan() -> None:
    assert math.isnan(pairwise_auc([], [1.0]))
    assert math.isnan(pairwise_auc([1.0], []))
    assert math.isnan(pairwise_auc([], []))


def test_pairwise_auc_matches_brute_force_with_ties() -> None:
    rng = random.Random(0)
    for trial in range(20):
        n_pos, n_neg = rng.randint(1, 60), rng.randint(1, 60)
        # Small integer range -> many ties within and across the two sides.
        pos = [float(rng.randint(0, 8)) for _ in range(n_pos)]
        neg = [float(rng.randint(0, 6)) for _ in range(n_neg)]
        assert pairwise_auc(pos, neg) == pytest.approx(_brute_auc(pos, neg), abs=1e-12), trial


def test_pairwise_auc_is_fast_on_large_input() -> None:
    gen = torch.Generator().manual_seed(0)
    pos = torch.randn(100_000, generator=gen) + 0.5
    neg = torch.round(torch.randn(100_000, generator=gen) * 4) / 4  # rounded -> ties
    start = time.perf_counter()
    auc = pairwise_auc(pos, neg)
    assert time.perf_counter() - start < 5.0
    assert 0.5 < auc < 1.0


def test_nan_input_rejected() -> None:
    with pytest.raises(ValueError, match="positive contains NaN"):
        pairwise_auc([float("nan")], [1.0])
    with pytest.raises(ValueError, match="pred contains NaN"):
        kendall_tau([1.0, float("nan")], [0, 1])


# ---------------------------------------------------------------------------------------------------------------------
# kendall_tau / spearman: hand-computed


def test_perfect_and_reversed_order() -> None:
    pred = [0.1, 0.5, 0.9]
    best_last = [2, 1, 0]  # the highest reward has gold rank 0
    assert kendall_tau(pred, best_last) == pytest.approx(1.0)
    assert spearman(pred, best_last) == pytest.approx(1.0)
    assert kendall_tau(pred, [0, 1, 2]) == pytest.approx(-1.0)
    assert spearman(pred, [0, 1, 2]) == pytest.approx(-1.0)


def test_three_elements_by_hand() -> None:
    # pred = [3, 1, 2], gold ranks [0, 1, 2] -> compare pred with -gold = [0, -1, -2].
    # Pairs: (0,1) concordant, (0,2) concordant, (1,2) discordant -> tau = (2 - 1) / 3.
    # Ranks of pred [3, 1, 2], ranks of -gold [3, 2, 1]; d = [0, -1, 1], rho = 1 - 6*2 / (3*(9-1)) = 0.5.
    pred, gold = [3.0, 1.0, 2.0], [0, 1, 2]
    assert kendall_tau(pred, gold) == pytest.approx(1 / 3)
    assert spearman(pred, gold) == pytest.approx(0.5)


def test_four_elements_by_hand() -> None:
    # pred = [0.4, 0.1, 0.3, 0.2], -gold = [0, -1, -2, -3] (strictly decreasing).
    # Concordant iff pred[i] > pred[j] for i < j: (0,1) (0,2) (0,3) (2,3) -> C = 4, D = 2, tau = 2/6.
    # Ranks of pred [4, 1, 3, 2], of -gold [4, 3, 2, 1]; d = [0, -2, 1, 1], sum d^2 = 6, rho = 1 - 36/60 = 0.4.
    pred, gold = [0.4, 0.1, 0.3, 0.2], [0, 1, 2, 3]
    assert kendall_tau(pred, gold) == pytest.approx(1 / 3)
    assert spearman(pred, gold) == pytest.approx(0.4)


def test_four_elements_with_ties_by_hand() -> None:
    # pred = [2, 2, 1, 0], gold = [0, 1, 1, 3] -> -gold = [0, -1, -1, -3].
    # Pairs: (0,1) tie in pred; (1,2) tie in gold; the other 4 are concordant; no discordant.
    # n0 = 6, ties_pred = 1, ties_gold = 1 -> tau-b = 4 / sqrt(5 * 5) = 0.8.
    # Average ranks: pred [3.5, 3.5, 2, 1], -gold [4, 2.5, 2.5, 1], both with mean 2.5.
    # Centred: [1, 1, -0.5, -1.5] and [1.5, 0, 0, -1.5]; cov = 3.75, var = 4.5 each -> rho = 3.75 / 4.5 = 5/6.
    pred, gold = [2.0, 2.0, 1.0, 0.0], [0, 1, 1, 3]
    assert kendall_tau(pred, gold) == pytest.approx(0.8)
    assert spearman(pred, gold) == pytest.approx(5 / 6)


@pytest.mark.parametrize("fn", [kendall_tau, spearman])
def test_correlations_nan_when_undefined(fn) -> None:
    assert math.isnan(fn([1.0, 1.0, 1.0], [0, 1, 2]))  # constant prediction
    assert math.isnan(fn([0.1, 0.2, 0.3], [1, 1, 1]))  # constant gold
    assert math.isnan(fn([0.5], [0]))  # K = 1
    assert math.isnan(fn([], []))  # K = 0


@pytest.mark.parametrize("fn", [kendall_tau, spearman, top1_correct])
def test_length_mismatch(fn) -> None:
    with pytest.raises(ValueError, match="3 elements.*2"):
        fn([1.0, 2.0, 3.0], [0, 1])


def test_tensor_inputs_accepted() -> None:
    pred = torch.tensor([0.4, 0.1, 0.3, 0.2], dtype=torch.float32)
    gold = torch.tensor([0, 1, 2, 3])
    assert kendall_tau(pred, gold) == pytest.approx(1 / 3)
    assert spearman(pred, gold) == pytest.approx(0.4)
    assert top1_correct(pred, gold) == 1.0


# ---------------------------------------------------------------------------------------------------------------------
# kendall_tau / spearman vs scipy on random data with ties


def _random_tied(rng: random.Random, n: int, high: int) -> list[float]:
    return [float(rng.randint(0, high)) for _ in range(n)]


def test_kendall_tau_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(1)
    checked = 0
    for _ in range(60):
        n = rng.randint(2, 40)
        pred, gold = _random_tied(rng, n, rng.randint(1, 6)), _random_tied(rng, n, rng.randint(1, 4))
        ours = kendall_tau(pred, gold)
        ref = stats.kendalltau(pred, [-g for g in gold]).statistic  # tau-b is scipy's default variant
        if math.isnan(ref):
            assert math.isnan(ours)
        else:
            assert ours == pytest.approx(ref, abs=1e-10)
            checked += 1
    assert checked > 40


def test_kendall_tau_blocked_matches_scipy_on_larger_input(monkeypatch: pytest.MonkeyPatch) -> None:
    stats = pytest.importorskip("scipy.stats")
    import trl_ext.metrics as metrics

    monkeypatch.setattr(metrics, "_PAIR_BLOCK_ELEMS", 5000)  # force several row blocks, including a ragged last one
    rng = random.Random(2)
    pred, gold = _random_tied(rng, 1003, 50), _random_tied(rng, 1003, 20)
    ref = stats.kendalltau(pred, [-g for g in gold]).statistic
    assert metrics.kendall_tau(pred, gold) == pytest.approx(ref, abs=1e-10)


def test_spearman_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(3)
    checked = 0
    for _ in range(60):
        n = rng.randint(2, 40)
        pred, gold = _random_tied(rng, n, rng.randint(1, 6)), _random_tied(rng, n, rng.randint(1, 4))
        if len(set(pred)) < 2 or len(set(gold)) < 2:
            assert math.isnan(spearman(pred, gold))
            continue
        ref = stats.spearmanr(pred, [-g for g in gold]).statistic
        assert spearman(pred, gold) == pytest.approx(ref, abs=1e-10)
        checked += 1
    assert checked > 40


# ---------------------------------------------------------------------------------------------------------------------
# top1_correct / group_ranking_metrics


def test_top1_correct_basic() -> None:
    assert top1_correct([0.1, 0.9, 0.3], [2, 0, 1]) == 1.0
    assert top1_correct([0.9, 0.1, 0.3], [2, 0, 1]) == 0.0


def test_top1_correct_ties_in_gold() -> None:
    # Items 1 and 2 share the best gold rank; predicting either is correct.
    assert top1_correct([1.0, 5.0, 3.0], [1, 0, 0]) == 1.0
    assert top1_correct([1.0, 3.0, 5.0], [1, 0, 0]) == 1.0


def test_top1_correct_tied_argmax_gives_fraction() -> None:
    # Items 0 and 1 tie for the max; only item 0 is gold-best -> 1/2.
    assert top1_correct([2.0, 2.0, 1.0, 0.0], [0, 1, 1, 3]) == pytest.approx(0.5)
    # Three tied argmaxes, two of them gold-best -> 2/3.
    assert top1_correct([7.0, 7.0, 7.0, 1.0], [0, 2, 0, 1]) == pytest.approx(2 / 3)
    # All predictions equal -> fraction of gold-best items.
    assert top1_correct([0.0] * 4, [0, 1, 2, 3]) == pytest.approx(0.25)


def test_top1_correct_edge_cases() -> None:
    assert top1_correct([0.3], [0]) == 1.0
    assert math.isnan(top1_correct([], []))


def test_group_ranking_metrics() -> None:
    out = group_ranking_metrics([2.0, 2.0, 1.0, 0.0], [0, 1, 1, 3])
    assert set(out) == {"kendall_tau", "spearman", "top1_accuracy", "ndcg"}
    assert out["kendall_tau"] == pytest.approx(0.8)
    assert out["spearman"] == pytest.approx(5 / 6)
    assert out["top1_accuracy"] == pytest.approx(0.5)
    assert all(isinstance(v, float) for v in out.values())


# ---------------------------------------------------------------------------------------------------------------------
# Equal to the libraries' definitions (scipy, scikit-learn), per group and batched (the on-device versions)
#
# kendall_tau = scipy.stats.kendalltau (tau-b) and spearman = scipy.stats.spearmanr, against -gold_ranks.
# pairwise_auc = sklearn.metrics.roc_auc_score with chosen = 1 and rejected = 0 (ties count 1/2 in both).
# ndcg = sklearn.metrics.ndcg_score with y_true = our gains. The definitions differ in two places: (1) gains:
# sklearn uses y_true as the gain itself (linear), ours are 2^relevance - 1 from the gold rank levels (relevance
# L - 1 - level), so sklearn is given those gains; (2) no gain to earn (all completions tied in gold, or one
# completion): ours is NaN (undefined), sklearn's 0.0. Ties in the prediction agree: both average the discount over
# the positions a tie spans (sklearn's `ignore_ties=False`).

from trl_ext.metrics import batched_ranking_metrics, ndcg, pairwise_auc_tensor  # noqa: E402


def _levels_to_gains(gold: list[float]) -> list[float]:
    levels = {value: index for index, value in enumerate(sorted(set(gold)))}  # 0 = best (smallest rank)
    top = len(levels) - 1
    return [2.0 ** (top - levels[g]) - 1.0 for g in gold]


def _random_groups(seed: int, n: int = 80) -> list[tuple[list[float], list[float]]]:
    rng = random.Random(seed)
    groups = []
    for _ in range(n):
        size = rng.randint(2, 12)
        # few distinct values on both sides: ties in the prediction and in the gold ranks
        groups.append((_random_tied(rng, size, rng.randint(1, 5)), _random_tied(rng, size, rng.randint(1, 4))))
    return groups


@pytest.mark.parametrize("k", [None, 1, 3])
def test_ndcg_equals_sklearn_with_our_gains(k) -> None:
    from sklearn.metrics import ndcg_score

    checked = 0
    for pred, gold in _random_groups(4):
        ours = ndcg(pred, gold, k=k)
        if len(set(gold)) < 2:  # no gain to earn: ours is undefined, sklearn's 0.0
            assert math.isnan(ours) and ndcg_score([_levels_to_gains(gold)], [pred], k=k) == 0.0
            continue
        ref = ndcg_score([_levels_to_gains(gold)], [pred], k=k, ignore_ties=False)
        assert ours == pytest.approx(ref, abs=1e-12), (pred, gold, k)
        checked += 1
    assert checked > 50


def test_ndcg_gains_differ_from_sklearn_given_relevance_levels() -> None:
    """The gain is where the definitions differ: given relevance levels as y_true, sklearn's linear gain gives
    another value than ours (2^relevance - 1), so the tests above must pass it our gains."""
    from sklearn.metrics import ndcg_score

    pred, gold = [0.1, 0.9, 0.5], [0, 1, 2]  # the gold-best completion gets the lowest score
    relevance = [2, 1, 0]
    assert ndcg(pred, gold) != pytest.approx(ndcg_score([relevance], [pred]), abs=1e-6)
    assert ndcg(pred, gold) == pytest.approx(ndcg_score([_levels_to_gains(gold)], [pred]), abs=1e-12)


def test_pairwise_auc_equals_sklearn_roc_auc() -> None:
    from sklearn.metrics import roc_auc_score

    rng = random.Random(5)
    for _ in range(40):
        pos = _random_tied(rng, rng.randint(1, 30), rng.randint(1, 8))
        neg = _random_tied(rng, rng.randint(1, 30), rng.randint(1, 8))
        ref = roc_auc_score([1] * len(pos) + [0] * len(neg), pos + neg)
        assert pairwise_auc(pos, neg) == pytest.approx(ref, abs=1e-12)
        assert float(pairwise_auc_tensor(torch.tensor(pos), torch.tensor(neg))) == pytest.approx(ref, abs=1e-12)


def test_batched_ranking_metrics_equal_scipy_and_sklearn() -> None:
    """The on-device `[G, K]` version, padded groups of different sizes, against the libraries group by group."""
    from scipy.stats import kendalltau, spearmanr
    from sklearn.metrics import ndcg_score

    groups = _random_groups(6, n=40)
    width = max(len(pred) for pred, _ in groups)
    scores = torch.zeros(len(groups), width, dtype=torch.float64)
    ranks = torch.zeros_like(scores)
    mask = torch.zeros_like(scores, dtype=torch.bool)
    for g, (pred, gold) in enumerate(groups):
        scores[g, :len(pred)], ranks[g, :len(gold)], mask[g, :len(pred)] = torch.tensor(pred), torch.tensor(gold), True
    out = batched_ranking_metrics(scores, ranks, mask, k=2)
    for g, (pred, gold) in enumerate(groups):
        neg_gold = [-value for value in gold]
        refs = {"kendall_tau": kendalltau(pred, neg_gold).statistic, "spearman": spearmanr(pred, neg_gold).statistic}
        if len(set(gold)) > 1:
            refs["ndcg"] = ndcg_score([_levels_to_gains(gold)], [pred])
            refs["ndcg@2"] = ndcg_score([_levels_to_gains(gold)], [pred], k=2)
        for name, ref in refs.items():
            value = float(out[name][g])
            if math.isnan(ref):
                assert math.isnan(value), (name, g)
            else:
                assert value == pytest.approx(ref, abs=1e-10), (name, g, pred, gold)
