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

    On unweighted pairs, a mirror of TRL 1.16's `RewardTrainer.compute_loss` loss (trl/trainer/reward_trainer.py lines
    789–792), which runs inline after TRL's forward and has no per-pair function to call; the tests compare the two.

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
    validate: bool = True,
) -> torch.Tensor:
    """InstructGPT-style grouped ranking loss: mean over groups of the mean over that group's pairs of
    −log σ(r_better − r_worse).

    With `group_weight` `[G]` (finite, ≥ 0), the weighted mean over groups Σ_g w_g·mean_g / Σ_g w_g; groups of weight 0
    contribute nothing, and all-zero weights give 0 with a zero gradient.

    Args:
        rewards: `[N]` one reward per completion (each completion forwarded once).
        pair_index: `[P, 2]` long, `(better, worse)` indices into `rewards`.
        pair_group: `[P]` long, the group (0..G-1) each pair belongs to. Every group must own at least one pair.
        num_groups: G; inferred as `pair_group.max() + 1` when omitted, which reads the device (a host sync): pass it
            inside a training step.
        group_weight: optional `[G]` weight of each group.
        validate: check that every group owns a pair (a host sync). With `validate=False` and `num_groups` given the
            loss never waits for the device; a group without pairs then makes the loss NaN.
    """
    if pair_index.ndim != 2 or pair_index.shape[1] != 2:
        raise ValueError(f"pair_index must have shape [P, 2], got {tuple(pair_index.shape)}.")
    if pair_index.shape[0] == 0:
        raise ValueError("grouped_bradley_terry_loss got no pairs: every group needs at least one untied pair.")
    if num_groups is None:
        num_groups = int(pair_group.max().item()) + 1
    losses = -F.logsigmoid(rewards[pair_index[:, 0]] - rewards[pair_index[:, 1]])
    # index_add_, not bincount: on CUDA bincount reads the largest index back to size its output (a host sync)
    pairs_per_group = torch.zeros(num_groups, dtype=losses.dtype, device=losses.device).index_add_(
        0, pair_group, torch.ones_like(losses))
    if validate and (pairs_per_group == 0).any():
        empty = torch.nonzero(pairs_per_group == 0).flatten().tolist()
        raise ValueError(f"groups {empty} have no pairs; drop all-tied and K<2 groups before the loss.")
    if group_weight is not None and group_weight.shape != (num_groups,):
        raise ValueError(f"group_weight must have shape [{num_groups}], got {tuple(group_weight.shape)}.")
    per_group = torch.zeros(num_groups, dtype=losses.dtype, device=losses.device).index_add_(0, pair_group, losses)
    return weighted_mean(per_group / pairs_per_group, group_weight)


