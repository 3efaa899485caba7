# Copyright 2026 The trl_ext authors. Apache-2.0.
"""PPO math as small pure functions: per-token rewards with a KL penalty, GAE, whitening, the clipped policy and value
losses, entropy and explained variance.

Shapes: `[B, T]` over completion tokens, right-padded, with `mask` 1 on real tokens and 0 on padding. Every function
ignores padded positions (their values never reach a loss or a statistic).
"""

from __future__ import annotations

import torch

#: |log π − log π_old| beyond which the PPO ratio is clamped (verl's value): exp(20) ≈ 4.9e8, finite in float32 and
#: bf16.
LOG_RATIO_CLAMP = 20.0


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum()


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where `mask` is 1 (0 when the mask is empty)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def aggregate(x: torch.Tensor, mask: torch.Tensor, level: str = "token") -> torch.Tensor:
    """A per-token quantity reduced to one number: `"token"`, the mean over every real token of the batch;
    `"sequence"`, each sequence's mean over its tokens, then the mean over the sequences that have any."""
    if level == "token":
        return masked_mean(x, mask)
    if level != "sequence":
        raise ValueError(f"level must be 'token' or 'sequence', got {level!r}")
    tokens = mask.sum(dim=1)
    per_sequence = (x * mask).sum(dim=1) / tokens.clamp(min=1)
    has_tokens = (tokens > 0).to(per_sequence.dtype)
    return (per_sequence * has_tokens).sum() / has_tokens.sum().clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = masked_sum((x - mean) ** 2, mask) / n.clamp(min=1)
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / std over the masked positions (mean added back when `shift_mean` is False); padding stays 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row (0 for an empty row)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return (positions * mask.long()).max(dim=1).values


def per_token_rewards(
    scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """r_t = −β·(log π(a_t) − log π_ref(a_t)) on every real token, plus the sequence score on the last real token.

    Returns `(rewards [B, T], kl [B, T])` where `kl` is the per-token log-ratio (the KL estimate whose sum over a
    completion is its KL in nats).
    """
    kl = (logprobs - ref_logprobs) * mask
    rewards = -beta * kl
    rows = torch.arange(scores.shape[0], device=scores.device)
    rewards[rows, last_token_index(mask)] += scores.to(rewards.dtype)
    return rewards * mask, kl


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each completion (Schulman et al. 2016).

    δ_t = r_t + γ·V_{t+1} − V_t with V after the last real token = 0 (the episode ends there);
    A_t = δ_t + γλ·A_{t+1}; returns R_t = A_t + V_t. Padded positions get 0.
    """
    values = values * mask
    rewards = rewards * mask
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = advantage * m
        # on padding, carry nothing back: the next real step sees V=0, A=0 beyond the end of its sequence
        next_value = values[:, t] * m
        next_advantage = advantage * m
    returns = (advantages + values) * mask
    return advantages, returns


def policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
    clip_eps: float = 0.2, clip_eps_high: float | None = None, token_weight: torch.Tensor | None = None,
    level: str = "token",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate: the [`aggregate`] of max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε_high)), ρ = exp(log π − log π_old),
    ε_high = ε unless given (asymmetric clipping). `token_weight` multiplies each token's term first (e.g. the
    sampler/trainer importance-sampling ratio of vLLM rollouts).

    The log-ratio is clamped to [−20, 20] before `exp`, as verl's `compute_policy_loss`
    (verl/trainer/ppo/core_algos.py, "Clamp negative_approx_kl for stability") and TRL 1.16's VESPO weights
    (trl/trainer/grpo_trainer.py line 2997) do: at a log-ratio of 1e4, exp overflows to inf and the clipped branch's
    zero gradient times inf is NaN. Inside [−20, 20] nothing changes (ρ is already clipped to 1 ± ε long before);
    beyond it the token's gradient is 0, as on any clipped token.

    Also returns `clipfrac` (share of tokens where the clipped term is the larger), `approx_kl`
    (mean of ½·(log ρ)², an estimate of KL(π_old‖π), from the unclamped log-ratio) and the mean `ratio`.
    """
    log_ratio = (logprobs - old_logprobs) * mask
    ratio = torch.exp(log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + (clip_eps if clip_eps_high is None else clip_eps_high))
    per_token = torch.max(unclipped, clipped)
    if token_weight is not None:
        per_token = per_token * token_weight
    loss = aggregate(per_token, mask, level)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
            "approx_kl": masked_mean(0.5 * log_ratio**2, mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, stats


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip_eps: float = 0.2,
    level: str = "token",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: ½ × the [`aggregate`] of max((V − R)², (clip(V, V_old ± ε_v) − R)²); and its clip
    fraction."""
    clipped_values = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)
    loss_unclipped = (values - returns) ** 2
    loss_clipped = (clipped_values - returns) ** 2
    loss = 0.5 * aggregate(torch.max(loss_unclipped, loss_clipped), mask, level)
    with torch.no_grad():
        stats = {"value_clipfrac": masked_mean((loss_clipped > loss_unclipped).float(), mask)}
    return loss, stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 − Var[R − V] / Var[R] over the masked positions (1: perfect critic, 0: no better than a constant)."""
    var_returns = masked_var(returns, mask, unbiased=False)
    return 1.0 - masked_var(returns - values, mask, unbiased=False) / var_returns.clamp(min=1e-12)
