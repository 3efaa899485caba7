# Copyright 2026 The trl_ext authors. Apache-2.0.
"""`GRPOConfig`: TRL's GRPO config plus KL control."""

from __future__ import annotations

from dataclasses import dataclass

import trl

from .kl_control import KLControlArguments


@dataclass
class GRPOConfig(KLControlArguments, trl.GRPOConfig):
    """[`trl.GRPOConfig`] plus KL control (`kl_control`, `kl_target`, `kl_horizon`, `kl_target_unit`, β bounds,
    `kl_estimator`), see [`KLControlArguments`].

    With `kl_control="adaptive"`, `beta` is the starting β and must be > 0.
    """
