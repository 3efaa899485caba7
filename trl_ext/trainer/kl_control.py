# Copyright 2026 The trl_ext authors. Apache-2.0.
"""KL control in trainers: the config fields, the callback that updates β once per optimizer step, and the mixin
that measures the KL for it (our GRPO, RLOO and PPO trainers). The controllers themselves are pure
(`trl_ext.kl_controllers`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainerCallback

from .. import _trl_compat as compat
from ..kl_controllers import AdaptiveKLController, FixedKLController, build_kl_controller, full_kl_per_token
from .config_utils import default_config, resolve_bf16

KL_CONTROL_MODES = ("fixed", "adaptive")
KL_TARGET_UNITS = ("sequence", "token")
KL_ESTIMATORS = ("sample", "full")
#: Key under which the controller's state lives in `TrainerState.stateful_callbacks` (saved in every checkpoint's
#: trainer_state.json, read back on `resume_from_checkpoint`).
STATE_KEY = "trl_ext.KLController"


@dataclass
class KLControlArguments:
    """Config fields for KL control, mixed into our GRPOConfig / RLOOConfig / PPOConfig. The initial β is `beta`.

    Parameters:
        kl_control (`str`, defaults to `"fixed"`):
            `"fixed"`: β stays `beta` (TRL's behaviour). `"adaptive"`: Ziegler et al. 2019, β follows the measured KL
            toward `kl_target` once per optimizer step (needs `beta > 0`).
        kl_target (`float`, defaults to `6.0`):
            Target KL(π‖π_ref) in nats, in the unit of `kl_target_unit` (6 nats per sequence: the paper / old TRL).
        kl_horizon (`float`, defaults to `10000`):
            K_β = sequences in the update / horizon: how fast β moves (the paper: 10,000).
        kl_target_unit (`str`, defaults to `"sequence"`):
            `"sequence"`: KL summed over a completion's tokens, averaged over completions (the paper's unit).
            `"token"`: KL averaged over completion tokens (the `kl` TRL logs). The sequence KL of a step is TRL's token
            mean × completion tokens / completions of that step, over all processes.
        kl_min_beta, kl_max_beta (`float`, defaults to `0.0` and `None`): bounds on β (`None`: no upper bound).
        kl_error_clip (`float`, defaults to `0.2`): bound on the proportional error (the paper: 0.2).
        kl_estimator (`str`, defaults to `"sample"`):
            How the KL that drives the controller is measured. `"sample"`: the trainer's own estimate from the sampled
            tokens (GRPO/RLOO: the `kl` TRL logs; PPO: Σ_t log π(a_t) − log π_ref(a_t), the KL in its reward).
            `"full"`: the exact KL of every position's next-token distribution, Σ_v π log(π/π_ref), summed over each
            completion (`full_kl_per_token`), measured once per generation batch. Same expectation, much less noise
            (on SmolLM2-135M, 32 completions per batch: relative s.d. 0.12 instead of 0.26 for the sampled log-ratio
            and 0.38 for k3), for one extra no-grad forward of the policy and of the reference per generation batch.
            It only changes what the controller sees; the loss and the reward keep TRL's / PPO's estimator.
    """

    kl_control: str = field(default="fixed", metadata={"help": "'fixed' or 'adaptive' (Ziegler et al. 2019) β.",
                                                        "choices": list(KL_CONTROL_MODES)})
    kl_target: float = field(default=6.0, metadata={"help": "Target KL in nats, in units of kl_target_unit."})
    kl_horizon: float = field(default=10_000, metadata={"help": "Controller horizon: K_β = n_sequences / horizon."})
    kl_target_unit: str = field(default="sequence", metadata={"help": "'sequence' (summed over tokens) or 'token'.",
                                                                 "choices": list(KL_TARGET_UNITS)})
    kl_min_beta: float = field(default=0.0, metadata={"help": "Lower bound on β."})
    kl_max_beta: float | None = field(default=None, metadata={"help": "Upper bound on β (None: unbounded)."})
    kl_error_clip: float = field(default=0.2, metadata={"help": "Bound on the controller's proportional error."})
    kl_estimator: str = field(default="sample", metadata={
        "help": "KL the controller sees: 'sample' (the trainer's sampled-token estimate) or 'full' (exact per-position "
                "KL over the vocabulary, lower variance, one extra no-grad forward of policy and reference).",
        "choices": list(KL_ESTIMATORS)})

    def __post_init__(self):
        self._validate_kl_fields()  # first: clearer than any error TRL's own checks might raise
        resolve_bf16(self)  # TRL's bf16=None: bf16 where the device computes it natively, not an error on a CPU
        super().__post_init__()

    def _validate_kl_fields(self) -> None:
        name = type(self).__name__
        if self.kl_control not in KL_CONTROL_MODES:
            raise ValueError(f"{name}.kl_control={self.kl_control!r} is not one of {list(KL_CONTROL_MODES)}.")
        if self.kl_target_unit not in KL_TARGET_UNITS:
            raise ValueError(f"{name}.kl_target_unit={self.kl_target_unit!r} is not one of {list(KL_TARGET_UNITS)}.")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"{name}.kl_estimator={self.kl_estimator!r} is not one of {list(KL_ESTIMATORS)}.")
        # Checked in every mode: an infinite target or horizon passes the controller's "> 0" checks and silently
        # freezes β (K_β = n / inf = 0, or an error of -clip forever); in a fixed run such a value is a typo all the
        # same, and refusing it there keeps one config valid whichever kl_control it is later run with.
        for field_name in ("kl_target", "kl_horizon", "kl_error_clip", "kl_min_beta"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name}.{field_name}={value!r}: must be a finite number.")
        max_beta = self.kl_max_beta
        if max_beta is not None and (isinstance(max_beta, bool) or not isinstance(max_beta, (int, float))
                                     or math.isnan(max_beta)):
            raise ValueError(f"{name}.kl_max_beta={self.kl_max_beta!r}: must be a number or None (no upper bound).")
        if self.kl_control == "adaptive":
            if not self.beta > 0:
                raise ValueError(
                    f"{name}: kl_control='adaptive' needs beta > 0 at the start (β is scaled each step, and with "
                    f"beta=0 TRL builds no reference model to measure KL against); got beta={self.beta}.")
            build_kl_controller(self)  # validates target, horizon, clip and bounds with the controller's messages



class KLControlCallback(TrainerCallback):
    """Drives a trainer's `beta` from its measured KL once per optimizer step.

    The trainer provides `pop_kl_measurement() -> (token_kl_sum, completion_tokens, completions) | None`: the KL it
    measured since the last call, already summed over all processes, so every rank computes the same β. The controller
    state is written to `TrainerState.stateful_callbacks` after every update (so every checkpoint holds it) and read
    back at `on_train_begin` when training resumes from a checkpoint.
    """

    def __init__(self, trainer: Any, controller: FixedKLController | AdaptiveKLController, unit: str) -> None:
        self.trainer = trainer
        self.controller = controller
        self.unit = unit

    def on_train_begin(self, args, state, control, **kwargs):
        saved = state.stateful_callbacks.get(STATE_KEY) if state.global_step > 0 else None
        if saved:
            self.controller.load_state_dict(saved)
        self.trainer.beta = self.controller.value
        state.stateful_callbacks[STATE_KEY] = self.controller.state_dict()

    def on_step_end(self, args, state, control, **kwargs):
        measurement = self.trainer.pop_kl_measurement()
        if measurement is None:  # no KL measured in this step (e.g. no generation in it)
            return
        token_kl_sum, tokens, sequences = measurement
        if sequences <= 0 or tokens <= 0:
            return
        kl = token_kl_sum / sequences if self.unit == "sequence" else token_kl_sum / tokens
        self.controller.update(kl, int(sequences))
        self.trainer.beta = self.controller.value
        state.stateful_callbacks[STATE_KEY] = self.controller.state_dict()
        metrics = compat.metrics(self.trainer, "train")
        metrics["kl_ctl/beta"].append(self.controller.value)
        metrics["kl_ctl/kl"].append(kl)
        target = getattr(self.controller, "target", None)
        if target is not None:
            metrics["kl_ctl/target"].append(target)
            metrics["kl_ctl/error"].append(self.controller.last_error)
        metrics["kl_ctl/skipped"].append(float(self.controller.skipped_updates))


class KLControlledTrainerMixin:
    """Shared wiring for trainers whose `beta` a KL controller drives (our GRPO, RLOO and PPO trainers).

    `_setup_kl_control()` builds the controller from the config and registers the callback; `_record_kl(...)` adds the
    KL the trainer just measured (TRL's token mean, which TRL already reduced over processes) with the number of
    completion tokens and completions it covers, summed over processes here.
    """

    @staticmethod
    def _kl_config(model: Any, args: Any, config_cls: type, suffix: str) -> Any:
        """The config to hand TRL: ours by default (TRL would build its own class, without the KL fields), re-checked
        before TRL's `__init__` decides from `beta` whether to build a reference model."""
        if args is None:
            args = default_config(model, config_cls, suffix)
        if isinstance(args, KLControlArguments):
            args._validate_kl_fields()
        return args

    def _kl_sequences_per_update(self) -> int:
        """The most completions one controller update measures: a generation batch over all processes (TRL's
        `generation_batch_size`)."""
        return int(self.args.generation_batch_size)

    def _setup_kl_control(self) -> None:
        self.kl_controller = build_kl_controller(self.args)
        if isinstance(self.kl_controller, AdaptiveKLController):  # a horizon that could send beta to 0: refuse now
            self.kl_controller.check_horizon(self._kl_sequences_per_update())
        self._kl_measurement = None
        self.add_callback(KLControlCallback(self, self.kl_controller, getattr(self.args, "kl_target_unit", "sequence")))

    def _record_kl(self, token_kl_mean: float, mask: Any) -> None:
        counts = torch.stack([mask.sum().float(), torch.tensor(float(mask.shape[0]), device=mask.device)])
        tokens, sequences = self.accelerator.reduce(counts, reduction="sum").tolist()
        previous = self._kl_measurement or (0.0, 0.0, 0.0)
        self._kl_measurement = (previous[0] + token_kl_mean * tokens, previous[1] + tokens, previous[2] + sequences)

    @property
    def _kl_estimator(self) -> str:
        return getattr(self.args, "kl_estimator", "sample")  # a plain TRL config has no field: TRL's own estimate

    def _full_kl_tokens(self, output: dict) -> Any:
        """Per-token `full_kl_per_token` of a generation batch (TRL's `_generate_and_score_completions` output):
        one no-grad forward of the policy and one of the reference (TRL's: `ref_model`, or the policy with its adapter
        disabled / the "ref" adapter), in chunks of `per_device_train_batch_size`, logits divided by the temperature
        as TRL's log-probs are. Text-only models."""
        if output.get("pixel_values") is not None:
            raise ValueError("kl_estimator='full' supports text-only models; use kl_estimator='sample' with images.")
        completion_ids = output["completion_ids"]
        input_ids = torch.cat([output["prompt_ids"], completion_ids], dim=1)
        attention_mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        keep, chunk = completion_ids.size(1), self.args.per_device_train_batch_size
        policy = self.accelerator.unwrap_model(self.model)

        def logits(model, rows):  # positions that predict the completion tokens
            out = model(input_ids=input_ids[rows], attention_mask=attention_mask[rows], logits_to_keep=keep + 1)
            return out.logits[:, :-1] / self.temperature

        parts = []
        with torch.no_grad(), self.accelerator.autocast():
            for start in range(0, input_ids.size(0), chunk):
                rows = slice(start, start + chunk)
                policy_logits = logits(policy, rows)
                if self.ref_model is not None:
                    ref_logits = logits(self.ref_model, rows)
                else:
                    with compat.use_adapter(policy, "ref" if "ref" in policy.peft_config else None):
                        ref_logits = logits(policy, rows)
                # one row at a time: the float32 softmaxes of a whole chunk over a large vocabulary would not fit
                parts += [full_kl_per_token(p, r) for p, r in zip(policy_logits, ref_logits)]
        return torch.stack(parts)

    def _record_full_kl_if_asked(self, output: dict) -> bool:
        """With `kl_estimator="full"`, during training, with a reference (β > 0): record the batch's exact KL."""
        if self.model.training and self.beta != 0.0 and self._kl_estimator == "full":
            self._record_full_kl(output)
            return True
        return False

    def _record_full_kl(self, output: dict) -> None:
        """Adds the generation batch's exact KL (summed over processes) to the controller's measurement."""
        mask = output["completion_mask"].float()
        if "tool_mask" in output:
            mask = mask * output["tool_mask"]
        kl = self._full_kl_tokens(output)
        both = self.accelerator.reduce(torch.stack([(kl * mask).sum(), mask.sum()]), reduction="sum")
        self._record_kl((both[0] / both[1].clamp(min=1)).item(), mask)

    def pop_kl_measurement(self) -> tuple[float, float, float] | None:
        measurement, self._kl_measurement = self._kl_measurement, None
        return measurement
