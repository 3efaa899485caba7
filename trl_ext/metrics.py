# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Pure functions for evaluating reward models.

Two families of metrics:

* pairwise (chosen vs rejected): :func:`pair_accuracy` and :func:`pairwise_auc`;
* ranked groups (K completions of one prompt with gold ranks, 0 = best): :func:`kendall_tau`, :func:`spearman`,
  :func:`top1_correct`, :func:`ndcg`, bundled by :func:`group_ranking_metrics`.

These take Python floats or tensors, one group at a time, and compute in float64 on the CPU: they are the references.
Training loops use their batched versions, which stay on the tensors' device and never wait for it:
:func:`batched_ranking_metrics` (every group of a `[G, K]` layout at once) and :func:`pairwise_auc_tensor`.

Ranked-group convention: ``pred`` are predicted rewards (higher = better) and ``gold_ranks`` are gold ranks
(lower = better), so a perfect model scores +1 on the correlations, i.e. they measure the correlation of ``pred``
with ``-gold_ranks``. Undefined values (constant inputs, fewer than two items, empty input) are ``float("nan")``
rather than errors, so that callers can average with ``nanmean`` over many groups.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

ScoreLike = Sequence[float] | torch.Tensor

# Kendall's tau compares all pairs; work on blocks of rows so memory stays ~O(_PAIR_BLOCK_ELEMS), not O(n^2).
_PAIR_BLOCK_ELEMS = 1 << 22


