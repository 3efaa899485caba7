# Copyright 2026 The trl_ext authors. Apache-2.0.
"""RLOO with adaptive KL control: drop-in subclasses of TRL's RLOOConfig / RLOOTrainer."""

from __future__ import annotations

from dataclasses import dataclass

import trl

from .kl_control import KLControlArguments, KLControlledTrainerMixin


@dataclass
class RLOOConfig(KLControlArguments, trl.RLOOConfig):
    """[`trl.RLOOConfig`] plus KL control (`kl_control`, `kl_target`, `kl_horizon`, `kl_target_unit`, β bounds).

    RLOO puts the KL penalty in the reward (r − β·KL per completion) when it scores a generation batch; with
    `kl_control="adaptive"` the β used there follows the KL measured on earlier batches.
    """

    def __post_init__(self):
        self._validate_kl_fields()  # first: clearer than any error TRL's own checks might raise
        super().__post_init__()


class RLOOTrainer(KLControlledTrainerMixin, trl.RLOOTrainer):
    """[`trl.RLOOTrainer`] whose β follows a KL controller (fixed by default: TRL's behaviour).

    Overrides, each extending TRL's method:

    * `__init__`: checks the KL fields before TRL's `__init__`, then adds the controller and its callback.
    * `_generate_and_score_completions`: TRL's rollout scoring (which applies `self.beta`), then records the KL TRL
      measured for the controller (or, with `kl_estimator="full"`, the batch's exact KL).
    """

    def __init__(self, model, reward_funcs=None, args=None, *more, **kwargs):
        args = self._kl_config(model, args, RLOOConfig, "RLOO")
        super().__init__(model, reward_funcs, args, *more, **kwargs)
        self._setup_kl_control()

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if (not self._record_full_kl_if_asked(output) and self.model.training and self.beta != 0.0
                and self._metrics["train"]["kl"]):
            self._record_kl(self._metrics["train"]["kl"][-1], output["completion_mask"])
        return output
