# Copyright 2026 The trl_ext authors. Apache-2.0.
"""The one door to TRL's and transformers' internals.

Everything trl_ext needs that TRL or transformers do not export as public API goes through this module: names
imported from TRL submodules (TRL's public API is what `import trl` exports), underscore functions and attributes, and
the private hook methods our trainers override. When TRL or transformers move, this is the file to re-check, together
with `docs/trl_internals.md` and `tests/unit/test_trl_compat.py` (which checks every hook listed in `HOOKS` against the
installed TRL).

Checked against trl 1.16.0 and transformers 5.23.0 and 5.24.0. At import, the installed versions are compared with
`TESTED_VERSIONS` and a warning names any that fall outside.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

#: The version ranges the test suite passes on (both ends tested); `pyproject.toml` declares the same ranges.
TESTED_VERSIONS: dict[str, str] = {"trl": ">=1.16,<1.17", "transformers": ">=5.23,<5.25"}

#: Private TRL/transformers methods that trl_ext's trainers override (and call through `super()`), by the public class
#: that defines them, with the parameters TRL 1.16 / transformers 5.23-5.24 give them. A change in any of these is a
#: change our overrides must follow; the unit tests compare this table with the installed libraries.
HOOKS: dict[str, dict[str, tuple[str, ...]]] = {
    "trl.RewardTrainer": {
        "_prepare_dataset": ("self", "dataset", "processing_class", "args", "dataset_name"),
        "_set_signature_columns_if_needed": ("self",),
    },
    "trl.DPOTrainer": {
        "_prepare_dataset": ("self", "dataset", "processing_class", "args", "dataset_name"),
        "_set_signature_columns_if_needed": ("self",),
    },
    "trl.GRPOTrainer": {
        "_generate_and_score_completions": ("self", "inputs"),
        "_compute_loss": ("self", "model", "inputs"),
        "_calculate_rewards": ("self", "inputs", "prompts", "completions", "completion_ids_list"),
    },
    "trl.RLOOTrainer": {
        "_generate_and_score_completions": ("self", "inputs"),
        "_calculate_rewards": ("self", "inputs", "prompts", "completions", "completion_ids_list"),
    },
    "transformers.Trainer": {
        "_save": ("self", "output_dir", "state_dict"),
        "_load_from_checkpoint": ("self", "resume_from_checkpoint", "model"),
        "_save_checkpoint": ("self", "model", "trial"),
    },
    "transformers.PreTrainedModel": {
        "_init_weights": ("self", "module"),
    },
}

#: Private class attributes of TRL/transformers classes that trl_ext's subclasses set in their class body, by the class
#: that defines them. The unit tests check each exists on the installed class, and that no other private class
#: attribute of a library class is set.
CLASS_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "trl.RewardTrainer": ("_tag_names",),  # tags written into saved model cards; ours add "trl_ext"
    "trl.DPOTrainer": ("_tag_names",),
    "transformers.PreTrainedModel": ("_supports_sdpa", "_no_split_modules"),  # how a model declares what it supports
}


def check_versions() -> list[str]:
    """Warn (once per process) for each of trl / transformers installed outside `TESTED_VERSIONS`, and for a
    `__version__` that is not a version number (a source build's "main@abc123"): a warning, never an import error."""
    # the module objects as imported now: transformers swaps its lazy module object in sys.modules on first use
    found = {name: getattr(importlib.import_module(name), "__version__", None) for name in TESTED_VERSIONS}
    outside = []
    for name, spec in TESTED_VERSIONS.items():
        try:
            inside = Version(str(found[name])) in SpecifierSet(spec, prereleases=True)
        except InvalidVersion:
            warnings.warn(f"trl_ext cannot read the version of {name} ({found[name]!r}); it was tested with "
                          f"{name}{spec}.", UserWarning, stacklevel=2)
            outside.append(f"{name} {found[name]!r} (unreadable, tested {spec})")
            continue
        if not inside:
            outside.append(f"{name} {found[name]} (tested {spec})")
    if outside:
        warnings.warn(
            f"trl_ext was tested with {', '.join(f'{n}{s}' for n, s in TESTED_VERSIONS.items())}, found "
            f"{'; '.join(outside)}: the TRL methods trl_ext extends may have changed (see docs/trl_internals.md).",
            UserWarning, stacklevel=2)
    return outside


check_versions()


# --------------------------------------------------------------------------------------------------------------------
# Classes and functions TRL keeps in its submodules
# --------------------------------------------------------------------------------------------------------------------


def online_init_types() -> tuple[Any, Any, Any]:
    """TRL's type aliases `RewardFunc`, `RolloutFunc` and `EnvironmentFactory` (trl/trainer/grpo_trainer.py, not
    exported by `trl`), the types of `GRPOTrainer.__init__`'s `reward_funcs`, `rollout_func` and
    `environment_factory`: our online trainers' signatures show TRL's types."""
    module = importlib.import_module("trl.trainer.grpo_trainer")
    return module.RewardFunc, module.RolloutFunc, module.EnvironmentFactory


def checkpointing_disabled(model: Any, checkpointing_kwargs: dict | None = None) -> Any:
    """TRL's `trl.models.utils.disable_gradient_checkpointing(model, kwargs)`: a context that turns activation
    checkpointing off and back on (with `checkpointing_kwargs`) if it was on, as TRL's GRPO/RLOO do around their
    no-grad reference passes."""
    from trl.models.utils import disable_gradient_checkpointing

    return disable_gradient_checkpointing(model, checkpointing_kwargs)


def init_weights_as(model: Any, module: Any) -> bool:
    """Initialise `module` as `model`'s own `PreTrainedModel._init_weights` does (False when `model` has none): a
    wrapper model initialises the wrapped encoder's modules the encoder's way."""
    init = getattr(model, "_init_weights", None)
    if init is None:
        return False
    init(module)
    return True


def reward_preference_collator() -> type:
    """`trl.trainer.reward_trainer.DataCollatorForPreference` (rows: chosen..., rejected...; optional margin)."""
    from trl.trainer.reward_trainer import DataCollatorForPreference

    return DataCollatorForPreference


def dpo_preference_collator() -> type:
    """`trl.trainer.dpo_trainer.DataCollatorForPreference` (prompt + completion rows, `completion_mask`, truncation)."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    return DataCollatorForPreference


def pad(tensors: list, padding_value: int, padding_side: str = "right", pad_to_multiple_of: int | None = None):
    """`trl.trainer.utils.pad`: stack 1-D tensors of different lengths into one padded 2-D tensor."""
    from trl.trainer.utils import pad as trl_pad

    return trl_pad(tensors, padding_value=padding_value, padding_side=padding_side,
                   pad_to_multiple_of=pad_to_multiple_of)


def use_adapter(model: Any, adapter_name: str | None):
    """`trl.trainer.utils.use_adapter`: a context with `adapter_name` active (None: every adapter disabled)."""
    from trl.trainer.utils import use_adapter as trl_use_adapter

    return trl_use_adapter(model, adapter_name=adapter_name)


def tokenize(processing_class: Any, text_or_messages: str | list, **chat_template_kwargs: Any) -> list[int]:
    """Token ids of one text (tokenizer call) or message list (chat template), as TRL's trainers tokenize a row
    (`trl.data_utils._tokenize`)."""
    from trl.data_utils import _tokenize

    return _tokenize(processing_class, text_or_messages, **chat_template_kwargs)["input_ids"]


def dataset_column_names(dataset: Any) -> list[str]:
    """Column names of a `Dataset` or `IterableDataset` (TRL's `get_dataset_column_names`, which also reads
    streaming datasets whose features are unknown)."""
    from trl.data_utils import get_dataset_column_names

    return list(get_dataset_column_names(dataset))


def main_process_first():
    """`trl.trainer.utils.global_then_local_main_first`: a context in which the global main process runs first, then
    each node's local main, then the other processes. TRL's `_prepare_dataset` runs its dataset maps under it, so that
    processes neither repeat work the main process cached nor race on the cache files; our own maps run under it too."""
    from trl.trainer.utils import global_then_local_main_first

    return global_then_local_main_first()


def sub_config_spec(config_class: type, model_type: str) -> Any:
    """`transformers.configuration_utils.SubConfigSpec`: how a composite config declares a nested config."""
    from transformers.configuration_utils import SubConfigSpec

    return SubConfigSpec(config_class=config_class, model_type=model_type)


def encoder_class_for_config(config: Any) -> type:
    """The class `AutoModel.from_config(config)` would build (`AutoModel._model_mapping`)."""
    from transformers import AutoModel

    return AutoModel._model_mapping[type(config)]


# --------------------------------------------------------------------------------------------------------------------
# Trainer state TRL keeps in private attributes
# --------------------------------------------------------------------------------------------------------------------


def metrics(trainer: Any, mode: str) -> Any:
    """The trainer's metric buffer for `mode` ("train" | "eval"): `trainer._metrics[mode]`, a name -> list of
    values mapping that TRL's `log` averages and clears."""
    return trainer._metrics[mode]


def last_metric(trainer: Any, mode: str, name: str) -> float | None:
    """The value TRL appended last to metric `name` (None when there is none yet)."""
    values = trainer._metrics[mode].get(name)
    return values[-1] if values else None


def add_train_tokens(trainer: Any, tokens_all_processes: int) -> int:
    """Count tokens seen in training as TRL does (`_total_train_tokens`, divided by the tensor-parallel size) and
    set the `num_tokens` metric; returns the new total."""
    trainer._total_train_tokens += tokens_all_processes // trainer._tp_size
    trainer._metrics["train"]["num_tokens"] = [trainer._total_train_tokens]
    return trainer._total_train_tokens


def train_tokens(trainer: Any) -> int:
    """Tokens seen in training so far (`_total_train_tokens`)."""
    return trainer._total_train_tokens


def signature_columns(trainer: Any) -> list[str] | None:
    """The dataset columns the Trainer keeps (`_signature_columns`; None before TRL sets them)."""
    return trainer._signature_columns


def set_signature_columns(trainer: Any, columns: list[str]) -> None:
    trainer._signature_columns = list(columns)


def micro_step(trainer: Any) -> int:
    """GRPO/RLOO's count of `training_step` calls (`_step`): a new rollout is generated when it is a multiple of
    `steps_per_generation * num_iterations`."""
    return trainer._step


def set_micro_step(trainer: Any, step: int) -> None:
    trainer._step = int(step)


def rollout_buffer(trainer: Any) -> list[dict]:
    """GRPO/RLOO's current generation batch, split into `steps_per_generation` mini-batches (`_buffered_inputs`)."""
    return trainer._buffered_inputs


def set_rollout_buffer(trainer: Any, buffer: list[dict]) -> None:
    trainer._buffered_inputs = buffer


def checkpoint_dir(trainer: Any, trial: Any = None) -> str:
    """The folder transformers' `_save_checkpoint` writes this step's checkpoint to (`_get_output_dir`)."""
    import os

    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    return os.path.join(trainer._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}")


def online_tokenizer(trainer: Any) -> Any:
    """The tokenizer of a GRPO/RLOO trainer's processing class (`_tokenizer`)."""
    return trainer._tokenizer


def per_token_logps_and_entropies(trainer: Any, model: Any, input_ids: Any, attention_mask: Any,
                                  logits_to_keep: int, batch_size: int | None = None, compute_entropy: bool = False,
                                  compute_aux_loss: bool = False) -> tuple[Any, Any, Any]:
    """GRPO's `_get_per_token_logps_and_entropies` as `(logps, entropies, aux_loss)`: TRL 1.16 returns the MoE router
    auxiliary loss third (None unless `compute_aux_loss`); TRL before 1.7 returned two values."""
    out = trainer._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                     batch_size=batch_size, compute_entropy=compute_entropy,
                                                     compute_aux_loss=compute_aux_loss)
    return out[0], out[1], (out[2] if len(out) > 2 else None)


