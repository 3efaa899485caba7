# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Ranked data in trainers, written once for `RewardTrainer` and `DPOTrainer`: the config fields, the dataset
preparation (validate, skip and count, tokenize per trainer) and the collation of whole groups into one row per
completion with the pair indices of the grouped loss."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate.utils import gather_object
from datasets import Dataset, IterableDataset

from .. import _trl_compat as compat
from ..data import (
    ON_INVALID_ROWS,
    PAIR_STRATEGIES,
    check_ranked_columns,
    check_weight,
    rank_pairs,
    ranked_to_pairs,
    validate_ranked_example,
)
from ..data.ranked import is_empty_completion
from ..metrics import group_ranking_metrics
from .config_utils import resolve_bf16

logger = logging.getLogger(__name__)

RANKED_TRAINING_MODES = ("grouped", "pairwise")
RANKED_LOSSES = ("bradley_terry", "plackett_luce")

#: Batch keys of grouped and weighted batches that the model must not see.
GROUP_KEYS = ("pair_index", "pair_group", "pair_weight", "group_weight", "completion_group", "ranks")


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
        ranked_loss (`str`, defaults to `"bradley_terry"`):
            Grouped training: `"bradley_terry"`, the mean of −log σ(s_better − s_worse) over a ranking's pairs, or
            `"plackett_luce"`, the negative log-likelihood of the whole ranking (`plackett_luce_loss`). Equal at K=2.
            The score s is the reward (RewardTrainer) or DPO's implicit reward β·log π/π_ref (DPOTrainer).
        ranked_loss_top_k (`int`, *optional*): Plackett-Luce over the top k positions of each ranking only.
        ndcg_k (`int`, *optional*, defaults to `3`): also log `rm/ndcg@k` on ranked data.
        allow_empty_completions (`bool`, defaults to `True`):
            Accept an empty completion that is ranked strictly above or below another one (counted in the stats).
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
        metadata={"help": "Malformed ranked rows: 'raise' or 'skip' (counted and logged).",
                  "choices": list(ON_INVALID_ROWS)},
    )
    ranked_loss: str = field(
        default="bradley_terry",
        metadata={"help": "Grouped training loss on ranked data: 'bradley_terry' (all pairs of a ranking, "
                  "InstructGPT) or 'plackett_luce' (the listwise likelihood of the whole ranking).",
                  "choices": list(RANKED_LOSSES)},
    )
    ranked_loss_top_k: int | None = field(
        default=None,
        metadata={"help": "With ranked_loss='plackett_luce': only the top k positions of each ranking contribute "
                  "(for long lists whose tail is unreliable). None: all."},
    )
    ndcg_k: int | None = field(
        default=3, metadata={"help": "Also log rm/ndcg@k on ranked data (rm/ndcg is always logged). None: off."},
    )
    allow_empty_completions: bool = field(
        default=True,
        metadata={"help": "An empty completion is valid when it is ranked strictly above or below another completion "
                  "(e.g. a model that answered nothing, ranked worst). False refuses empty completions."},
    )

    def __post_init__(self):
        self._validate_ranked_fields()
        resolve_bf16(self)  # TRL's bf16=None: bf16 where the device computes it natively, not an error on a CPU
        super().__post_init__()

    def _validate_ranked_fields(self) -> None:
        name = type(self).__name__
        for field_name, valid in (
            ("ranked_training", RANKED_TRAINING_MODES),
            ("pair_strategy", PAIR_STRATEGIES),
            ("on_invalid_rows", ON_INVALID_ROWS),
            ("ranked_loss", RANKED_LOSSES),
        ):
            if getattr(self, field_name) not in valid:
                raise ValueError(f"{name}.{field_name}={getattr(self, field_name)!r} is not one of {list(valid)}.")
        for field_name in ("ranked_loss_top_k", "ndcg_k"):
            value = getattr(self, field_name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}.{field_name} must be a positive integer or None, got {value!r}.")
        if self.ranked_loss == "plackett_luce" and self.ranked_training != "grouped":
            raise ValueError(f"{name}: ranked_loss='plackett_luce' is listwise and needs ranked_training='grouped' "
                             f"(got {self.ranked_training!r}).")
        if self.ranked_loss_top_k is not None and self.ranked_loss != "plackett_luce":
            raise ValueError(f"{name}.ranked_loss_top_k applies to ranked_loss='plackett_luce' only.")


