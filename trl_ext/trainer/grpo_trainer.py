# Copyright 2026 The trl_ext authors. Apache-2.0.
"""`GRPOTrainer`: TRL's GRPO trainer whose β can follow a KL controller."""

from __future__ import annotations

import trl

from .. import _trl_compat as compat
from .grpo_config import GRPOConfig
from .kl_control import KLControlledTrainerMixin
from .online_rl import OnlineRLChecksMixin


class GRPOTrainer(KLControlledTrainerMixin, OnlineRLChecksMixin, trl.GRPOTrainer):
    """[`trl.GRPOTrainer`] whose β follows a KL controller (fixed by default: TRL's behaviour).

    Overrides, each extending TRL's method:

    * `__init__`: checks the KL fields and the prompt column (before TRL decides from `beta` whether to build a reference model), calls
      TRL's `__init__`, then adds the controller and its callback.
    * `_compute_loss`: TRL's loss (which uses `self.beta`), then records the KL TRL measured for the controller.
    * `_generate_and_score_completions`: TRL's rollout; with `kl_estimator="full"` it also measures the batch's exact
      KL for the controller (instead of TRL's per-step `kl`).
    """

    def __init__(self, model, reward_funcs=None, args=None, *more, **kwargs):
        args = self._kl_config(model, args, GRPOConfig, "GRPO")
        self._check_prompt_columns(more, kwargs)
        super().__init__(model, reward_funcs, args, *more, **kwargs)
        self._check_reward_funcs()
        self._check_rollout_fits()
        self._setup_kl_control()

    def _kl_sequences_per_update(self) -> int:
        if self._kl_estimator == "full":
            return super()._kl_sequences_per_update()
        # TRL's `kl` is recorded per micro-batch and the controller updates once per optimizer step
        return (self.args.per_device_train_batch_size * self.accelerator.num_processes
                * self.args.gradient_accumulation_steps)

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        self._record_full_kl_if_asked(output)
        return output

    def _compute_loss(self, model, inputs):
        loss = super()._compute_loss(model, inputs)
        kl = compat.last_metric(self, "train", "kl")
        if self.model.training and self.beta != 0.0 and self._kl_estimator == "sample" and kl is not None:
            mask = inputs["completion_mask"] if "tool_mask" not in inputs else inputs["completion_mask"] * inputs["tool_mask"]
            self._record_kl(kl, mask)
        return loss