def plackett_luce_loss(
    scores: torch.Tensor,
    ranks: torch.Tensor,
    group: torch.Tensor,
    num_groups: int | None = None,
    group_weight: torch.Tensor | None = None,
    top_k: int | None = None,
) -> torch.Tensor:
    """Listwise loss: the negative Plackett-Luce log-likelihood of each group's ranking, mean over groups (weighted).

    Plackett-Luce (Plackett 1975; ListMLE) models a ranking σ of K items with scores s as successive choices,
    P(σ) = Π_i exp(s_σ(i)) / Σ_{j≥i} exp(s_σ(j)). Item i's term is

        ℓ_i = log Σ_{j ∈ {i} ∪ W_i} exp(s_j) − s_i,      W_i = {j : rank_j > rank_i}  (the strictly worse items),

    computed with `logsumexp` (stable for any scale). Without ties Σ_i ℓ_i = −log P(σ); for K = 2 it is −log σ(s_1 − s_2),
    the Bradley-Terry loss. Ties: tied items form a block whose internal order carries no information, so each tied item
    is a Luce choice over itself and the strictly worse items only; the likelihood is symmetric in the tied items,
    needs no extra tie parameter (unlike Davidson-style tie models) and reduces to PL without ties. An all-tied group
    contributes 0. With `top_k`, only the items with fewer than `top_k` strictly better items contribute (the head of
    the ranking; their denominators still hold every worse item).

    Args:
        scores: `[N]` one score per completion (reward model output, or DPO's β·log-ratio).
        ranks: `[N]` gold ranks, 0 = best; equal ranks are ties.
        group: `[N]` long, the group (0..G-1) of each completion.
        num_groups: G; inferred as `group.max() + 1` when omitted, which reads the device (a host sync): the trainers
            pass it (the batch's `group_weight` has G entries).
        group_weight: optional `[G]` weights (finite, ≥ 0) of the weighted mean over groups.
        top_k: optional number of head positions that contribute.
    """
    if not scores.shape == ranks.shape == group.shape or scores.ndim != 1:
        raise ValueError(f"scores, ranks and group must be 1-D of one length, got {tuple(scores.shape)}, "
                         f"{tuple(ranks.shape)}, {tuple(group.shape)}.")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}.")
    if num_groups is None:
        num_groups = int(group.max().item()) + 1
    same = group[:, None] == group[None, :]
    worse = ranks[None, :] > ranks[:, None]  # [i, j]: j is strictly worse than i
    itself = torch.eye(len(scores), dtype=torch.bool, device=scores.device)
    logits = scores[None, :].expand(len(scores), -1).masked_fill(~(same & (worse | itself)), float("-inf"))
    terms = torch.logsumexp(logits, dim=1) - scores
    if top_k is not None:
        better = (same & (ranks[None, :] < ranks[:, None])).sum(dim=1)
        terms = terms * (better < top_k).to(terms.dtype)
    per_group = torch.zeros(num_groups, dtype=terms.dtype, device=terms.device).index_add_(0, group, terms)
    return weighted_mean(per_group, group_weight)


# Every loss type TRL 1.16's DPOTrainer accepts, each mirrored by `dpo_pair_losses`. Evaluated per pair on pairs gathered
# from completions that were each forwarded once (grouped ranked training); the tests pin each one to `trl.DPOTrainer`
# on the same pairs, and fail when TRL's `_compute_loss` branches on a type this tuple lacks.
GROUPED_DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
    "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)