def _as_1d(values: ScoreLike, name: str) -> torch.Tensor:
    """Convert a sequence or tensor of scores to a 1-D float64 CPU tensor (float64 so rank sums stay exact)."""
    if isinstance(values, torch.Tensor):
        t = values.detach().to(device="cpu", dtype=torch.float64)
    else:
        try:
            t = torch.as_tensor(list(values), dtype=torch.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a sequence of numbers, got {values!r}") from exc
    if t.dim() == 0:
        t = t.reshape(1)
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    if torch.isnan(t).any():
        # NaN has no order, so every rank-based metric would silently be wrong.
        raise ValueError(f"{name} contains NaN: {t.tolist() if t.numel() <= 20 else 'at least one NaN'}")
    return t


def _paired(pred: ScoreLike, gold_ranks: ScoreLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a (pred, gold_ranks) pair and return ``(pred, -gold_ranks)`` so that higher = better on both sides."""
    x = _as_1d(pred, "pred")
    y = _as_1d(gold_ranks, "gold_ranks")
    if x.numel() != y.numel():
        raise ValueError(f"pred has {x.numel()} elements but gold_ranks has {y.numel()}; they must match")
    return x, -y


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks of ``x`` in ascending order; tied values share the mean of the ranks they span. O(n log n)."""
    _, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True)
    counts = counts.to(torch.float64)
    last = torch.cumsum(counts, dim=0)  # 1-based rank of the last element in each tie block
    mean_rank = last - (counts - 1.0) / 2.0  # mean of first..last
    return mean_rank[inverse]


def _tied_pairs(x: torch.Tensor) -> float:
    """Number of unordered pairs ``(i, j)`` with ``x[i] == x[j]``."""
    _, counts = torch.unique(x, return_counts=True)
    counts = counts.to(torch.float64)
    return float((counts * (counts - 1.0) / 2.0).sum())


def pair_accuracy(
    chosen: torch.Tensor, rejected: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """(Weighted) fraction of pairs where the chosen reward strictly beats the rejected one: a tie is not a win (0),
    as in the `accuracy` TRL's RewardTrainer logs and the `rewards/accuracies` of its DPOTrainer.

    Args:
        chosen: rewards of the chosen completions, any shape.
        rejected: rewards of the rejected completions, same shape as ``chosen``.
        weight: optional non-negative per-pair weights, same shape; the result is ``sum(w * correct) / sum(w)``.

    Returns:
        A 0-dim floating tensor on ``chosen``'s device (NaN for empty input or all-zero weights).

    Raises:
        ValueError: if the shapes differ.
    """
    if chosen.shape != rejected.shape:
        raise ValueError(
            f"chosen and rejected must have the same shape, got {tuple(chosen.shape)} and {tuple(rejected.shape)}"
        )
    dtype = chosen.dtype if chosen.is_floating_point() else torch.get_default_dtype()
    chosen = chosen.detach()
    rejected = rejected.detach().to(chosen.device)
    # a win must be strict (TRL's meaning of accuracy): a model that outputs constants gets 0
    correct = (chosen > rejected).to(dtype)
    if weight is None:
        return correct.mean()
    if weight.shape != chosen.shape:
        raise ValueError(
            f"weight must have the same shape as chosen/rejected {tuple(chosen.shape)}, got {tuple(weight.shape)}"
        )
    w = weight.detach().to(device=chosen.device, dtype=dtype)
    return (correct * w).sum() / w.sum()  # NaN when every weight is 0: no pair to score


def pairwise_auc(positive: ScoreLike, negative: ScoreLike) -> float:
    """ROC AUC of ``positive`` (chosen) scores against ``negative`` (rejected) scores, pooled over all of them.

    Equals P(random positive > random negative) with ties counting 0.5, i.e. the Mann-Whitney
    ``U / (n_pos * n_neg)``. Computed from average ranks of the pooled scores in O(n log n), so ~10^5 scores take
    milliseconds. Returns ``nan`` if either side is empty.
    """
    pos = _as_1d(positive, "positive")
    neg = _as_1d(negative, "negative")
    n_pos, n_neg = pos.numel(), neg.numel()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(torch.cat([pos, neg]))
    # U = (sum of positive ranks) - (the smallest that sum could be); average ranks make ties count half.
    u = float(ranks[:n_pos].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def kendall_tau(pred: ScoreLike, gold_ranks: ScoreLike) -> float:
    """Kendall's tau-b between predicted rewards and gold ranks (0 = best), i.e. tau-b(pred, -gold_ranks).

    tau-b = (concordant - discordant) / sqrt((n0 - ties_pred) * (n0 - ties_gold)) with n0 = K(K-1)/2, so ties on
    either side are handled. Returns ``nan`` when K < 2 or either side is constant (the denominator is 0).

    Raises:
        ValueError: if the lengths differ or an input contains NaN.
    """
    x, y = _paired(pred, gold_ranks)
    n = x.numel()
    if n < 2:
        return float("nan")
    n0 = n * (n - 1) / 2.0
    denom = (n0 - _tied_pairs(x)) * (n0 - _tied_pairs(y))
    if denom <= 0:
        return float("nan")
    # Sum of sign(dx) * sign(dy) over ordered pairs i != j equals 2 * (concordant - discordant); the diagonal is 0.
    total = 0.0
    rows = max(1, _PAIR_BLOCK_ELEMS // n)
    for start in range(0, n, rows):
        xs, ys = x[start : start + rows, None], y[start : start + rows, None]
        total += float((torch.sign(xs - x[None, :]) * torch.sign(ys - y[None, :])).sum())
    return (total / 2.0) / math.sqrt(denom)


def spearman(pred: ScoreLike, gold_ranks: ScoreLike) -> float:
    """Spearman's rho between predicted rewards and gold ranks (0 = best), i.e. rho(pred, -gold_ranks).

    Pearson correlation of the average ranks (ties get the mean rank). Returns ``nan`` when K < 2 or either side is
    constant.

    Raises:
        ValueError: if the lengths differ or an input contains NaN.
    """
    x, y = _paired(pred, gold_ranks)
    if x.numel() < 2:
        return float("nan")
    rx = _average_ranks(x)
    ry = _average_ranks(y)
    rx = rx - rx.mean()
    ry = ry - ry.mean()
    denom = math.sqrt(float((rx * rx).sum()) * float((ry * ry).sum()))
    if denom == 0.0:
        return float("nan")
    # Clamp: rounding can push a perfect correlation a hair past +-1.
    return max(-1.0, min(1.0, float((rx * ry).sum()) / denom))


def top1_correct(pred: ScoreLike, gold_ranks: ScoreLike) -> float:
    """Whether the completion with the highest predicted reward is gold-best (has the minimum gold rank).

    Ties in gold are allowed (any completion sharing the minimum rank counts as best). If several predictions tie
    for the maximum, returns the fraction of those tied argmaxes that are gold-best, i.e. the expected accuracy of
    breaking the tie at random. Returns ``nan`` for empty input.

    Raises:
        ValueError: if the lengths differ or an input contains NaN.
    """
    x = _as_1d(pred, "pred")
    g = _as_1d(gold_ranks, "gold_ranks")
    if x.numel() != g.numel():
        raise ValueError(f"pred has {x.numel()} elements but gold_ranks has {g.numel()}; they must match")
    if x.numel() == 0:
        return float("nan")
    is_argmax = x == x.max()
    is_best = g == g.min()
    return float((is_argmax & is_best).sum()) / float(is_argmax.sum())


def ndcg(pred: ScoreLike, gold_ranks: ScoreLike, k: int | None = None) -> float:
    """Normalised discounted cumulative gain of ordering the completions by `pred` (higher = better), at `k`.

    Gains come from the gold ranking: with L distinct rank levels, a completion at level ℓ (0 = best) has relevance
    L − 1 − ℓ and gain 2^relevance − 1 (the worst level gains nothing). DCG@k = Σ_{position p < k} gain / log2(p + 2);
    NDCG@k = DCG@k / IDCG@k, IDCG the DCG of the gold order. Completions tied in `pred` share the mean discount of the
    positions they span (the expected DCG when the tie is broken at random), so a constant predictor is not rewarded
    for the data's order. Returns ``nan`` when IDCG is 0 (fewer than two levels, or K = 0).

    Raises:
        ValueError: if the lengths differ, an input contains NaN, or `k` < 1.
    """
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x, neg_gold = _paired(pred, gold_ranks)
    n = x.numel()
    levels = torch.unique(-neg_gold, sorted=True, return_inverse=True)[1].to(torch.float64)  # 0 = best level
    gains = 2.0 ** (levels.max() - levels if n else levels) - 1.0
    discounts = 1.0 / torch.log2(torch.arange(n, dtype=torch.float64) + 2.0)
    if k is not None:
        discounts[k:] = 0.0
    ideal = (torch.sort(gains, descending=True).values * discounts).sum()
    if n == 0 or ideal <= 0:
        return float("nan")
    order = torch.argsort(-x, stable=True)
    position_discount = torch.empty(n, dtype=torch.float64)
    position_discount[order] = discounts
    # tied predictions: the mean discount of the positions the tie occupies
    _, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    shared = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, inverse, position_discount) / counts
    return float((gains * shared[inverse]).sum() / ideal)


def group_ranking_metrics(rewards: ScoreLike, ranks: ScoreLike, k: int | None = None) -> dict[str, float]:
    """All ranking metrics for one group of completions: ``kendall_tau``, ``spearman``, ``top1_accuracy``, ``ndcg``
    and, with `k`, ``ndcg@k``.

    ``rewards`` are predicted rewards (higher = better), ``ranks`` gold ranks (0 = best).
    """
    metrics = {
        "kendall_tau": kendall_tau(rewards, ranks),
        "spearman": spearman(rewards, ranks),
        "top1_accuracy": top1_correct(rewards, ranks),
        "ndcg": ndcg(rewards, ranks),
    }
    if k is not None:
        metrics[f"ndcg@{k}"] = ndcg(rewards, ranks, k)
    return metrics


# ---------------------------------------------------------------------------------------------------------------------
# Batched, on-device versions for training loops: no host sync, every group at once
# ---------------------------------------------------------------------------------------------------------------------


def ranking_metric_names(k: int | None = None) -> list[str]:
    """The keys of [`batched_ranking_metrics`] and [`group_ranking_metrics`], in order."""
    return ["kendall_tau", "spearman", "top1_accuracy", "ndcg"] + ([f"ndcg@{k}"] if k is not None else [])


def _metric_dtype(device: torch.device) -> torch.dtype:
    # float64 where the device has it (rank sums and 2^level gains stay exact); Apple's MPS has no float64
    return torch.float32 if device.type == "mps" else torch.float64


def batched_ranking_metrics(
    scores: torch.Tensor, ranks: torch.Tensor, mask: torch.Tensor | None = None, k: int | None = None
) -> dict[str, torch.Tensor]:
    """[`group_ranking_metrics`] of G groups at once: `[G]` tensors on the input's device, computed without a host sync.

    Args:
        scores: `[G, K]` predicted rewards (higher = better), group g's completions in row g.
        ranks: `[G, K]` gold ranks (0 = best).
        mask: optional `[G, K]` bool, False on padding (groups of different sizes share one `[G, K]` layout).
        k: also return `ndcg@k`.

    Each value equals the per-group function on the group's valid entries (Kendall's τ-b with ties, Spearman's ρ on
    average ranks, top-1 with a tied argmax counting the fraction that is gold-best, NDCG with 2^level − 1 gains and
    tied predictions sharing their positions' mean discount): the pairwise comparisons are `[G, K, K]` tensors instead
    of loops. NaN where the metric is undefined (as the per-group functions), and for every metric of a group with a
    NaN score or rank among its valid entries (the per-group functions raise there).

    Raises:
        ValueError: on shapes that do not match, or `k` < 1.
    """
    if scores.ndim != 2 or ranks.shape != scores.shape or (mask is not None and mask.shape != scores.shape):
        raise ValueError(f"scores, ranks and mask must be [G, K] of one shape, got {tuple(scores.shape)}, "
                         f"{tuple(ranks.shape)}" + ("" if mask is None else f", {tuple(mask.shape)}") + ".")
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    dtype = _metric_dtype(scores.device)
    x, gold = scores.detach().to(dtype), ranks.detach().to(device=scores.device, dtype=dtype)
    valid = torch.ones_like(x, dtype=torch.bool) if mask is None else mask.to(device=x.device, dtype=torch.bool)
    broken = ((torch.isnan(x) | torch.isnan(gold)) & valid).any(dim=1)
    x = torch.where(valid & ~torch.isnan(x), x, torch.zeros_like(x))  # padding and NaN: any number, masked below
    gold = torch.where(valid & ~torch.isnan(gold), gold, torch.zeros_like(gold))
    n = valid.sum(dim=1).to(dtype)
    pair = valid[:, :, None] & valid[:, None, :]  # [G, i, j]: both entries real
    dx = x[:, :, None] - x[:, None, :]  # x_i − x_j
    dy = gold[:, None, :] - gold[:, :, None]  # y_i − y_j with y = −gold (higher = better on both sides)
    nan = torch.full_like(n, float("nan"))

    # Kendall τ-b = (C − D) / sqrt((n0 − T_x)(n0 − T_y)); Σ over ordered pairs of sign·sign is 2(C − D)
    sx, sy = torch.sign(dx) * pair, torch.sign(dy) * pair
    tied_x, tied_y = (dx == 0) & pair, (dy == 0) & pair  # the diagonal included: n of them
    n0 = n * (n - 1) / 2
    ties_x = (tied_x.sum(dim=(1, 2)).to(dtype) - n) / 2
    ties_y = (tied_y.sum(dim=(1, 2)).to(dtype) - n) / 2
    denom = (n0 - ties_x) * (n0 - ties_y)
    tau = torch.where(denom > 0, (sx * sy).sum(dim=(1, 2)) / 2 / denom.clamp(min=1e-300).sqrt(), nan)

    # Spearman ρ: Pearson correlation of 1-based average ranks, rank_i = #{j: x_j < x_i} + (#{j: x_j = x_i} + 1) / 2
    def average_ranks(diff: torch.Tensor, tied: torch.Tensor) -> torch.Tensor:
        return ((diff > 0) & pair).sum(dim=2).to(dtype) + (tied.sum(dim=2).to(dtype) + 1) / 2

    mean_rank = ((n + 1) / 2)[:, None]  # average ranks always sum to n(n+1)/2
    rx = (average_ranks(dx, tied_x) - mean_rank) * valid
    ry = (average_ranks(dy, tied_y) - mean_rank) * valid
    var = (rx * rx).sum(dim=1) * (ry * ry).sum(dim=1)
    rho = torch.where(var > 0, ((rx * ry).sum(dim=1) / var.clamp(min=1e-300).sqrt()).clamp(-1.0, 1.0), nan)

    # top-1: the fraction of the (tied) argmaxes of the scores that are gold-best
    is_argmax = valid & (x == torch.where(valid, x, float("-inf")).amax(dim=1, keepdim=True))
    is_best = valid & (gold == torch.where(valid, gold, float("inf")).amin(dim=1, keepdim=True))
    top1 = (is_argmax & is_best).sum(dim=1).to(dtype) / is_argmax.sum(dim=1).to(dtype)  # 0/0 = NaN for K = 0

    # NDCG: gold level = number of distinct gold ranks better than one's own (0 = best), gain 2^(L−1−level) − 1
    same_gold = tied_y.sum(dim=2).to(dtype).clamp(min=1)  # multiplicity of each gold rank in its group
    level = (((dy < 0) & pair).to(dtype) / same_gold[:, None, :]).sum(dim=2).round()  # Σ_j [g_j < g_i] / mult_j
    top_level = torch.where(valid, level, torch.zeros_like(level)).amax(dim=1, keepdim=True)
    gains = (torch.exp2(top_level - level) - 1) * valid
    ideal_gains = torch.sort(gains, dim=1, descending=True).values
    positions = torch.arange(x.shape[1], device=x.device, dtype=dtype)
    better = ((dx < 0) & pair).sum(dim=2)  # strictly higher scores: the first position of one's tie block
    span = tied_x.sum(dim=2).clamp(min=1)  # the tie block's size

    def ndcg_at(cutoff: int | None) -> torch.Tensor:
        discounts = 1.0 / torch.log2(positions + 2.0)
        if cutoff is not None:
            discounts = discounts * (positions < cutoff)
        ideal = (ideal_gains * discounts).sum(dim=1)
        cumulative = torch.cat([discounts.new_zeros(1), discounts.cumsum(dim=0)])
        shared = (cumulative[better + span] - cumulative[better]) / span.to(dtype)  # mean discount of the tie block
        return torch.where(ideal > 0, (gains * shared).sum(dim=1) / ideal.clamp(min=1e-300), nan)

    values = {"kendall_tau": tau, "spearman": rho, "top1_accuracy": top1, "ndcg": ndcg_at(None)}
    if k is not None:
        values[f"ndcg@{k}"] = ndcg_at(k)
    return {name: torch.where(broken, nan, value) for name, value in values.items()}


def _sorted_average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based average ranks of a 1-D tensor (ties share their mean rank) without a host sync: `torch.unique` has a
    data-dependent size, `searchsorted` on the sorted values does not."""
    ordered = torch.sort(values).values
    first = torch.searchsorted(ordered, values, right=False)
    last = torch.searchsorted(ordered, values, right=True)
    return (first + last + 1).to(values.dtype) / 2


def pairwise_auc_tensor(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """[`pairwise_auc`] as a 0-dim tensor on the inputs' device, without a host sync (float64 where the device has it):
    the Mann-Whitney U of the pooled average ranks, ties counting half. NaN when either side is empty, and when a
    score is NaN (the float version raises)."""
    dtype = _metric_dtype(positive.device)
    pos = positive.detach().reshape(-1).to(dtype)
    neg = negative.detach().reshape(-1).to(device=pos.device, dtype=dtype)
    n_pos, n_neg = pos.numel(), neg.numel()
    if n_pos == 0 or n_neg == 0:
        return torch.full((), float("nan"), dtype=dtype, device=pos.device)
    pooled = torch.cat([pos, neg])
    u = _sorted_average_ranks(pooled)[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0
    auc = u / (n_pos * n_neg)
    return torch.where(torch.isnan(pooled).any(), torch.full_like(auc, float("nan")), auc)
