# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Preference data: the ranked format (validation, ranking-to-pairs expansion, statistics), local files, and loaders
for the public OpenAssistant and HH-RLHF files. Imports neither TRL's trainers nor torch."""

from .files import load_preference_file, read_json_records
from .public import load_hh_rlhf, load_oasst_ranked
from .ranked import (
    ON_INVALID_ROWS,
    PAIR_STRATEGIES,
    RANKED_COLUMNS,
    WEIGHTINGS,
    RankingStats,
    check_ranked_columns,
    check_weight,
    is_ranked_dataset,
    rank_pairs,
    ranked_to_pairs,
    ranks_from_scores,
    validate_ranked_example,
)