# --------------------------------------------------------------------------------------------------------------------
# Group index tensors
# --------------------------------------------------------------------------------------------------------------------


def group_pair_tensors(
    all_ranks: list[list[int]],
    pair_strategy: str,
    group_weights: list[float] | None = None,
    rows: list[list[int]] | None = None,
) -> dict[str, torch.Tensor]:
    """Index tensors describing a batch of groups whose completions are flattened into consecutive rows.

    Returns `ranks` and `completion_group` `[N]`, `pair_index` `[P, 2]` (better row, worse row), `pair_group` `[P]`,
    `group_weight` `[G]` (1 without `group_weights`) and `pair_weight` `[P]` = w_g / (pairs of the pair's group), with
    which a weighted mean over pairs is the weighted mean over groups of each group's mean. With `rows` (the token ids
    of each row as the model sees them), a pair whose two rows are identical is left out: it carries no preference
    (its loss is a constant, ln 2 for DPO) and only dilutes the group's mean.
    """
    ranks, completion_group, pair_index, pair_group = [], [], [], []
    for group, group_ranks in enumerate(all_ranks):
        offset = len(ranks)
        ranks += list(group_ranks)
        completion_group += [group] * len(group_ranks)
        pairs, _ = rank_pairs(group_ranks, pair_strategy)
        if rows is not None:
            pairs = [(b, w) for b, w in pairs if rows[offset + b] != rows[offset + w]]
        pair_index += [(offset + better, offset + worse) for better, worse in pairs]
        pair_group += [group] * len(pairs)
    pair_group_t = torch.tensor(pair_group, dtype=torch.long)
    weights = torch.tensor([1.0] * len(all_ranks) if group_weights is None else group_weights, dtype=torch.float)
    return {
        "ranks": torch.tensor(ranks, dtype=torch.float),
        "completion_group": torch.tensor(completion_group, dtype=torch.long),
        "pair_index": torch.tensor(pair_index, dtype=torch.long).view(-1, 2),
        "pair_group": pair_group_t,
        "group_weight": weights,
        "pair_weight": weights[pair_group_t] * group_pair_weights(pair_group_t) if pair_group else weights[:0],
    }


def identical_pairs(rows: list[list[int]], ranks: list[int], pair_strategy: str) -> tuple[int, int]:
    """`(identical, total)`: how many of a group's pairs have two identical rows (e.g. completions that differ only
    after `max_length`), and how many pairs it has."""
    pairs, _ = rank_pairs(ranks, pair_strategy)
    return sum(rows[b] == rows[w] for b, w in pairs), len(pairs)


def truncate_rows(prompt_ids: list[int] | None, completion_ids: list[list[int]], max_length: int | None,
                  truncation_mode: str = "keep_start") -> tuple[list[list[int]], list[list[int]] | None]:
    """The rows of one group as the model sees them, and (with a prompt) their completion masks: prompt + completion,
    truncated to `max_length` as TRL's DPO collator truncates (`keep_start` | `keep_end`)."""
    if prompt_ids is None:
        return [list(c) for c in completion_ids], None
    prompt = list(prompt_ids)
    rows = [prompt + list(c) for c in completion_ids]
    masks = [[0] * len(prompt) + [1] * len(c) for c in completion_ids]
    if max_length is not None:
        keep = slice(-max_length, None) if truncation_mode == "keep_end" else slice(None, max_length)
        rows, masks = [r[keep] for r in rows], [m[keep] for m in masks]
    return rows, masks


def group_pair_weights(pair_group: torch.Tensor, dtype: torch.dtype = torch.float) -> torch.Tensor:
    """1 / (number of pairs of the pair's group): with these, a weighted mean over pairs is the mean over groups."""
    counts = torch.bincount(pair_group)
    return 1.0 / counts.to(dtype)[pair_group]


def ranked_status(ranks: list[int], pair_strategy: str) -> str:
    """`ok`, or why a validated group cannot be trained (`skipped_small_group`, `skipped_all_tied`)."""
    if len(ranks) < 2:
        return "skipped_small_group"
    if not rank_pairs(ranks, pair_strategy)[0]:
        return "skipped_all_tied"
    return "ok"


# --------------------------------------------------------------------------------------------------------------------
# Collation
# --------------------------------------------------------------------------------------------------------------------


