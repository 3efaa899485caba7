# Copyright 2026 The trl_ext authors. Apache-2.0.
"""KL controllers: a fixed β, and the adaptive controller of Ziegler et al. 2019 ("Fine-Tuning Language Models from
Human Preferences", section 2.2).

Adaptive rule, once per optimizer step with the measured KL_t:

    e_t     = clip(KL_t / KL_target − 1, −0.2, 0.2)
    β_{t+1} = β_t · (1 + K_β · e_t),      K_β = n_samples / horizon

where n_samples is the number of sequences in the update (the paper: horizon 10,000; old TRL: β_0 = 0.2, target
6 nats per sequence). β is kept inside [min_beta, max_beta]. A KL that is NaN or infinite leaves β unchanged and is
counted (`skipped_updates`), with a warning the first time.

The controllers are plain objects with `state_dict()` / `load_state_dict()`, so trainers can checkpoint them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any


def kl_error(kl: float, target: float, clip: float = 0.2) -> float:
    """The paper's proportional error: clip(kl / target − 1, −clip, clip)."""
    if target <= 0:
        raise ValueError(f"kl_target must be > 0, got {target}")
    return max(-clip, min(clip, kl / target - 1.0))


def full_kl_per_token(logits: Any, ref_logits: Any) -> Any:
    """Exact KL(π‖π_ref) of each position's next-token distribution: Σ_v π(v) · (log π(v) − log π_ref(v)).

    `logits` and `ref_logits` are (..., vocab) tensors of the same shape (already divided by the sampling temperature);
    the result has the shape without the last dimension and is computed in float32. Summed over a sampled completion it
    estimates the sequence KL with the same expectation as the sampled log-ratio Σ_t (log π(a_t) − log π_ref(a_t)) and
    TRL's k3, but averages over the whole vocabulary at each position instead of using only the token drawn there, so
    its variance is much lower.
    """
    if logits.shape != ref_logits.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and ref_logits {tuple(ref_logits.shape)} differ in shape")
    logp = logits.float().log_softmax(-1)
    logq = ref_logits.float().log_softmax(-1)
    return (logp.exp() * (logp - logq)).sum(-1)


@dataclass
class FixedKLController:
    """β never changes; `update` only records the KL (so fixed and adaptive runs log the same metrics)."""

    beta: float
    last_kl: float = float("nan")
    skipped_updates: int = 0

    def __post_init__(self) -> None:
        if not math.isfinite(self.beta) or self.beta < 0:
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")

    @property
    def value(self) -> float:
        return self.beta

    def update(self, kl: float, n_samples: int) -> float:
        if math.isfinite(kl):
            self.last_kl = float(kl)
        else:
            self.skipped_updates += 1
        return self.beta

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.beta, "last_kl": self.last_kl, "skipped_updates": self.skipped_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.beta = float(state["beta"])
        self.last_kl = float(state["last_kl"])
        self.skipped_updates = int(state["skipped_updates"])


@dataclass
class AdaptiveKLController:
    """Ziegler et al. 2019 proportional controller: β moves toward the value that makes KL hit `target`.

    Args:
        init_beta: β before the first update (must be > 0: a multiplicative rule cannot leave 0).
        target: the KL to steer to, in the unit the caller measures (nats per sequence in the paper).
        horizon: K_β = n_samples / horizon; a larger horizon moves β more slowly (the paper: 10,000).
        clip: bound on the proportional error (the paper: 0.2).
        min_beta, max_beta: bounds on β.
    """

    init_beta: float
    target: float
    horizon: float = 10_000
    clip: float = 0.2
    min_beta: float = 0.0
    max_beta: float = float("inf")
    beta: float | None = None
    last_kl: float = float("nan")
    last_error: float = 0.0
    skipped_updates: int = 0
    _warned: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.init_beta) or self.init_beta <= 0:
            raise ValueError(f"adaptive KL control needs init_beta > 0 (β is multiplied each step), got {self.init_beta}")
        if not self.target > 0:
            raise ValueError(f"kl_target must be > 0, got {self.target}")
        if not self.horizon > 0:
            raise ValueError(f"kl_horizon must be > 0, got {self.horizon}")
        if not 0 < self.clip < 1:
            raise ValueError(f"the error clip must be in (0, 1), got {self.clip}")
        if not 0 <= self.min_beta <= self.max_beta:
            raise ValueError(f"need 0 <= min_beta <= max_beta, got {self.min_beta}, {self.max_beta}")
        if self.beta is None:
            if not self.min_beta <= self.init_beta <= self.max_beta:
                raise ValueError(f"the starting beta {self.init_beta} is outside [kl_min_beta, kl_max_beta] = "
                                 f"[{self.min_beta}, {self.max_beta}]; start inside the bounds")
            self.beta = self.init_beta

    @property
    def value(self) -> float:
        return self.beta

    def check_horizon(self, n_samples: int) -> None:
        """Refuse a horizon too short for updates of `n_samples` sequences.

        The multiplier 1 + n/horizon·e reaches 0 or below for e = −clip when horizon ≤ n·clip: β would jump to 0 (or
        its floor) and a multiplicative rule could never bring it back, leaving KL control silently off.
        """
        if self.horizon <= n_samples * self.clip:
            raise ValueError(
                f"kl_horizon={self.horizon:g} is too short for {n_samples} sequences per update: beta would be "
                f"multiplied by 1 - {n_samples}/{self.horizon:g} x {self.clip:g} = "
                f"{1 - n_samples / self.horizon * self.clip:.3g}; use kl_horizon > {n_samples * self.clip:g} "
                f"(sequences per update x kl_error_clip), e.g. {max(10 * n_samples, 1):d} or more")

    def update(self, kl: float, n_samples: int) -> float:
        """One controller step from the KL measured over `n_samples` sequences; returns the new β."""
        if n_samples < 0:
            raise ValueError(f"n_samples must be >= 0, got {n_samples}")
        self.check_horizon(n_samples)
        if kl is None or not math.isfinite(kl):
            self.skipped_updates += 1
            if not self._warned:
                warnings.warn(f"KL controller got a non-finite KL ({kl}); β stays {self.beta:.6g}. Further skipped "
                              "updates are counted in `skipped_updates` (logged as kl_ctl/skipped).", stacklevel=2)
                self._warned = True
            return self.beta
        self.last_kl = float(kl)
        self.last_error = kl_error(self.last_kl, self.target, self.clip)
        self.beta = self.beta * (1.0 + n_samples / self.horizon * self.last_error)
        self.beta = min(max(self.beta, self.min_beta), self.max_beta)
        return self.beta

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.beta, "last_kl": self.last_kl, "last_error": self.last_error,
                "skipped_updates": self.skipped_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.beta = float(state["beta"])
        self.last_kl = float(state["last_kl"])
        self.last_error = float(state["last_error"])
        self.skipped_updates = int(state["skipped_updates"])


def build_kl_controller(args: Any) -> FixedKLController | AdaptiveKLController:
    """The controller a config asks for, starting from `args.beta` (a plain TRL config gets a fixed controller)."""
    if getattr(args, "kl_control", "fixed") == "fixed":
        return FixedKLController(beta=float(args.beta))
    return AdaptiveKLController(
        init_beta=float(args.beta), target=float(args.kl_target), horizon=float(args.kl_horizon),
        clip=float(args.kl_error_clip), min_beta=float(args.kl_min_beta),
        max_beta=float("inf") if args.kl_max_beta is None else float(args.kl_max_beta),
    )


