"""Pieces shared by every trainer that accepts ranked data: config fields and group collation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .data import PAIR_STRATEGIES, rank_pairs

RANKED_TRAINING_MODES = ("grouped", "pairwise")


@dataclass
class RankedDataArguments:
    """Config fields for ranked data (`prompt`, `completions`, `ranks` | `scores`), mixed into our TRL configs.

    Parameters:
        ranked_training (`str`, defaults to `"grouped"`):
            `"grouped"`: a batch holds whole groups (`per_device_train_batch_size` counts prompts), each completion is
            forwarded once and the loss is the mean over groups of the mean over the group's pairs (InstructGPT).
            `"pairwise"`: expand to weighted (chosen, rejected) pairs first (2 forwards per pair).
        pair_strategy (`str`, defaults to `"all"`):
            Which pairs a ranking yields: `"all"` C(K,2) (ties excluded), `"best_vs_rest"`, or `"adjacent"`.
        on_invalid_rows (`str`, defaults to `"raise"`):
            Malformed ranked rows: `"raise"` a `ValueError` naming the row and field, or `"skip"` and count them.
    """

    ranked_training: str = field(
        default="grouped",
        metadata={"help": "Ranked data: 'grouped' (each completion forwarded once) or 'pairwise' (expand to pairs).",
                  "choices": list(RANKED_TRAINING_MODES)},
    )
    pair_strategy: str = field(
        default="all",
        metadata={"help": "Pairs taken from a ranking: 'all', 'best_vs_rest' or 'adjacent'.",
                  "choices": list(PAIR_STRATEGIES)},
    )
    on_invalid_rows: str = field(
        default="raise",
        metadata={"help": "Malformed ranked rows: 'raise' or 'skip' (counted and logged).", "choices": ["raise", "skip"]},
    )

    def _validate_ranked_fields(self) -> None:
        for name, valid in (
            ("ranked_training", RANKED_TRAINING_MODES),
            ("pair_strategy", PAIR_STRATEGIES),
            ("on_invalid_rows", ("raise", "skip")),
        ):
            if getattr(self, name) not in valid:
                raise ValueError(f"{type(self).__name__}.{name}={getattr(self, name)!r} is not one of {list(valid)}.")


def group_pair_tensors(all_ranks: list[list[int]], pair_strategy: str) -> dict[str, torch.Tensor]:
    """Index tensors describing a batch of groups whose completions are flattened into consecutive rows.

    Returns `ranks` and `completion_group` `[N]`, `pair_index` `[P, 2]` (better row, worse row) and `pair_group` `[P]`.
    """
    ranks, completion_group, pair_index, pair_group = [], [], [], []
    for group, group_ranks in enumerate(all_ranks):
        offset = len(ranks)
        ranks += list(group_ranks)
        completion_group += [group] * len(group_ranks)
        pairs, _ = rank_pairs(group_ranks, pair_strategy)
        pair_index += [(offset + better, offset + worse) for better, worse in pairs]
        pair_group += [group] * len(pairs)
    return {
        "ranks": torch.tensor(ranks, dtype=torch.float),
        "completion_group": torch.tensor(completion_group, dtype=torch.long),
        "pair_index": torch.tensor(pair_index, dtype=torch.long).view(-1, 2),
        "pair_group": torch.tensor(pair_group, dtype=torch.long),
    }


def group_pair_weights(pair_group: torch.Tensor, dtype: torch.dtype = torch.float) -> torch.Tensor:
    """1 / (number of pairs of the pair's group): with these, a weighted mean over pairs is the mean over groups."""
    counts = torch.bincount(pair_group)
    return 1.0 / counts.to(dtype)[pair_group]


def ranked_status(example: dict[str, Any], ranks: list[int], pair_strategy: str) -> str:
    """`ok`, or why a validated group cannot be trained (`skipped_small_group`, `skipped_all_tied`)."""
    if len(ranks) < 2:
        return "skipped_small_group"
    if not rank_pairs(ranks, pair_strategy)[0]:
        return "skipped_all_tied"
    return "ok"