def prepare_inputs(trainer: Any, batch: dict) -> dict:
    """transformers' `Trainer._prepare_inputs`: move a collated batch to the trainer's device."""
    from transformers import Trainer

    return Trainer._prepare_inputs(trainer, batch)


def fused_lm_forward(model: Any, input_ids: Any, attention_mask: Any, labels: Any, **kwargs: Any) -> Any:
    """A forward through the LM head TRL's DPO trainer patches in (`add_fused_lm_head`): the outputs carry per-token
    `log_probs` (of `labels`, shifted), `entropy`, `mean_logits` and `is_top1` instead of full logits (and `aux_loss`
    with `output_router_logits=True` on MoE models)."""
    if not kwargs.get("output_router_logits"):
        kwargs.pop("output_router_logits", None)
    return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False,
                 fused_lm_head=True, **kwargs)


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX512-BF16 or AMX tiles) and torch may use them.

    From torch's private `torch.cpu._is_avx512_bf16_supported` / `_is_amx_tile_supported` (torch has no public query:
    `torch.backends.cpu.get_cpu_capability()` says "AVX512" with and without the BF16 extension), and only when torch's
    kernels run at AVX512 or above (`ATEN_CPU_CAPABILITY`) and oneDNN, which runs bf16 matmuls, is not capped below
    AVX512-BF16 (`ONEDNN_MAX_CPU_ISA`). Elsewhere (AVX2-only CPUs: most laptops and many cloud VMs) bf16 is emulated,
    tens of times slower than float32."""
    import os

    import torch

    if not torch.backends.cpu.get_cpu_capability().upper().startswith(("AVX512", "AMX")):
        return False
    isa = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if isa and isa not in ("ALL", "DEFAULT") and not isa.startswith(("AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX10")):
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(probe()) for probe in probes if probe is not None)


def hook_parameters(owner: str, name: str) -> tuple[str, ...]:
    """Parameter names of hook `name` on `owner` ("trl.DPOTrainer", "transformers.Trainer", ...) as installed."""
    module, cls = owner.split(".")
    target = getattr(importlib.import_module(module), cls)
    return tuple(inspect.signature(getattr(target, name)).parameters)


def unwrap_for_generation(model: Any, accelerator: Any) -> Any:
    """`trl.models.utils.unwrap_model_for_generation`: a context yielding the bare model for generation (DDP/FSDP
    unwrapped, ZeRO-3 parameters gathered)."""
    from trl.models.utils import unwrap_model_for_generation

    return unwrap_model_for_generation(model, accelerator)


def kv_cache_keyword(model: Any) -> str:
    """The forward keyword that takes a KV cache: `cache` (transformers 5.24) or `past_key_values` (5.23)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def output_kv_cache(output: Any) -> Any:
    """The KV cache a forward returned: `output.cache` (transformers 5.24) or `output.past_key_values` (5.23)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)
