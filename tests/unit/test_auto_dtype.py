"""`dtype="auto"` and `bf16=None` follow the hardware: bf16 where it is computed natively, float32 elsewhere.

The capability queries are mocked, so every branch runs on any machine."""

from __future__ import annotations

import logging

import pytest
import torch
from trl import ModelConfig

import trl_ext._trl_compat as compat
from trl_ext.peft_utils import auto_dtype, default_compute_dtype, load_policy, resolve_dtype
from trl_ext.trainer.config_utils import native_mixed_precision_bf16


@pytest.fixture
def machine(monkeypatch):
    """Set the machine: `machine(cuda=None|"bf16"|"no_bf16", cpu_bf16=bool, xpu=False)`."""

    def set_machine(cuda: str | None = None, cpu_bf16: bool = False, xpu: bool = False, capability: str | None = None):
        capability = capability or ("AVX512" if cpu_bf16 else "AVX2")
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda is not None)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda == "bf16")
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Fake GPU")
        if hasattr(torch, "xpu"):
            monkeypatch.setattr(torch.xpu, "is_available", lambda: xpu)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: cpu_bf16, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)

    return set_machine


@pytest.mark.parametrize("cuda, cpu_bf16, expected", [
    ("bf16", False, torch.bfloat16),       # Ampere and newer
    ("no_bf16", True, torch.float32),      # V100 / T4: the GPU decides, not the host CPU
    (None, True, torch.bfloat16),          # CPU with AVX512-BF16
    (None, False, torch.float32),          # AVX2-only CPU: bf16 would be emulated
])
def test_auto_dtype_for_each_capability(machine, cuda, cpu_bf16, expected):
    machine(cuda=cuda, cpu_bf16=cpu_bf16)
    dtype, why = auto_dtype()
    assert dtype == expected
    assert why and ("CUDA" in why if cuda else ("CPU (AVX512)" if cpu_bf16 else "CPU (AVX2)") in why)
    assert resolve_dtype("auto") == (dtype, why) and resolve_dtype(None) == (dtype, why)


def test_amx_counts_as_native_bf16(machine, monkeypatch):
    machine(cuda=None, cpu_bf16=False, capability="AVX512")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert compat.cpu_native_bf16() and auto_dtype()[0] == torch.bfloat16


def test_bf16_kernels_capped_below_avx512_bf16_are_not_native(machine, monkeypatch):
    """A CPU with AVX512-BF16 whose torch kernels (ATEN_CPU_CAPABILITY) or oneDNN (ONEDNN_MAX_CPU_ISA) are capped
    below it emulates bf16: float32."""
    machine(cuda=None, cpu_bf16=True, capability="AVX2")
    assert not compat.cpu_native_bf16() and auto_dtype()[0] == torch.float32
    machine(cuda=None, cpu_bf16=True)
    for isa, native in (("AVX2", False), ("AVX512_CORE", False), ("AVX512_CORE_BF16", True), ("ALL", True)):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
        assert compat.cpu_native_bf16() is native, isa


def test_xpu_is_bf16(machine):
    if not hasattr(torch, "xpu"):
        pytest.skip("this torch has no torch.xpu")
    machine(cuda=None, xpu=True)
    assert auto_dtype()[0] == torch.bfloat16


def test_4bit_compute_dtype_follows_the_cpu(machine):
    machine(cuda=None, cpu_bf16=False)
    assert default_compute_dtype() == torch.float32
    machine(cuda=None, cpu_bf16=True)
    assert default_compute_dtype() == torch.bfloat16
    machine(cuda="no_bf16")
    assert default_compute_dtype() == torch.float16  # the only fast half type on a V100/T4


@pytest.mark.parametrize("named, expected", [("float32", torch.float32), ("bfloat16", torch.bfloat16),
                                             ("float16", torch.float16), (torch.bfloat16, torch.bfloat16)])
def test_a_named_dtype_wins(machine, named, expected):
    machine(cuda=None, cpu_bf16=not (expected == torch.bfloat16))  # the hardware would choose the other one
    assert resolve_dtype(named) == (expected, "named")


def test_load_policy_loads_in_the_auto_dtype_and_says_why(machine, tiny_llama_causal_dir, caplog):
    machine(cuda=None, cpu_bf16=False)
    with caplog.at_level(logging.INFO, logger="trl_ext.peft_utils"):
        model, _ = load_policy(ModelConfig(model_name_or_path=tiny_llama_causal_dir, dtype="auto"),
                               activation_checkpointing=False)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert any("auto -> float32" in r.getMessage() and "AVX2" in r.getMessage() for r in caplog.records)
    machine(cuda=None, cpu_bf16=True)
    model, _ = load_policy(ModelConfig(model_name_or_path=tiny_llama_causal_dir, dtype=None),
                           activation_checkpointing=False)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    # named: the user's dtype, whatever the hardware would pick
    model, _ = load_policy(ModelConfig(model_name_or_path=tiny_llama_causal_dir, dtype="float32"),
                           activation_checkpointing=False)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    with pytest.raises(ValueError, match="int8"):
        load_policy(ModelConfig(model_name_or_path=tiny_llama_causal_dir, dtype="int8"))


@pytest.mark.parametrize("cuda, use_cpu, cpu_bf16, expected", [
    ("bf16", False, False, True),
    ("no_bf16", False, True, False),   # TRL's None would be True here, and transformers would refuse it
    (None, False, True, False),        # CPU without use_cpu: transformers refuses bf16, the weights' dtype decides
    (None, True, True, True),
    (None, True, False, False),
])
def test_bf16_none_follows_the_device(machine, tmp_path, cuda, use_cpu, cpu_bf16, expected):
    machine(cuda=cuda, cpu_bf16=cpu_bf16)
    assert native_mixed_precision_bf16(use_cpu)[0] is expected


def test_configs_resolve_bf16_none_and_keep_a_named_value(machine, tmp_path):
    from trl_ext import DPOConfig, GRPOConfig, PPOConfig, RewardConfig, RLOOConfig

    machine(cuda=None, cpu_bf16=True)
    for cls in (DPOConfig, RewardConfig, GRPOConfig, RLOOConfig, PPOConfig):
        assert cls(output_dir=str(tmp_path), report_to=[]).bf16 is False, cls.__name__  # TRL's would raise here
        assert cls(output_dir=str(tmp_path), report_to=[], bf16=False).bf16 is False
        assert cls(output_dir=str(tmp_path), report_to=[], use_cpu=True).bf16 is True, cls.__name__
        assert cls(output_dir=str(tmp_path), report_to=[], use_cpu=True, bf16=False).bf16 is False
        assert cls(output_dir=str(tmp_path), report_to=[], use_cpu=True, fp16=False, bf16=None).bf16 is True
