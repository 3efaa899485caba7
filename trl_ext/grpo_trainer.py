# Copyright 2026 The trl_ext authors. Apache-2.0.
"""GRPO with adaptive KL control: drop-in subclasses of TRL's GRPOConfig / GRPOTrainer."""

from __future__ import annotations

from dataclasses import dataclass

import trl

from .kl_control import KLControlArguments, KLControlledTrainerMixin


@dataclass
class GRPOConfig(KLControlArguments, trl.GRPOConfig):
    """[`trl.GRPOConfig`] plus KL control (`kl_control`, `kl_target`, `kl_horizon`, `kl_target_unit`, β bounds).

    With `kl_control="adaptive"`, `beta` is the starting β and must be > 0.
    """

    def __post_init__(self):
        self._validate_kl_fields()  # first: clearer than any error TRL's own checks might raise
        super().__post_init__()


class GRPOTrainer(KLControlledTrainerMixin, trl.GRPOTrainer):
    """[`trl.GRPOTrainer`] whose β follows a KL controller (fixed by default: TRL's behaviour).

    Overrides, each extending TRL's method:

    * `__init__`: checks the KL fields (before TRL decides from `beta` whether to build a reference model), calls
      TRL's `__init__`, then adds the controller and its callback.
    * `_compute_loss`: TRL's loss (which uses `self.beta`), then records the KL TRL measured for the controller.
    * `_generate_and_score_completions`: TRL's rollout; with `kl_estimator="full"` it also measures the batch's exact
      KL for the controller (instead of TRL's per-step `kl`).
    """

    def __init__(self, model, reward_funcs=None, args=None, *more, **kwargs):
        args = self._kl_config(model, args, GRPOConfig, "GRPO")
        super().__init__(model, reward_funcs, args, *more, **kwargs)
        self._setup_kl_control()

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        self._record_full_kl_if_asked(output)
        return output

    def _compute_loss(self, model, inputs):
        loss = super()._compute_loss(model, inputs)
        if (self.model.training and self.beta != 0.0 and self._kl_estimator == "sample"
                and self._metrics["train"]["kl"]):
            mask = inputs["completion_mask"] if "tool_mask" not in inputs else inputs["completion_mask"] * inputs["tool_mask"]
            self._record_kl(self._metrics["train"]["kl"][-1], mask)
        return loss
