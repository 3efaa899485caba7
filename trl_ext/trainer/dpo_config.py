# Copyright 2026 The trl_ext authors. Apache-2.0.
"""`DPOConfig`: TRL's DPO config plus ranked data."""

from __future__ import annotations

from dataclasses import dataclass

import trl

from .ranked_data import RankedDataArguments


@dataclass
class DPOConfig(RankedDataArguments, trl.DPOConfig):
    r"""[`trl.DPOConfig`] plus the ranked-data options of [`RankedDataArguments`] (`ranked_training`,
    `pair_strategy`, `on_invalid_rows`)."""
