# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Trainer/config pairs, one module each, as in TRL: `reward_*`, `dpo_*`, `grpo_*`, `rloo_*`, `ppo_*`; the shared
ranked-data mixin (`ranked_data`) and KL-control mixin and callback (`kl_control`). Names resolve lazily, so
`from trl_ext.trainer import DPOTrainer` imports the DPO modules only."""

from typing import Any


def __getattr__(name: str) -> Any:
    from .. import _MODULE_OF

    if _MODULE_OF.get(name, "").startswith(__name__ + "."):
        import trl_ext

        return getattr(trl_ext, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