def collate_ranked(
    examples: list[dict[str, Any]],
    pad_token_id: int,
    pair_strategy: str,
    pad_to_multiple_of: int | None = None,
    max_length: int | None = None,
    truncation_mode: str = "keep_start",
) -> dict[str, torch.Tensor]:
    """One right-padded row per completion of every group in `examples`, plus the group tensors of
    [`group_pair_tensors`] (pairs of identical rows left out).

    Each example has `completion_ids` (one id list per completion), `ranks` and optionally `weight` (the group's).
    With `prompt_ids` (DPO), a row is prompt + completion with `completion_mask` 1 on the completion, truncated to
    `max_length` as TRL's DPO collator truncates (`keep_start` | `keep_end`); without (reward models),
    `completion_ids` are whole sequences already. `completion_token_type_ids`, when present, become `token_type_ids`.
    """
    sequences: list[list[int]] = []
    masks: list[list[int]] = []
    with_prompt = "prompt_ids" in examples[0]
    for example in examples:
        rows, row_masks = truncate_rows(example["prompt_ids"] if with_prompt else None, example["completion_ids"],
                                        max_length, truncation_mode)
        sequences += rows
        masks += row_masks or []

    def pad_right(rows: list[list[int]], value: int) -> torch.Tensor:
        return compat.pad([torch.tensor(r, dtype=torch.long) for r in rows], padding_value=value,
                          pad_to_multiple_of=pad_to_multiple_of)

    output = {
        "input_ids": pad_right(sequences, pad_token_id),
        "attention_mask": pad_right([[1] * len(s) for s in sequences], 0),
    }
    if with_prompt:
        output["completion_mask"] = pad_right(masks, 0)
    identity = sequences
    if "completion_token_type_ids" in examples[0]:
        type_ids = [list(ids) for ex in examples for ids in ex["completion_token_type_ids"]]
        output["token_type_ids"] = pad_right(type_ids, 0)
        identity = [s + [-1] + t for s, t in zip(sequences, type_ids)]
    group_weights = [float(ex["weight"]) for ex in examples] if "weight" in examples[0] else None
    output.update(group_pair_tensors([ex["ranks"] for ex in examples], pair_strategy, group_weights, identity))
    return output


@dataclass
class RankedCollatorMixin:
    """Mixed into TRL's preference collators: ranked examples are collated by [`collate_ranked`]; pairwise
    examples go to TRL's collator, plus `pair_index` and `pair_weight` when they carry a `weight` column."""

    pair_strategy: str = "all"

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if "completion_ids" in examples[0]:
            return collate_ranked(
                examples, self.pad_token_id, self.pair_strategy, self.pad_to_multiple_of,
                max_length=getattr(self, "max_length", None),
                truncation_mode=getattr(self, "truncation_mode", "keep_start"),
            )
        output = super().torch_call(examples)
        if "weight" in examples[0]:  # rows are [chosen..., rejected...]: pair i is rows (i, n + i)
            n = len(examples)
            output["pair_index"] = torch.stack([torch.arange(n), torch.arange(n, 2 * n)], dim=1)
            output["pair_weight"] = torch.tensor([float(ex["weight"]) for ex in examples])
        return output


# --------------------------------------------------------------------------------------------------------------------
# Dataset preparation
# --------------------------------------------------------------------------------------------------------------------


def map_kwargs(dataset: Dataset | IterableDataset, args: Any, desc: str) -> dict[str, Any]:
    """`num_proc` and `desc` for `Dataset.map`; `IterableDataset.map` takes neither."""
    if isinstance(dataset, Dataset):
        return {"num_proc": args.dataset_num_proc, "desc": desc}
    return {}


_SKIP_REASONS = {
    "invalid": "invalid rows",
    "skipped_small_group": "groups with K<2",
    "skipped_all_tied": "all-tied groups",
    "dropped_prompt_too_long": "groups whose prompt fills max_length",
    "skipped_identical_after_truncation": "groups whose completions are identical after truncation",
    "identical_pairs_after_truncation": "pairs left out as identical after truncation",
    "truncated_completions": "completions truncated",
    "dropped_too_long_completions": "completions longer than max_length left out",
    "skipped_too_long": "groups left without a pair by them",
    "invalid_weight": "pairs with an invalid weight",
}


