# Copyright 2026 The trl_ext authors. Apache-2.0.
"""`RLOOConfig`: TRL's RLOO config plus KL control."""

from __future__ import annotations

from dataclasses import dataclass

import trl

from .kl_control import KLControlArguments


@dataclass
class RLOOConfig(KLControlArguments, trl.RLOOConfig):
    """[`trl.RLOOConfig`] plus KL control (`kl_control`, `kl_target`, `kl_horizon`, `kl_target_unit`, β bounds,
    `kl_estimator`), see [`KLControlArguments`].

    RLOO puts the KL penalty in the reward (r − β·KL per completion) when it scores a generation batch; with
    `kl_control="adaptive"` the β used there follows the KL measured on earlier batches.
    """
