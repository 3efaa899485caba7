# Copyright 2026 The trl_ext authors. Apache-2.0.
"""trl_ext: TRL plus ranked preference data with grouped training, BERT-CLS reward models, adaptive KL control,
QLoRA policies and PPO with a critic.

Change `from trl import DPOTrainer, DPOConfig` to `from trl_ext import DPOTrainer, DPOConfig` and keep the rest of
your code. Imports are lazy, as in TRL: `from trl_ext import ranked_to_pairs` loads no trainer (and no bitsandbytes);
a trainer's module is imported the first time its name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it. This table is the package's public API (`__all__`): the names a user
# needs. Everything else stays importable from its submodule (`trl_ext.metrics.kendall_tau`,
# `trl_ext.trainer.ranked_data.RankedDataArguments`, `trl_ext.rewards.RunningMoments`, ...).
_IMPORT_STRUCTURE: dict[str, list[str]] = {
    "trl_ext.trainer.reward_config": ["RewardConfig"],
    "trl_ext.trainer.reward_trainer": ["RewardDataCollator", "RewardTrainer"],
    "trl_ext.trainer.dpo_config": ["DPOConfig"],
    "trl_ext.trainer.dpo_trainer": ["DPODataCollator", "DPOTrainer"],
    "trl_ext.trainer.grpo_config": ["GRPOConfig"],
    "trl_ext.trainer.grpo_trainer": ["GRPOTrainer"],
    "trl_ext.trainer.rloo_config": ["RLOOConfig"],
    "trl_ext.trainer.rloo_trainer": ["RLOOTrainer"],
    "trl_ext.trainer.ppo_config": ["PPOConfig"],
    "trl_ext.trainer.ppo_trainer": ["PPOTrainer"],
    "trl_ext.trainer.kl_control": ["KLControlCallback"],
    "trl_ext.trainer.judge_callback": ["JudgeCallback"],
    "trl_ext.data": ["RankingStats", "is_ranked_dataset", "load_hh_rlhf", "load_oasst_ranked", "load_preference_file",
                     "ranked_to_pairs", "ranks_from_scores", "validate_ranked_example"],
    "trl_ext.rewards": ["TextRewardModel"],
    "trl_ext.modeling_bert_cls_reward": ["BertClsRewardConfig", "BertClsRewardModel"],
    "trl_ext.losses": ["bradley_terry_loss", "dpo_pair_losses", "grouped_bradley_terry_loss", "plackett_luce_loss"],
    "trl_ext.kl_controllers": ["AdaptiveKLController", "FixedKLController", "build_kl_controller"],
    "trl_ext.peft_utils": ["add_frozen_reference_adapter", "bnb_4bit_config", "load_policy", "lora_config",
                           "reference_policy"],
}

_MODULE_OF = {name: module for module, names in _IMPORT_STRUCTURE.items() for name in names}

__all__ = sorted(_MODULE_OF)


# Submodules reachable as attributes after a plain `import trl_ext` (e.g. `trl_ext.rewards.final_number_reward`).
_SUBMODULES = ("data", "kl_controllers", "losses", "metrics", "modeling_bert_cls_reward", "modeling_value_head",
               "peft_utils", "ppo_math", "rewards", "trainer")


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        if name in _SUBMODULES:
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module 'trl_ext' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from .data import (RankingStats, is_ranked_dataset, load_hh_rlhf, load_oasst_ranked, load_preference_file,
                       ranked_to_pairs, ranks_from_scores, validate_ranked_example)
    from .kl_controllers import AdaptiveKLController, FixedKLController, build_kl_controller
    from .losses import bradley_terry_loss, dpo_pair_losses, grouped_bradley_terry_loss, plackett_luce_loss
    from .modeling_bert_cls_reward import BertClsRewardConfig, BertClsRewardModel
    from .peft_utils import add_frozen_reference_adapter, bnb_4bit_config, load_policy, lora_config, reference_policy
    from .rewards import TextRewardModel
    from .trainer.dpo_config import DPOConfig
    from .trainer.dpo_trainer import DPODataCollator, DPOTrainer
    from .trainer.grpo_config import GRPOConfig
    from .trainer.grpo_trainer import GRPOTrainer
    from .trainer.judge_callback import JudgeCallback
    from .trainer.kl_control import KLControlCallback
    from .trainer.ppo_config import PPOConfig
    from .trainer.ppo_trainer import PPOTrainer
    from .trainer.reward_config import RewardConfig
    from .trainer.reward_trainer import RewardDataCollator, RewardTrainer
    from .trainer.rloo_config import RLOOConfig
    from .trainer.rloo_trainer import RLOOTrainer
