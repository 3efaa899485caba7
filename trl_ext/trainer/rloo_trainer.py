# Copyright 2026 The trl_ext authors. Apache-2.0.
"""`RLOOTrainer`: TRL's RLOO trainer whose β can follow a KL controller."""

from __future__ import annotations

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
from .online_rl import OnlineRLTrainerMixin
from .rloo_config import RLOOConfig

RewardFunc = compat.online_init_types()[0]  # TRL's type of `reward_funcs`


class RLOOTrainer(OnlineRLTrainerMixin, trl.RLOOTrainer):
    """[`trl.RLOOTrainer`] whose β follows a KL controller (fixed by default: TRL's behaviour).

    Overrides, each extending TRL's method:

    * `__init__` (TRL's signature): the online trainers' sequence ([`OnlineRLTrainerMixin`]): the KL fields and the
      prompt column checked before TRL's `__init__`, then the controller and its callback.
    * `_generate_and_score_completions`: TRL's rollout scoring (which applies `self.beta`), then records the KL TRL
      measured for the controller (or, with `kl_estimator="full"`, the batch's exact KL).
    """

    def __init__(
        self,
        model: str | PreTrainedModel | PeftModel,
        reward_funcs: RewardFunc | list[RewardFunc],
        args: trl.RLOOConfig | None = None,
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
    ):
        self._init_online_trainer(
            RLOOConfig, "RLOO", model, args,
            reward_funcs=reward_funcs, train_dataset=train_dataset, eval_dataset=eval_dataset,
            processing_class=processing_class, reward_processing_classes=reward_processing_classes, callbacks=callbacks,
            optimizers=optimizers, quantization_config=quantization_config, peft_config=peft_config,
        )

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        kl = compat.last_metric(self, "train", "kl")
        if not self._record_full_kl_if_asked(output) and self.model.training and self.beta != 0.0 and kl is not None:
            self._record_kl(kl, output["completion_mask"])
        return output
