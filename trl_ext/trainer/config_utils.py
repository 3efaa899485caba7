# Copyright 2026 The trl_ext authors. Apache-2.0.
"""The config a trainer runs with when the user passes none, or passes TRL's own config class."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

_WARNED_ALIASES: set[tuple[str, str]] = set()


def warn_renamed_option(owner: str, old: str, new: str, stacklevel: int = 4) -> None:
    """A FutureWarning, once per process and option, that `owner.old` is a deprecated alias of `owner.new`."""
    if (owner, old) in _WARNED_ALIASES:
        return
    _WARNED_ALIASES.add((owner, old))
    warnings.warn(f"{owner}.{old} is a deprecated alias of {owner}.{new}; set {new} instead (the old name will be "
                  "removed).", FutureWarning, stacklevel=stacklevel)


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


def native_mixed_precision_bf16(use_cpu: bool = False) -> tuple[bool, str]:
    """What TRL's `bf16=None` ("not set") becomes in trl_ext's configs, and why.

    TRL reads `None` as "True unless fp16", which transformers refuses on a machine without a bf16 GPU (and on a GPU
    without bf16: V100, T4). trl_ext reads it as "True where the training device computes bf16 natively": a CUDA
    device with bf16 support, an Intel XPU, or (with `use_cpu=True`, the only way transformers allows bf16 on a CPU)
    a CPU with AVX512-BF16 or AMX. Elsewhere False (float32, no autocast). Without `use_cpu` a CPU-only machine gets
    False: there the model's weights dtype (`dtype="auto"` in trl_ext's recipes and `load_policy`) decides the compute
    dtype.
    """
    import torch

    if not use_cpu and torch.cuda.is_available():
        supported = torch.cuda.is_bf16_supported()
        return supported, "CUDA device " + ("with" if supported else "without") + " bf16 support"
    if not use_cpu and hasattr(torch, "xpu") and torch.xpu.is_available():
        return True, "Intel XPU"
    if not use_cpu:
        return False, "no bf16 GPU (on a CPU, mixed precision needs use_cpu=True)"
    from .. import _trl_compat as compat

    native = compat.cpu_native_bf16()
    return native, "CPU " + ("with" if native else "without") + " AVX512-BF16/AMX"


def resolve_bf16(config: Any) -> None:
    """Set `config.bf16` when the user left it unset (`None`, TRL's default) and asked for no fp16, as
    [`native_mixed_precision_bf16`] decides. A value the user set is kept."""
    if getattr(config, "bf16", False) is None and not getattr(config, "fp16", False):
        config.bf16 = native_mixed_precision_bf16(bool(getattr(config, "use_cpu", False)))[0]
