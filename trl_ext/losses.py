# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Loss functions as small pure functions (unit-tested against float64 references)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """`Σ w·x / Σ w` (plain mean without weights).

    Weights must be finite and ≥ 0 (the trainers check them where the data enters). When they sum to 0 the result is
    0 with a zero gradient: such a batch teaches nothing, and must not turn the parameters into NaN.
    """
    if weight is None:
        return values.mean()
    weight = weight.to(values.dtype)
    total = weight.sum()
    return (values * weight).sum() / torch.where(total > 0, total, torch.ones_like(total))


def bradley_terry_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    margin: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pairwise Bradley-Terry loss `-log σ(r_chosen - r_rejected - margin)`.

    With `weight`, the weighted mean `Σ w·l / Σ w`: with the default ranking weights (1/#pairs of the group) this is
    the mean over groups of the mean over each group's pairs, i.e. exactly what [`grouped_bradley_terry_loss`] computes.
    """
    if chosen_rewards.shape != rejected_rewards.shape:
        raise ValueError(
            f"chosen_rewards {tuple(chosen_rewards.shape)} and rejected_rewards {tuple(rejected_rewards.shape)} differ."
        )
    diff = chosen_rewards - rejected_rewards
    if margin is not None:
        diff = diff - margin.to(diff.dtype)
    return weighted_mean(-F.logsigmoid(diff), weight)


def grouped_bradley_terry_loss(
    rewards: torch.Tensor,
    pair_index: torch.Tensor,
    pair_group: torch.Tensor,
    num_groups: int | None = None,
    group_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """InstructGPT-style grouped ranking loss: mean over groups of the mean over that group's pairs of
    −log σ(r_better − r_worse).

    With `group_weight` `[G]` (finite, ≥ 0), the weighted mean over groups Σ_g w_g·mean_g / Σ_g w_g; groups of weight 0
    contribute nothing, and all-zero weights give 0 with a zero gradient.

    Args:
        rewards: `[N]` one reward per completion (each completion forwarded once).
        pair_index: `[P, 2]` long, `(better, worse)` indices into `rewards`.
        pair_group: `[P]` long, the group (0..G-1) each pair belongs to. Every group must own at least one pair.
        num_groups: G; inferred as `pair_group.max() + 1` when omitted.
        group_weight: optional `[G]` weight of each group.
    """
    if pair_index.ndim != 2 or pair_index.shape[1] != 2:
        raise ValueError(f"pair_index must have shape [P, 2], got {tuple(pair_index.shape)}.")
    if pair_index.shape[0] == 0:
        raise ValueError("grouped_bradley_terry_loss got no pairs: every group needs at least one untied pair.")
    if num_groups is None:
        num_groups = int(pair_group.max().item()) + 1
    losses = -F.logsigmoid(rewards[pair_index[:, 0]] - rewards[pair_index[:, 1]])
    pairs_per_group = torch.bincount(pair_group, minlength=num_groups).to(losses.dtype)
    if (pairs_per_group == 0).any():
        empty = torch.nonzero(pairs_per_group == 0).flatten().tolist()
        raise ValueError(f"groups {empty} have no pairs; drop all-tied and K<2 groups before the loss.")
    if group_weight is not None and group_weight.shape != (num_groups,):
        raise ValueError(f"group_weight must have shape [{num_groups}], got {tuple(group_weight.shape)}.")
    per_group = torch.zeros(num_groups, dtype=losses.dtype, device=losses.device).index_add_(0, pair_group, losses)
    return weighted_mean(per_group / pairs_per_group, group_weight)


# DPO-family losses whose per-pair value depends only on that pair's log-ratios (and completion lengths), so they can
# be evaluated on pairs gathered from completions that were each forwarded once (grouped ranked training).
GROUPED_DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "robust", "sigmoid_norm", "bco_pair", "nca_pair", "sppo_hard", "apo_zero", "apo_down",
)


def dpo_pair_losses(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pair DPO-family losses from the log-ratios `log π(y|x) − log π_ref(y|x)` of the preferred and other answer.

    `sigmoid` is DPO's `−log σ(β·Δ)` with `Δ = chosen − rejected`; the others follow their papers (hinge/SLiC, IPO
    with per-token normalisation, robust DPO, length-normalised sigmoid, BCO, NCA, SPPO-hard, APO-zero/down).
    `ipo` and `sigmoid_norm` need the completion lengths. Returns a `[P]` tensor (no reduction).
    """
    if loss_type not in GROUPED_DPO_LOSS_TYPES:
        raise ValueError(f"loss_type={loss_type!r} is not one of {list(GROUPED_DPO_LOSS_TYPES)}.")
    c, r = chosen_logratios, rejected_logratios
    if loss_type in ("ipo", "sigmoid_norm"):
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError(f"loss_type={loss_type!r} needs chosen_lengths and rejected_lengths.")
        c = c / chosen_lengths.clamp(min=1).to(c.dtype)
        r = r / rejected_lengths.clamp(min=1).to(r.dtype)
    delta = c - r
    logsig = F.logsigmoid
    if loss_type in ("sigmoid", "sigmoid_norm"):
        return -logsig(beta * delta)
    if loss_type == "hinge":
        return torch.relu(1 - beta * delta)
    if loss_type == "ipo":  # beta plays the role of IPO's tau
        return (delta - 1 / (2 * beta)) ** 2
    if loss_type == "robust":
        eps = label_smoothing
        return (-(1 - eps) * logsig(beta * delta) + eps * logsig(-beta * delta)) / (1 - 2 * eps)
    if loss_type == "bco_pair":
        return -logsig(beta * c) - logsig(-beta * r)
    if loss_type == "nca_pair":
        return -logsig(beta * c) - 0.5 * logsig(-beta * c) - 0.5 * logsig(-beta * r)
    if loss_type == "sppo_hard":
        return (c - 0.5 / beta) ** 2 + (r + 0.5 / beta) ** 2
    if loss_type == "apo_zero":
        return (1 - torch.sigmoid(beta * c)) + torch.sigmoid(beta * r)
    # apo_down
    return torch.sigmoid(beta * c) + (1 - torch.sigmoid(beta * delta))
