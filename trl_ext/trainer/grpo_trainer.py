# Copyright 2026 The trl_ext authors. Apache-2.0.
"""`GRPOTrainer`: TRL's GRPO trainer whose β can follow a KL controller."""

from __future__ import annotations

from collections.abc import Callable

import torch
import trl
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict
from peft import PeftConfig, PeftModel
from transformers import (
    BitsAndBytesConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    ProcessorMixin,
    TrainerCallback,
)

from .. import _trl_compat as compat
from .grpo_config import GRPOConfig
from .online_rl import OnlineRLTrainerMixin

RewardFunc, RolloutFunc, EnvironmentFactory = compat.online_init_types()  # TRL's parameter types


class GRPOTrainer(OnlineRLTrainerMixin, trl.GRPOTrainer):
    """[`trl.GRPOTrainer`] whose β follows a KL controller (fixed by default: TRL's behaviour).

    Overrides, each extending TRL's method:

    * `__init__` (TRL's signature): the online trainers' sequence ([`OnlineRLTrainerMixin`]): the KL fields and the
      prompt column checked before TRL decides from `beta` whether to build a reference model, TRL's `__init__`, then
      the controller and its callback.
    * `_compute_loss`: TRL's loss (which uses `self.beta`), then records the KL TRL measured for the controller.
    * `_generate_and_score_completions`: TRL's rollout; with `kl_estimator="full"` it also measures the batch's exact
      KL for the controller (instead of TRL's per-step `kl`).
    """

    def __init__(
        self,
        model: str | PreTrainedModel | PeftModel,
        reward_funcs: RewardFunc | list[RewardFunc] | None = None,
        args: trl.GRPOConfig | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset
        | IterableDataset
        | DatasetDict
        | IterableDatasetDict
        | dict[str, Dataset | IterableDataset]
        | None = None,
        processing_class: PreTrainedTokenizerBase | ProcessorMixin | None = None,
        reward_processing_classes: PreTrainedTokenizerBase | list[PreTrainedTokenizerBase] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        quantization_config: BitsAndBytesConfig | None = None,
        peft_config: PeftConfig | None = None,
        tools: list[Callable] | None = None,
        rollout_func: RolloutFunc | None = None,
        environment_factory: EnvironmentFactory | dict[str, EnvironmentFactory] | None = None,
    ):
        self._init_online_trainer(
            GRPOConfig, "GRPO", model, args,
            reward_funcs=reward_funcs, train_dataset=train_dataset, eval_dataset=eval_dataset,
            processing_class=processing_class, reward_processing_classes=reward_processing_classes, callbacks=callbacks,
            optimizers=optimizers, quantization_config=quantization_config, peft_config=peft_config,
            tools=tools, rollout_func=rollout_func, environment_factory=environment_factory,
        )

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