class RankedDataMixin:
    """Preference-data preparation shared by our RewardTrainer and DPOTrainer.

    * `_check_preference_columns`: ranked (`completions` + `ranks` | `scores`) or pairwise (`chosen`, `rejected`),
      else one error naming the columns found.
    * `_prepare_ranked` validates every row (errors name the user's row index and field), skips and counts invalid
      rows (with `on_invalid_rows="skip"`), groups with K < 2 and all-tied groups, hands the trainable groups to the
      trainer's `_tokenize_ranked`, leaves out pairs whose two completions are identical as the model sees them (after
      truncation) and groups left without a pair, records the counts in `self.ranking_stats[dataset_name]`, prints one
      summary line at WARNING when anything was skipped or truncated, and refuses a dataset with no trainable group.
      Works on `Dataset` and streaming `IterableDataset` (counts are only known for the former).
    * `_expand_ranked` is the `ranked_training="pairwise"` path: weighted pairs from [`ranked_to_pairs`].
    * `_check_pair_weights`: a pairwise `weight` column must be finite and >= 0 (raise, or skip and count).
    """

    ranking_stats: dict[str, Counter]

    def _tokenize_ranked(self, dataset, processing_class, args, dataset_name) -> tuple[Any, Counter]:
        """Trainer-specific: token ids of the kept groups (`completion_ids`, `ranks`, ...) and extra counts."""
        raise NotImplementedError

    def _ranked_rows(self, example: dict, args: Any) -> list[list[int]]:
        """The token ids of each completion row of a tokenized group, as the model will see them (truncated)."""
        rows, _ = truncate_rows(example.get("prompt_ids"), example["completion_ids"], getattr(args, "max_length", None),
                                getattr(args, "truncation_mode", "keep_start"))
        if "completion_token_type_ids" in example:
            rows = [r + [-1] + list(t) for r, t in zip(rows, example["completion_token_type_ids"])]
        return rows

    @staticmethod
    def _check_preference_columns(columns: list[str], dataset_name: str) -> bool:
        """True for ranked data, False for pairwise data; a clear error for anything else."""
        if "completions" in columns or "ranks" in columns or "scores" in columns:
            check_ranked_columns(columns)
            return True
        if not ("chosen" in columns and "rejected" in columns):
            raise ValueError(
                f"The {dataset_name} dataset has neither pairwise columns ('chosen', 'rejected', optional 'prompt') "
                f"nor ranked columns ('prompt', 'completions', 'ranks' or 'scores'); found columns: {columns}"
            )
        return False

    def _prepare_ranked(self, dataset, processing_class, args, dataset_name):
        skip_invalid = args.on_invalid_rows == "skip"
        pair_strategy = args.pair_strategy
        allow_empty = args.allow_empty_completions
        first_error: list[str] = []

        def classify(example: dict, index: int) -> dict:
            try:
                ranks = validate_ranked_example(example, index, allow_empty)
            except ValueError as err:
                if not skip_invalid:
                    raise
                logger.debug("%s: skipping %s", dataset_name, err)
                first_error[:] = first_error or [str(err)]  # shown in the summary (single-process map)
                return {"ranks": [], "_status": "invalid", "_empty": 0}
            return {"ranks": ranks, "_status": ranked_status(ranks, pair_strategy),
                    "_empty": sum(map(is_empty_completion, example["completions"]))}

        dataset = dataset.map(classify, with_indices=True,
                              **map_kwargs(dataset, args, f"Validating ranked {dataset_name} dataset"))
        counts: Counter = Counter(dataset["_status"]) if isinstance(dataset, Dataset) else Counter()
        if isinstance(dataset, Dataset):
            counts["empty_completions"] = sum(dataset["_empty"])
        dataset = dataset.filter(lambda status: status == "ok", input_columns="_status")
        dataset = dataset.remove_columns(["_status", "_empty"])
        if isinstance(dataset, Dataset) and len(dataset) == 0:
            self._report_ranked(dataset_name, counts, first_error[0] if first_error else None)  # raises
        dataset, extra = self._tokenize_ranked(dataset, processing_class, args, dataset_name)
        counts.update(extra)

        def mark_identical(example: dict) -> dict:
            identical, total = identical_pairs(self._ranked_rows(example, args), example["ranks"], pair_strategy)
            return {"_identical": identical, "_pairs": total}

        dataset = dataset.map(mark_identical, **map_kwargs(dataset, args, f"Checking {dataset_name} pairs"))
        if isinstance(dataset, Dataset):
            identical, pairs = dataset["_identical"], dataset["_pairs"]
            counts["skipped_identical_after_truncation"] = sum(i == p for i, p in zip(identical, pairs))
            counts["identical_pairs_after_truncation"] = sum(i for i, p in zip(identical, pairs) if i < p)
        dataset = dataset.filter(lambda identical, pairs: identical < pairs, input_columns=["_identical", "_pairs"])
        dataset = dataset.remove_columns(["_identical", "_pairs"])
        if isinstance(dataset, Dataset):
            counts["ok"] = len(dataset)
            self.ranking_stats[dataset_name] = +counts
            self._report_ranked(dataset_name, counts, first_error[0] if first_error else None)
        return dataset

    @staticmethod
    def _report_ranked(dataset_name: str, counts: Counter, first_error: str | None) -> None:
        skipped = {key: counts[key] for key in _SKIP_REASONS if counts[key]}
        details = ", ".join(f"{n} {_SKIP_REASONS[key]}" for key, n in skipped.items())
        if first_error:
            details += f" (first invalid: {first_error})"
        if counts["ok"] == 0:
            raise ValueError(f"The {dataset_name} dataset has no trainable ranked group: {details or 'it is empty'}. "
                             "A group needs at least two completions with different ranks.")
        logger.info("%s ranked dataset: %s", dataset_name, dict(counts))
        if skipped:
            logger.warning("%s dataset: %d ranked groups kept; %s.", dataset_name, counts["ok"], details)

    def _log_ranking_metrics(self, rewards, ranks, completion_group, metrics, k: int | None = None) -> None:
        """`rm/kendall_tau`, `rm/spearman`, `rm/top1_accuracy`, `rm/ndcg` (and `rm/ndcg@k`) of one batch's groups,
        means over groups; gathered as Python objects since groups differ in size across processes."""
        num_groups = int(completion_group.max().item()) + 1
        rewards_cpu, ranks_cpu = rewards.float().cpu().tolist(), ranks.cpu().tolist()
        per_group, start = [], 0
        for size in torch.bincount(completion_group, minlength=num_groups).tolist():
            per_group.append(group_ranking_metrics(rewards_cpu[start : start + size], ranks_cpu[start : start + size],
                                                   k))
            start += size
        for values in gather_object(per_group) if self.accelerator.num_processes > 1 else per_group:
            for key, value in values.items():
                if value == value:  # NaN when undefined for the group (e.g. all gold ranks tied)
                    metrics[f"rm/{key}"].append(value)

    def _expand_ranked(self, dataset, args, dataset_name):
        pairs, stats = ranked_to_pairs(dataset, pair_strategy=args.pair_strategy, weighting="group",
                                       on_invalid_rows=args.on_invalid_rows, allow_empty=args.allow_empty_completions)
        if isinstance(dataset, Dataset):
            dropped = stats.skipped_small_groups + stats.skipped_all_tied + stats.skipped_invalid
            if stats.groups == 0:
                raise ValueError(f"The {dataset_name} dataset has no trainable ranked group: {stats.summary()}")
            (logger.warning if dropped else logger.info)("%s dataset: %s", dataset_name, stats.summary())
        return pairs

    def _check_pair_weights(self, dataset, args, dataset_name):
        """A pairwise `weight` column: every value finite and >= 0 (raise naming the row, or skip and count)."""
        if "weight" not in compat.dataset_column_names(dataset):
            return dataset
        skip = args.on_invalid_rows == "skip"

        def valid(weight: Any, index: int) -> bool:
            try:
                check_weight(weight, index)
            except ValueError:
                if not skip:
                    raise
                return False
            return True

        kept = dataset.filter(valid, input_columns="weight", with_indices=True,
                              **map_kwargs(dataset, args, f"Checking {dataset_name} weights"))
        if isinstance(dataset, Dataset) and len(kept) < len(dataset):
            self.ranking_stats.setdefault(dataset_name, Counter())["invalid_weight"] = len(dataset) - len(kept)
            logger.warning("%s dataset: skipped %d pairs with an invalid weight (weights must be finite and >= 0).",
                           dataset_name, len(dataset) - len(kept))
            if len(kept) == 0:
                raise ValueError(f"The {dataset_name} dataset has no pair with a valid weight.")
        return kept