def _in_pair_order(values_sorted: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Put the k-th sorted term at the position of the pair that is k-th in `order` (so weights follow pairs)."""
    return torch.empty_like(values_sorted).index_copy_(0, order, values_sorted)


def dpo_pair_losses(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    *,
    chosen_logps: torch.Tensor | None = None,
    rejected_logps: torch.Tensor | None = None,
    chosen_tokens: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    discopop_tau: float = 0.05,
) -> torch.Tensor:
    """Per-pair DPO-family losses from the log-ratios `log π(y|x) − log π_ref(y|x)` of the preferred and other answer.

    **A mirror of TRL 1.16's `DPOTrainer._compute_loss`, trl/trainer/dpo_trainer.py lines 1386–1516** (the branch per
    `loss_type`, with the `reverse_kl` scores of lines 1353–1355). TRL computes those losses inline, after its own
    forward of a `[chosen..., rejected...]` batch, and has no function to call on pairs gathered from grouped rows;
    the upstream hook that would remove this copy is a per-pair method, e.g. `DPOTrainer.dpo_loss(chosen_logratios,
    rejected_logratios, chosen_logps=None, rejected_logps=None, completion_lengths=None) -> per-pair losses`, that
    `_compute_loss` itself calls. Kept equal to TRL by tests (values, metrics and gradients against `trl.DPOTrainer`
    for every type; a TRL type missing here fails them). Listed in docs/trl_internals.md.

    With Δ = chosen − rejected: `sigmoid` (DPO) −log σ(βΔ); `hinge` (SLiC) max(0, 1 − βΔ); `ipo` (Δ/length − 1/(2β))²
    with per-token normalised log-ratios; `exo_pair` (EXO, Eq. 16) the KL to [1 − ε, ε]; `nca_pair`, `bco_pair`,
    `sppo_hard`, `apo_zero`, `apo_down` as in their papers; `robust` DPO with label noise ε; `discopop` (Eq. 5) the
    logistic/exponential blend with temperature `discopop_tau`; `sigmoid_norm` DPO on length-normalised log-ratios;
    `aot` / `aot_unpaired` (AOT) −log σ(β·δ_k) on the k-th smallest policy and reference log-ratio gaps of the batch's
    pairs (the k-th term is placed at the pair whose policy value is k-th, so pair weights apply); `sft` the negative
    log-likelihood of the preferred completions, token-averaged over the pairs: each pair's value is
    −log π(chosen) / (weighted mean chosen length), so the weighted mean over pairs is Σw·(−log π) / Σw·tokens.

    `ipo` and `sigmoid_norm` need `chosen_lengths` / `rejected_lengths` (completion tokens, as TRL counts them);
    `aot` needs the policy log-probs `chosen_logps` / `rejected_logps`; `sft` needs `chosen_logps` and
    `chosen_tokens` (the tokens its log-prob sums). Returns a `[P]` tensor (no reduction).
    """
    if loss_type not in GROUPED_DPO_LOSS_TYPES:
        raise ValueError(f"loss_type={loss_type!r} is not one of {list(GROUPED_DPO_LOSS_TYPES)}.")
    c, r = chosen_logratios, rejected_logratios
    if loss_type in ("ipo", "sigmoid_norm"):
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError(f"loss_type={loss_type!r} needs chosen_lengths and rejected_lengths.")
        c = c / chosen_lengths.clamp(min=1).to(c.dtype)
        r = r / rejected_lengths.clamp(min=1).to(r.dtype)
    if loss_type in ("aot", "sft") and chosen_logps is None:
        raise ValueError(f"loss_type={loss_type!r} needs chosen_logps" + (" and rejected_logps." if loss_type == "aot"
                                                                          else " and chosen_tokens."))
    delta = c - r
    logsig = F.logsigmoid
    eps = label_smoothing
    if loss_type in ("sigmoid", "sigmoid_norm"):
        return -logsig(beta * delta)
    if loss_type == "hinge":
        return torch.relu(1 - beta * delta)
    if loss_type == "ipo":  # beta plays the role of IPO's tau
        return (delta - 1 / (2 * beta)) ** 2
    if loss_type == "exo_pair":
        epsilon = torch.tensor(eps, dtype=delta.dtype, device=delta.device)
        return (torch.sigmoid(beta * delta) * (logsig(beta * delta) - torch.log1p(-epsilon))
                + torch.sigmoid(-beta * delta) * (logsig(-beta * delta) - torch.log(epsilon)))
    if loss_type == "robust":
        return (-(1 - eps) * logsig(beta * delta) + eps * logsig(-beta * delta)) / (1 - 2 * eps)
    if loss_type == "bco_pair":
        return -logsig(beta * c) - logsig(-beta * r)
    if loss_type == "nca_pair":
        return -logsig(beta * c) - 0.5 * logsig(-beta * c) - 0.5 * logsig(-beta * r)
    if loss_type == "sppo_hard":
        return (c - 0.5 / beta) ** 2 + (r + 0.5 / beta) ** 2
    if loss_type in ("aot", "aot_unpaired"):
        if loss_type == "aot":
            policy = chosen_logps - rejected_logps
            reference = (chosen_logps - c) - (rejected_logps - r)
            policy_sorted, order = torch.sort(policy, dim=0)
            gap = policy_sorted - torch.sort(reference, dim=0).values
        else:
            chosen_sorted, order = torch.sort(c, dim=0)
            gap = chosen_sorted - torch.sort(r, dim=0).values
        terms = -logsig(beta * gap) * (1 - eps) - logsig(-beta * gap) * eps
        return _in_pair_order(terms, order)
    if loss_type == "apo_zero":
        return (1 - torch.sigmoid(beta * c)) + torch.sigmoid(beta * r)
    if loss_type == "apo_down":
        return torch.sigmoid(beta * c) + (1 - torch.sigmoid(beta * delta))
    if loss_type == "discopop":
        logits = beta * delta
        modulation = torch.sigmoid(logits / discopop_tau)
        return -logsig(logits) * (1 - modulation) + torch.exp(-logits) * modulation
    # sft
    if chosen_tokens is None:
        raise ValueError("loss_type='sft' needs chosen_logps and chosen_tokens.")
    mean_tokens = weighted_mean(chosen_tokens.to(chosen_logps.dtype), weight)
    return -chosen_logps / mean_tokens.clamp(min=1)
