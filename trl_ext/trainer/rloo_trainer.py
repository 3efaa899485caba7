# Copyright 2026 The trl_ext authors. Apache-2.0.
"""`RLOOTrainer`: TRL's RLOO trainer whose β can follow a KL controller."""

from __future__ import annotations

import trl

from .. import _trl_compat as compat
from .kl_control import KLControlledTrainerMixin
from .online_rl import OnlineRLChecksMixin
from .rloo_config import RLOOConfig


class RLOOTrainer(KLControlledTrainerMixin, OnlineRLChecksMixin, trl.RLOOTrainer):
    """[`trl.RLOOTrainer`] whose β follows a KL controller (fixed by default: TRL's behaviour).

    Overrides, each extending TRL's method:

    * `__init__`: checks the KL fields and the prompt column before TRL's `__init__`, then adds the controller and its callback.
    * `_generate_and_score_completions`: TRL's rollout scoring (which applies `self.beta`), then records the KL TRL
      measured for the controller (or, with `kl_estimator="full"`, the batch's exact KL).
    """

    def __init__(self, model, reward_funcs=None, args=None, *more, **kwargs):
        args = self._kl_config(model, args, RLOOConfig, "RLOO")
        self._check_prompt_columns(more, kwargs)
        super().__init__(model, reward_funcs, args, *more, **kwargs)
        self._check_reward_funcs()
        self._check_rollout_fits()
        self._setup_kl_control()

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        kl = compat.last_metric(self, "train", "kl")
        if not self._record_full_kl_if_asked(output) and self.model.training and self.beta != 0.0 and kl is not None:
            self._record_kl(kl, output["completion_mask"])
        return output
