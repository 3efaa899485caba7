# Copyright 2026 The trl_ext authors. Apache-2.0.
"""The config a trainer runs with when the user passes none, or passes TRL's own config class."""

from __future__ import annotations

import dataclasses
from typing import Any


def default_config(model: Any, config_cls: type, suffix: str) -> Any:
    """What TRL builds for `args=None` (output_dir `<model name>-<suffix>`), as our config class."""
    name = model if isinstance(model, str) else getattr(model.config, "name_or_path", "") or "model"
    return config_cls(f"{str(name).rstrip('/').split('/')[-1]}-{suffix}")


def upgrade_config(args: Any, config_cls: type) -> Any:
    """`args` as a `config_cls`: a plain TRL config gets our defaults for the extra options. Init fields are copied
    one by one (`to_dict` masks every `*_token` field)."""
    if isinstance(args, config_cls):
        return args
    return config_cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init})
