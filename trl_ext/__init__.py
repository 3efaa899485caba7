"""trl_ext: thin extensions of Hugging Face TRL for RLHF.

Change `from trl import RewardTrainer, DPOTrainer` to `from trl_ext import RewardTrainer, DPOTrainer` (and the
configs) and keep the rest of your code; ranked data (grouped training), weighted pairs, encoder ([CLS]) reward models
and ranking metrics come on top.
"""

from .data import (
    PAIR_STRATEGIES,
    RankingStats,
    is_ranked_dataset,
    load_hh_rlhf,
    load_oasst_ranked,
    load_preference_file,
    rank_pairs,
    ranked_to_pairs,
    ranks_from_scores,
    validate_ranked_example,
)
from .dpo_trainer import DPOConfig, DPODataCollator, DPOTrainer
from .grpo_trainer import GRPOConfig, GRPOTrainer
from .kl_control import (
    AdaptiveKLController,
    FixedKLController,
    KLControlArguments,
    KLControlCallback,
    build_kl_controller,
    full_kl_per_token,
    kl_error,
    sequence_kl,
)
from .losses import GROUPED_DPO_LOSS_TYPES, bradley_terry_loss, dpo_pair_losses, grouped_bradley_terry_loss, weighted_mean
from .metrics import group_ranking_metrics, kendall_tau, pair_accuracy, pairwise_auc, spearman, top1_correct
from .reward_head import (
    BertClsRewardConfig,
    BertClsRewardModel,
    PairEncoding,
    encode_prompt_response,
    is_encoder_config,
    render_messages,
)
from .ppo_trainer import PPOConfig, PPOTrainer, ValueHead
from .qlora import add_frozen_reference_adapter, bnb_4bit_config, is_4bit, load_policy, lora_config
from .ranking import RankedDataArguments
from .reward_functions import RunningMoments, TextRewardModel
from .rloo_trainer import RLOOConfig, RLOOTrainer
from .reward_trainer import RewardConfig, RewardDataCollator, RewardTrainer

__version__ = "0.1.0"

__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "GRPOConfig",
    "GRPOTrainer",
    "KLControlArguments",
    "KLControlCallback",
    "PPOConfig",
    "PPOTrainer",
    "ValueHead",
    "RLOOConfig",
    "RLOOTrainer",
    "build_kl_controller",
    "full_kl_per_token",
    "kl_error",
    "sequence_kl",
    "DPOConfig",
    "DPODataCollator",
    "DPOTrainer",
    "GROUPED_DPO_LOSS_TYPES",
    "RankedDataArguments",
    "RunningMoments",
    "TextRewardModel",
    "add_frozen_reference_adapter",
    "bnb_4bit_config",
    "is_4bit",
    "load_policy",
    "lora_config",
    "dpo_pair_losses",
    "weighted_mean",
    "PAIR_STRATEGIES",
    "BertClsRewardConfig",
    "BertClsRewardModel",
    "PairEncoding",
    "RankingStats",
    "RewardConfig",
    "RewardDataCollator",
    "RewardTrainer",
    "bradley_terry_loss",
    "encode_prompt_response",
    "group_ranking_metrics",
    "grouped_bradley_terry_loss",
    "is_encoder_config",
    "is_ranked_dataset",
    "kendall_tau",
    "load_hh_rlhf",
    "load_oasst_ranked",
    "load_preference_file",
    "pair_accuracy",
    "pairwise_auc",
    "rank_pairs",
    "ranked_to_pairs",
    "ranks_from_scores",
    "render_messages",
    "spearman",
    "top1_correct",
    "validate_ranked_example",
]
