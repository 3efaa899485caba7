"""trl_ext: thin extensions of Hugging Face TRL for RLHF.

Change `from trl import RewardTrainer, RewardConfig` to `from trl_ext import RewardTrainer, RewardConfig` and keep the
rest of your code; ranked data, encoder ([CLS]) reward models and ranking metrics come on top.
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
from .losses import bradley_terry_loss, grouped_bradley_terry_loss
from .metrics import group_ranking_metrics, kendall_tau, pair_accuracy, pairwise_auc, spearman, top1_correct
from .reward_head import (
    BertClsRewardConfig,
    BertClsRewardModel,
    PairEncoding,
    encode_prompt_response,
    is_encoder_config,
    render_messages,
)
from .reward_trainer import RewardConfig, RewardDataCollator, RewardTrainer

__version__ = "0.1.0"

__all__ = [
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
