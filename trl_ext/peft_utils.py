# Copyright 2026 The trl_ext authors. Apache-2.0.
"""4-bit LoRA (QLoRA) policies for every trl_ext trainer and recipe, driven by TRL's own [`trl.ModelConfig`].

One way to get a policy:

```python
from trl import DPOConfig, DPOTrainer, ModelConfig
from trl_ext import load_policy

model_args = ModelConfig(model_name_or_path="path/to/base", load_in_4bit=True, use_peft=True)
model, peft_config = load_policy(model_args)                                  # fresh LoRA adapter
# model, peft_config = load_policy(model_args, adapter_path="path/to/sft_adapter")   # continue an SFT adapter
trainer = DPOTrainer(model, args=DPOConfig(...), train_dataset=..., processing_class=tok, peft_config=peft_config)
```

* `load_in_4bit`: NF4 weights with double quantisation and a bf16 compute dtype where supported ([`bnb_4bit_config`]),
  frozen, with embeddings, LM head and norms kept in the compute dtype (not upcast to fp32; see [`load_policy`]),
  the 4-bit weights stored in that dtype too (shardable by ZeRO-3/FSDP), and activation checkpointing.
* `use_peft`: LoRA on all linear layers by default ([`lora_config`], built with `trl.get_peft_config`).
* Reference model: none is loaded. With a fresh adapter TRL computes the reference with the adapter disabled (the bare
  base); with `adapter_path` the model comes back as a `PeftModel` holding the SFT adapter (trainable) and TRL 1.16's
  DPO / KTO / GRPO / RLOO trainers add a frozen copy of it named `"ref"` and use that as the reference (the fix for TRL
  issue #4723: the reference is the SFT policy, not the bare base). Either way only one copy of the base weights is
  in memory. Trainers that don't do this (e.g. `trl.experimental` ones, or our own) can call
  [`add_frozen_reference_adapter`].
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
from typing import Any

import torch
from peft import (
    LoraConfig,
    PeftConfig,
    PeftModel,
    get_peft_model_state_dict,
    prepare_model_for_kbit_training,
    set_peft_model_state_dict,
)
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, PreTrainedModel
from trl import ModelConfig, get_peft_config, get_quantization_config

logger = logging.getLogger(__name__)

#: peft's shorthand for "every `nn.Linear` except the output head" (QLoRA paper: adapters on all linear layers).
DEFAULT_LORA_TARGET_MODULES = "all-linear"

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
_PEFT_ADAPTER_CONFIG = "adapter_config.json"


def auto_dtype() -> tuple[torch.dtype, str]:
    """The dtype `dtype="auto"` resolves to on this machine, and why (one line for a log).

    bf16 where the device computes it natively, float32 otherwise:

    * CUDA with bf16 support (Ampere and newer): `torch.bfloat16`; CUDA without it (V100, T4): `torch.float32`.
    * Intel XPU: `torch.bfloat16`.
    * CPU with AVX512-BF16 or AMX: `torch.bfloat16`; any other CPU (AVX2 only: most laptops and many cloud VMs):
      `torch.float32`, because there a bf16 matmul is emulated and takes tens of times longer than a float32 one
      (1024x1024 on a 2-core AVX2 VM: 6.2 s against 0.14 s).
    """
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, f"CUDA device {name} computes bf16 natively"
        return torch.float32, f"CUDA device {name} has no native bf16"
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return torch.bfloat16, "Intel XPU computes bf16 natively"
    from . import _trl_compat as compat

    capability = torch.backends.cpu.get_cpu_capability()
    if compat.cpu_native_bf16():
        return torch.bfloat16, f"CPU ({capability}) has AVX512-BF16/AMX: native bf16"
    return torch.float32, (f"CPU ({capability}) has neither AVX512-BF16 nor AMX: bf16 would be emulated, "
                           "tens of times slower than float32")


def default_compute_dtype() -> torch.dtype:
    """The 4-bit compute dtype used when none is asked for.

    * CUDA with bf16 support (Ampere and newer): `torch.bfloat16` (QLoRA paper; same range as fp32, no overflow).
    * CUDA without bf16 (V100, T4): `torch.float16`, the only fast half type there.
    * CPU (and anything else): [`auto_dtype`]'s choice, bf16 on CPUs with AVX512-BF16 or AMX, float32 elsewhere.
      bitsandbytes >= 0.45 runs 4-bit on CPU by dequantising to the compute dtype.
    """
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return auto_dtype()[0]


def resolve_dtype(value: Any) -> tuple[torch.dtype, str]:
    """A `ModelConfig.dtype` as the dtype [`load_policy`] loads with, and why: `None` and `"auto"` give
    [`auto_dtype`]'s hardware choice; a named dtype (`"bfloat16"`, `"float16"`, `"float32"` or a `torch.dtype`) wins.
    """
    if value is None or value == "auto":
        return auto_dtype()
    return _as_dtype(value, "ModelConfig.dtype"), "named"


def _as_dtype(value: Any, what: str) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    if isinstance(value, str) and value.removeprefix("torch.") in _DTYPES:
        return _DTYPES[value.removeprefix("torch.")]
    raise ValueError(f"{what} must be one of {sorted(_DTYPES)} or a torch.dtype, got {value!r}.")


def bnb_4bit_config(
    model_args: ModelConfig | None = None,
    compute_dtype: torch.dtype | str | None = None,
    *,
    double_quant: bool | None = None,
) -> BitsAndBytesConfig:
    """A bitsandbytes 4-bit config: NF4, double quantisation, bf16 compute where supported.

    Built with `trl.get_quantization_config`, so `ModelConfig.bnb_4bit_quant_type` (`"nf4"` by default, or `"fp4"`)
    and `bnb_4bit_quant_storage` are honoured as TRL honours them. Differences from TRL's function, on purpose:

    * **Compute dtype**: `compute_dtype` wins; else `model_args.dtype` when it is `"bfloat16"` or `"float16"`; else
      (`None`, `"auto"`, or `ModelConfig`'s default `"float32"`) [`default_compute_dtype`] (bf16 where the device
      computes it natively). TRL reuses `dtype`
      verbatim, which with the `"float32"` default makes every 4-bit matmul dequantise to fp32 (slow, 2x memory);
      `ModelConfig` can't tell an explicit `"float32"` from its default, so ask for fp32 with `compute_dtype`.
    * **Double quantisation** (quantising the quantisation constants, ~0.4 bit/parameter saved at no measurable
      quality cost, QLoRA paper) is on unless `double_quant=False`. `ModelConfig.use_bnb_nested_quant` defaults to
      False and an explicit False can't be told from the default, so it only ever agrees with this choice.
    * **Storage dtype**: the packed 4-bit weights are stored in tensors of the compute dtype (four 4-bit values per
      bf16 element: the same bytes as two per uint8) unless `ModelConfig.bnb_4bit_quant_storage` names one. FSDP2
      shards only floating-point parameters (accelerate leaves uint8 4-bit weights whole on every process), and
      DeepSpeed ZeRO-3 and FSDP1 flatten a module's tensors together only when they share one dtype; the
      sharded-QLoRA guides of peft and bitsandbytes set the storage to the compute dtype for both.

    Args:
        model_args: TRL's model arguments (`None`: all defaults).
        compute_dtype: dtype the 4-bit weights are dequantised to for matmuls (`torch.dtype` or its name).
        double_quant: override double quantisation (default on).
    """
    model_args = model_args if model_args is not None else ModelConfig()
    if model_args.bnb_4bit_quant_type not in ("nf4", "fp4"):
        raise ValueError(
            f"ModelConfig.bnb_4bit_quant_type must be 'nf4' or 'fp4', got {model_args.bnb_4bit_quant_type!r}."
        )
    if compute_dtype is not None:
        dtype = _as_dtype(compute_dtype, "compute_dtype")
    elif isinstance(model_args.dtype, (str, torch.dtype)) and str(model_args.dtype).removeprefix("torch.") in (
        "bfloat16",
        "float16",
    ):
        dtype = _as_dtype(model_args.dtype, "ModelConfig.dtype")
    elif model_args.dtype in (None, "auto", "float32", torch.float32):
        dtype = default_compute_dtype()
    else:
        raise ValueError(
            f"ModelConfig.dtype must be one of 'auto', 'bfloat16', 'float16', 'float32', got {model_args.dtype!r}."
        )
    # Reuse TRL's builder on a copy carrying our decisions, so any field TRL adds later is honoured too.
    args_4bit = dataclasses.replace(
        model_args,
        load_in_4bit=True,
        load_in_8bit=False,
        use_bnb_nested_quant=True if double_quant is None else bool(double_quant),
        dtype=str(dtype).removeprefix("torch."),
        bnb_4bit_quant_storage=model_args.bnb_4bit_quant_storage or str(dtype).removeprefix("torch."),
    )
    return get_quantization_config(args_4bit)


def lora_config(model_args: ModelConfig, task_type: str | None = None) -> LoraConfig:
    """A `LoraConfig` from TRL's `ModelConfig` (`lora_r`, `lora_alpha`, `lora_dropout`, `lora_target_modules`,
    `lora_target_parameters`, `lora_modules_to_save`, `use_rslora`, `use_dora`), built with `trl.get_peft_config`.

    The one difference from TRL: `lora_target_modules=None` means all linear layers (`"all-linear"`, as in QLoRA)
    rather than peft's per-architecture default (only `q_proj`/`v_proj` for Llama). `task_type` defaults to
    `model_args.lora_task_type` (`"CAUSAL_LM"`; `"SEQ_CLS"` for reward models). Returned even when
    `model_args.use_peft` is False: asking for a LoRA config is asking for LoRA.
    """
    if not isinstance(model_args, ModelConfig):
        raise TypeError(f"model_args must be a trl.ModelConfig, got {type(model_args).__name__}.")
    if not isinstance(model_args.lora_r, int) or model_args.lora_r <= 0:
        raise ValueError(f"ModelConfig.lora_r must be a positive integer, got {model_args.lora_r!r}.")
    if not 0.0 <= float(model_args.lora_dropout) < 1.0:
        raise ValueError(f"ModelConfig.lora_dropout must be in [0, 1), got {model_args.lora_dropout!r}.")
    targets = model_args.lora_target_modules
    if targets is None or (not isinstance(targets, str) and len(targets) == 0):
        targets = DEFAULT_LORA_TARGET_MODULES
    args = dataclasses.replace(
        model_args,
        use_peft=True,
        lora_target_modules=targets,
        lora_task_type=task_type if task_type is not None else model_args.lora_task_type,
    )
    return get_peft_config(args)


class UnsupportedEngineError(ValueError):
    """A model / trainer / distributed-engine combination that cannot work, refused by name before any library fails
    on it. The message names the combination, the reason and what to use instead."""


def sharding_engine() -> str | None:
    """`"DeepSpeed ZeRO-3"` or `"FSDP"` when this process's model will be sharded by one of them, else `None`.

    Read from what `accelerate launch` exports (`ACCELERATE_USE_DEEPSPEED` with `ACCELERATE_DEEPSPEED_ZERO_STAGE=3`,
    `ACCELERATE_USE_FSDP`) and from transformers' `is_deepspeed_zero3_enabled()` (true once a ZeRO-3 `TrainingArguments`
    exists), so it is known before the model is loaded.
    """
    from transformers.integrations import is_deepspeed_zero3_enabled

    env = os.environ
    if is_deepspeed_zero3_enabled() or (
        env.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true")
        and env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
    ):
        return "DeepSpeed ZeRO-3"
    if env.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return "FSDP"
    return None


def _kbit_device_map() -> dict[str, int] | None:
    # bitsandbytes quantises while loading, on the device the weights land on: put the whole model on this process's
    # accelerator (one copy per DDP rank). On CPU, no device map: bitsandbytes >= 0.45 quantises on the CPU.
    # Under ZeRO-3 / FSDP no device map either (transformers refuses one under ZeRO-3; both engines place and shard
    # the weights themselves): transformers then quantises on the current accelerator, as peft's sharded-QLoRA guide
    # does.
    if sharding_engine() is not None:
        return None
    if torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()):
        from accelerate import PartialState

        return {"": PartialState().local_process_index}
    return None


def _check_adapter_dir(adapter_path: str | os.PathLike) -> str:
    path = os.fspath(adapter_path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"adapter_path {path!r} does not exist (expected a saved PEFT adapter directory).")
    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, _PEFT_ADAPTER_CONFIG)):
        raise FileNotFoundError(
            f"adapter_path {path!r} is not a PEFT adapter directory: no {_PEFT_ADAPTER_CONFIG} in it "
            "(save one with `peft_model.save_pretrained(dir)`)."
        )
    return path


def _enable_checkpointing(model: PreTrainedModel, kwargs: dict[str, Any]) -> None:
    model.activation_checkpointing_enable(kwargs)
    if kwargs.get("use_reentrant", False):
        # Reentrant checkpointing only back-propagates into inputs that require grad; with a frozen embedding the
        # adapters inside would get no gradient.
        model.enable_input_require_grads()


def _keep_cpu_4bit_layout_trainable(model: torch.nn.Module) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference inside a model that will be trained.

    bitsandbytes 0.50, on CPUs with AVX512-BF16, repacks a `Linear4bit`'s weight in place the first time the layer
    runs in eval mode on an input without grad (an evaluation loop, a reference forward, a generation): the layout
    changes, double quantisation is dropped, and every later forward goes through a kernel without an autograd
    formula, so back-propagation through the frozen base silently loses the input gradient and the LoRA adapters
    below that layer get wrong gradients (measured: layer-0 LoRA grad norm halves after one eval forward). The
    repack is an inference optimisation, so it is switched off for training policies; no effect on GPU.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def load_policy(
    model_args: ModelConfig,
    *,
    adapter_path: str | os.PathLike | None = None,
    activation_checkpointing: bool = True,
    activation_checkpointing_kwargs: dict[str, Any] | None = None,
    upcast_norms_and_embeddings: bool = False,
    model_cls: Any = AutoModelForCausalLM,
    **from_pretrained_kwargs: Any,
) -> tuple[PreTrainedModel, PeftConfig | None]:
    """Load a policy and return `(model, peft_config)` to hand to a TRL trainer as `Trainer(model, ...,
    peft_config=peft_config)`.

    * `use_peft`, no `adapter_path`: the base model (4-bit NF4 when `load_in_4bit`, 8-bit when `load_in_8bit`; every
      base parameter frozen) and a [`lora_config`] on all linear layers. The trainer
      wraps it; the reference is the same base with the adapter disabled, so one copy of the base is in memory
      (`trainer.ref_model is None`).
    * `adapter_path` (a saved LoRA adapter, e.g. from SFT): a `PeftModel` with that adapter loaded as `"default"`
      and trainable, and `None`. TRL 1.16's DPO/KTO/GRPO/RLOO trainers then copy it into a frozen `"ref"` adapter and
      use that as the reference, so the reference is the SFT policy, not the bare base. The adapter's own config
      (rank, targets) governs; `ModelConfig.lora_*` are not used. `model_name_or_path` may be left `None` to use the
      adapter's `base_model_name_or_path`.
    * Neither: the plain model and `None` (full fine-tuning; the trainer makes its own reference copy).

    Activation checkpointing is enabled when `activation_checkpointing` (non-reentrant unless
    `activation_checkpointing_kwargs` says otherwise) and `use_cache` is turned off with it.
    `ModelConfig.model_revision`, `attn_implementation` and `dtype` are passed to `from_pretrained`;
    `from_pretrained_kwargs` (e.g. `trust_remote_code=True`) override them. `dtype=None` or `"auto"` loads in the
    device's native compute dtype ([`auto_dtype`]: bf16 on GPUs and CPUs that compute it natively, float32
    elsewhere; logged once at INFO), not the checkpoint's; a named dtype is used as given.

    A 4-bit base keeps its unquantised parameters (embeddings, LM head, norms) in the 4-bit compute dtype
    ([`bnb_4bit_config`]: bf16 where native) and its 4-bit weights stored in that dtype too, so the residual stream,
    the activations kept for backward and the logits are in the compute dtype, as with a bf16 LoRA base. Unlike
    `peft.prepare_model_for_kbit_training`, they are not upcast to float32: at Llama-3.2-1B's shape the fp32 tied
    embedding alone is 1 GiB (the 4-bit blocks are 0.5 GiB), and an fp32 residual stream doubles the activations.
    `upcast_norms_and_embeddings=True` asks for peft's fp32 upcast (`prepare_model_for_kbit_training`: fp32 norms
    and embeddings, for numerical stability). TRL 1.16's own trainers no longer apply
    it, so with them a QLoRA base loaded in bf16 trains with bf16 norms and embeddings as well. The LoRA adapters are
    created by peft in float32 either way; TRL 1.16's trainers then cast the adapters of a quantised base to bf16
    (QLoRA paper), which trl_ext leaves as TRL does it.
    Under DeepSpeed ZeRO-3 or FSDP ([`sharding_engine`]) no `device_map` is passed, so that the engine places and
    shards the weights.

    Raises:
        ValueError: `load_in_4bit` and `load_in_8bit` both set; k-bit loading without `use_peft` or `adapter_path`
            (quantised weights can't be fine-tuned directly); no model path; `upcast_norms_and_embeddings` without
            a quantised base.
        FileNotFoundError: `adapter_path` missing or not an adapter directory.
    """
    if not isinstance(model_args, ModelConfig):
        raise TypeError(f"model_args must be a trl.ModelConfig, got {type(model_args).__name__}.")
    # ModelConfig.__post_init__ checks this too, but fields can be changed after construction.
    if model_args.load_in_4bit and model_args.load_in_8bit:
        raise ValueError(
            "ModelConfig has load_in_4bit=True and load_in_8bit=True: choose one quantisation (4-bit for QLoRA)."
        )
    quantized = model_args.load_in_4bit or model_args.load_in_8bit
    if upcast_norms_and_embeddings and not quantized:
        raise ValueError(
            "upcast_norms_and_embeddings=True applies to a quantised base (ModelConfig.load_in_4bit or load_in_8bit), "
            "but both are False: load the model with dtype='float32' instead."
        )
    engine = sharding_engine() if quantized else None
    if model_args.load_in_8bit and engine is not None:
        raise UnsupportedEngineError(
            f"ModelConfig.load_in_8bit=True under {engine}: bitsandbytes' 8-bit weights are int8 tensors, which "
            f"{engine} cannot shard. Use load_in_4bit=True (its 4-bit weights are stored in the compute dtype and "
            "shard), or launch with DDP or DeepSpeed ZeRO-2 (recipes/accelerate/ddp.yaml, deepspeed_zero2.yaml)."
        )
    if quantized and not (model_args.use_peft or adapter_path is not None):
        flag = "load_in_4bit" if model_args.load_in_4bit else "load_in_8bit"
        raise ValueError(
            f"ModelConfig.{flag}=True with use_peft=False: quantised weights are frozen integers and can't be fully "
            "fine-tuned. Set use_peft=True (train LoRA adapters on the quantised base) or pass an adapter_path, "
            f"or set {flag}=False."
        )

    adapter_config: PeftConfig | None = None
    if adapter_path is not None:
        adapter_path = _check_adapter_dir(adapter_path)
        adapter_config = PeftConfig.from_pretrained(adapter_path)
    model_path = model_args.model_name_or_path
    if model_path is None and adapter_config is not None:
        model_path = adapter_config.base_model_name_or_path
    if not model_path:
        raise ValueError(
            "ModelConfig.model_name_or_path is None (and no adapter_path with a base_model_name_or_path): "
            "nothing to load."
        )
    if (
        adapter_config is not None
        and adapter_config.base_model_name_or_path
        and os.path.normpath(str(adapter_config.base_model_name_or_path)) != os.path.normpath(str(model_path))
    ):
        logger.warning(
            "Adapter %s was trained on %r but is loaded on %r; make sure they are the same weights.",
            adapter_path,
            adapter_config.base_model_name_or_path,
            model_path,
        )

    if model_args.load_in_4bit:
        quantization_config = bnb_4bit_config(model_args)
    else:
        quantization_config = get_quantization_config(model_args)  # 8-bit or None, exactly as TRL does
    dtype, why = resolve_dtype(model_args.dtype)
    if why != "named":
        logger.info("load_policy: dtype %s -> %s (%s)", model_args.dtype, str(dtype).removeprefix("torch."), why)
    kwargs: dict[str, Any] = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": dtype,
    }
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = _kbit_device_map()
    kwargs.update(from_pretrained_kwargs)
    final_quantization = kwargs.get("quantization_config")
    if model_args.load_in_4bit and "dtype" not in from_pretrained_kwargs and final_quantization is not None:
        # The unquantised parameters in the dtype the 4-bit matmuls compute in: a float32 embedding beside a bf16
        # compute dtype would make the whole residual stream float32 (2x the activations kept for backward).
        compute = getattr(final_quantization, "bnb_4bit_compute_dtype", None)
        if isinstance(compute, torch.dtype) and compute != kwargs["dtype"]:
            logger.info("load_policy: 4-bit base: unquantised parameters in the compute dtype %s, not %s",
                        str(compute).removeprefix("torch."), str(kwargs["dtype"]).removeprefix("torch."))
            kwargs["dtype"] = compute
    model = model_cls.from_pretrained(model_path, **kwargs)

    ac_kwargs = dict(activation_checkpointing_kwargs) if activation_checkpointing_kwargs is not None else {}
    ac_kwargs.setdefault("use_reentrant", False)  # torch wants it explicit; non-reentrant needs no input-grad hook
    if quantized and upcast_norms_and_embeddings:
        # peft's recipe: freeze the base and upcast every fp16/bf16 parameter that is not 4-bit (norms, embeddings,
        # head) to fp32. Checkpointing is turned on below, under transformers' current name (peft uses the old one).
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    elif quantized:
        # The freezing half of prepare_model_for_kbit_training, without its fp32 upcast (peft has no switch for it).
        for param in model.parameters():
            param.requires_grad_(False)
    if activation_checkpointing:
        _enable_checkpointing(model, ac_kwargs)
        model.config.use_cache = False  # the KV cache is useless in training and incompatible with checkpointing
    if model_args.load_in_4bit:
        _keep_cpu_4bit_layout_trainable(model)

    if adapter_path is not None:
        # Trainable, under peft's default name "default": TRL's trainers look the adapter up under that name.
        model = PeftModel.from_pretrained(model, adapter_path, is_trainable=True)
        return model, None
    if model_args.use_peft:
        return model, lora_config(model_args)
    return model, None


def add_frozen_reference_adapter(
    peft_model: PeftModel, name: str = "ref", *, source: str | None = None
) -> PeftModel:
    """Add a frozen copy of adapter `source` (default: the active one) named `name`, for use as the reference.

    TRL 1.16's `DPOTrainer`, `KTOTrainer`, `GRPOTrainer` and `RLOOTrainer` do this themselves when given a
    `PeftModel` (and look for exactly `"ref"`): don't call this before handing the model to them, they would fail to
    add a second `"ref"`. It is for trainers that only know "adapter disabled" as the reference (e.g.
    `trl.experimental` ones) or our own loops: `with trl.trainer.utils.use_adapter(model, "ref"): ...` then gives the
    SFT reference, with the single base shared. The active adapter is left unchanged.
    """
    if not isinstance(peft_model, PeftModel):
        raise TypeError(f"peft_model must be a peft.PeftModel, got {type(peft_model).__name__}.")
    source = source if source is not None else peft_model.active_adapter
    if source not in peft_model.peft_config:
        raise ValueError(f"source adapter {source!r} not found; the model has {sorted(peft_model.peft_config)}.")
    if name in peft_model.peft_config:
        raise ValueError(f"the model already has an adapter named {name!r}; pick another name.")
    config = copy.deepcopy(peft_model.peft_config[source])
    config.inference_mode = True
    active = peft_model.active_adapter
    peft_model.add_adapter(name, config)
    state = get_peft_model_state_dict(peft_model, adapter_name=source)
    set_peft_model_state_dict(peft_model, state, adapter_name=name)
    peft_model.set_requires_grad(name, requires_grad=False)
    if peft_model.active_adapter != active:  # add_adapter keeps it, but be sure the trained adapter stays active
        peft_model.set_adapter(active)
    return peft_model


@contextlib.contextmanager
def reference_policy(model: torch.nn.Module):
    """Inside: `model` computes what a TRL trainer uses as its reference for a PEFT policy.

    That is the frozen `"ref"` adapter when there is one (TRL's trainers add it for a policy that starts from a saved
    adapter, e.g. an SFT adapter), else the base with every adapter disabled. The active adapter is restored after.
    A model without adapters is its own reference only if the trainer keeps a separate copy: that case raises.
    """
    if not isinstance(model, PeftModel):
        raise TypeError(f"reference_policy needs a peft.PeftModel, got {type(model).__name__}: a full fine-tune's "
                        "reference is the trainer's separate ref_model.")
    from . import _trl_compat as compat

    with compat.use_adapter(model, "ref" if "ref" in model.peft_config else None):
        yield model


def is_4bit(model: torch.nn.Module) -> bool:
    """Whether the model (or the base model under a `PeftModel`) holds bitsandbytes 4-bit weights."""
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    if getattr(base, "is_loaded_in_4bit", False):
        return True
    try:
        import bitsandbytes as bnb
    except ImportError:  # no bitsandbytes, no 4-bit layers
        return False
    return any(isinstance(module, bnb.nn.Linear4bit) for module in model.modules())


def trainable_parameter_names(model: torch.nn.Module) -> list[str]:
    """Names of the parameters with `requires_grad=True`, in `named_parameters()` order."""
    return [name for name, param in model.named_parameters() if param.requires_grad]
