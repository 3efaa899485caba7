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
import torch.nn.functional as F
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
from ..metrics import batched_ranking_metrics, pairwise_auc_tensor, ranking_metric_names
from .config_utils import resolve_bf16

logger = logging.getLogger(__name__)

RANKED_TRAINING_MODES = ("grouped", "pairwise")
RANKED_LOSSES = ("bradley_terry", "plackett_luce")

#: Batch keys of grouped and weighted batches that the model must not see.
GROUP_KEYS = ("pair_index", "pair_group", "pair_weight", "group_weight", "completion_group", "ranks", "group_rows")


@dataclass
class RankedDataArguments:
    """Config fields for ranked data (`prompt`, `completions`, `ranks` | `scores`), mixed into our TRL configs.

    Parameters:
        ranked_training (`str`, defaults to `"grouped"`):
            `"grouped"`: a batch holds whole groups (`per_device_train_batch_size` counts prompts), each completion is
            forwarded once and the loss is the mean over groups of the mean over the group's pairs (InstructGPT).
            `"pairwise"`: expand to weighted (chosen, rejected) pairs first (2 forwards per pair).
        pair_strategy (`str`, defaults to `"all"`):
            Which pairs a ranking yields: `"all"` C(K,2) (ties excluded), `"best_vs_rest"`, or `"adjacent"`. The
            Bradley-Terry loss's pairs; with `ranked_loss="plackett_luce"` only `"all"` is accepted (the listwise loss
            uses the whole ranking).
        on_invalid_rows (`str`, defaults to `"raise"`):
            Malformed rows (ranked rows, pairwise `weight` and, with `allow_empty_completions=False`, empty pairs):
            `"raise"` a `ValueError` naming the row and field, or `"skip"` and count them.
        ranked_loss (`str`, defaults to `"bradley_terry"`):
            Grouped training: `"bradley_terry"`, the mean of −log σ(s_better − s_worse) over a ranking's pairs, or
            `"plackett_luce"`, the negative log-likelihood of the whole ranking (`plackett_luce_loss`). Equal at K=2.
            The score s is the reward (RewardTrainer) or DPO's implicit reward β·log π/π_ref (DPOTrainer).
        ranked_loss_top_k (`int`, *optional*): Plackett-Luce over the top k positions of each ranking only.
        ndcg_k (`int`, *optional*, defaults to `3`): also log `rm/ndcg@k` on ranked data.
        allow_empty_completions (`bool`, defaults to `True`):
            Accept empty completions (counted in the stats): ranked above or below another one an empty answer is a
            preference, tied it is a tie. `False` refuses them, in ranked data and in pairwise `chosen` / `rejected`
            alike: an error naming the row, or with `on_invalid_rows="skip"` a skipped, counted row.
    """

    ranked_training: str = field(
        default="grouped",
        metadata={"help": "Ranked data: 'grouped' (each completion forwarded once) or 'pairwise' (expand to pairs).",
                  "choices": list(RANKED_TRAINING_MODES)},
    )
    pair_strategy: str = field(
        default="all",
        metadata={"help": "Pairs taken from a ranking: 'all', 'best_vs_rest' or 'adjacent' (Bradley-Terry; "
                  "ranked_loss='plackett_luce' uses the whole ranking and accepts only 'all').",
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
        metadata={"help": "Accept empty completions (e.g. a model that answered nothing, ranked worst; tied, a tie). "
                  "False refuses them in ranked and pairwise data (raise naming the row, or skip and count with "
                  "on_invalid_rows='skip')."},
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
            # bool is an int: True would silently mean k=1
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}.{field_name} must be a positive integer or None, got {value!r}.")
        if self.ranked_loss == "plackett_luce" and self.ranked_training != "grouped":
            raise ValueError(f"{name}: ranked_loss='plackett_luce' is listwise and needs ranked_training='grouped' "
                             f"(got {self.ranked_training!r}).")
        if self.ranked_loss == "plackett_luce" and self.pair_strategy != "all":
            raise ValueError(f"{name}: pair_strategy={self.pair_strategy!r} has no effect with "
                             "ranked_loss='plackett_luce', whose listwise loss uses the whole ranking; leave "
                             "pair_strategy at 'all', or use ranked_loss='bradley_terry' to train on those pairs.")
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
    `group_weight` `[G]` (1 without `group_weights`), `pair_weight` `[P]` = w_g / (pairs of the pair's group), with
    which a weighted mean over pairs is the weighted mean over groups of each group's mean, and `group_rows` `[G, K]`
    (K the largest group; the rows of group g, padded with -1), the layout of the batched ranking metrics. The shapes
    carry G and K, so the training step never asks the device for them. With `rows` (the token ids of each row as the
    model sees them), a pair whose two rows are identical is left out: it carries no preference (its loss is a
    constant, ln 2 for DPO) and only dilutes the group's mean.
    """
    ranks, completion_group, pair_index, pair_group, group_rows = [], [], [], [], []
    width = max((len(group_ranks) for group_ranks in all_ranks), default=0)
    for group, group_ranks in enumerate(all_ranks):
        offset = len(ranks)
        ranks += list(group_ranks)
        completion_group += [group] * len(group_ranks)
        group_rows.append(list(range(offset, offset + len(group_ranks))) + [-1] * (width - len(group_ranks)))
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
        "group_rows": torch.tensor(group_rows, dtype=torch.long).view(len(all_ranks), width),
    }


def group_rows_from_groups(completion_group: torch.Tensor) -> torch.Tensor:
    """`group_rows` `[G, K]` of [`group_pair_tensors`] from `completion_group` `[N]` (consecutive rows per group), for
    batches collated without it; reads G and K from the device (a host sync)."""
    sizes = torch.bincount(completion_group).tolist()
    width, starts = max(sizes, default=0), [sum(sizes[:g]) for g in range(len(sizes))]
    rows = [list(range(start, start + size)) + [-1] * (width - size) for start, size in zip(starts, sizes)]
    return torch.tensor(rows, dtype=torch.long, device=completion_group.device).view(len(sizes), width)


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
# Ranking metrics, accumulated on the device
# --------------------------------------------------------------------------------------------------------------------


class RankingMetricBuffer:
    """What the `rm/*` metrics of one mode are computed from, kept on the device between logging steps.

    `add_groups` stores a step's scores and gold ranks in the `[G, K]` layout of the batch's `group_rows` (a few
    indexing ops, no host sync); `add_pairs` stores (chosen, rejected) scores of pairwise evaluation. `pop` computes
    [`batched_ranking_metrics`] once for every buffered group and returns per-metric sums and counts over groups (so
    processes can add theirs), and [`pairwise_auc_tensor`] over the pairs, still on the device. Buffered groups are
    folded into the sums whenever they reach `fold_elements` pairwise comparisons (G·K²), which bounds the memory of a
    long evaluation or a run that never logs.
    """

    def __init__(self, k: int | None, fold_elements: int = 1 << 20):
        self.k = k
        self.names = ranking_metric_names(k)
        self.fold_elements = fold_elements
        self._groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._pending = 0  # G·K² of the buffered groups (host-side: shapes only)
        self._totals: torch.Tensor | None = None  # [2, M]: sum and count over groups of each metric
        self._pairs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def empty(self) -> bool:
        return not (self._groups or self._pairs) and self._totals is None

    def add_groups(self, scores: torch.Tensor, ranks: torch.Tensor, group_rows: torch.Tensor) -> None:
        """`scores`, `ranks`: `[N]` per row; `group_rows`: `[G, K]` row indices, -1 on padding."""
        mask = group_rows >= 0
        index = group_rows.clamp(min=0)
        self._groups.append((scores.detach()[index], ranks.detach()[index], mask))
        self._pending += group_rows.shape[0] * group_rows.shape[1] ** 2
        if self._pending >= self.fold_elements:
            self._fold()

    def add_pairs(self, chosen: torch.Tensor, rejected: torch.Tensor) -> None:
        self._pairs.append((chosen.detach().reshape(-1), rejected.detach().reshape(-1)))

    def _fold(self) -> None:
        if not self._groups:
            return
        width = max(scores.shape[1] for scores, _, _ in self._groups)

        def padded(i: int) -> torch.Tensor:  # steps with smaller groups: pad to the widest (mask False there)
            return torch.cat([F.pad(entry[i], (0, width - entry[i].shape[1])) for entry in self._groups])

        scores, ranks, mask = padded(0), padded(1), padded(2)
        self._groups, self._pending = [], 0
        chunk = max(1, self.fold_elements // max(1, width * width))
        for start in range(0, scores.shape[0], chunk):
            part = slice(start, start + chunk)
            values = batched_ranking_metrics(scores[part], ranks[part], mask[part], self.k)
            values = torch.stack([values[name] for name in self.names])  # [M, G]
            broken = (torch.isnan(scores[part].to(values.dtype)) & mask[part]).any(dim=1)
            # undefined values (NaN for a well-formed group) are left out; a NaN score makes the mean NaN, visibly
            counted = ~torch.isnan(values) | broken
            totals = torch.stack([torch.where(counted, values, torch.zeros_like(values)).sum(dim=1),
                                  counted.sum(dim=1).to(values.dtype)])
            self._totals = totals if self._totals is None else self._totals + totals

    def pop(self) -> tuple[list[str], torch.Tensor | None, torch.Tensor | None]:
        """`(names, totals, auc)` and an empty buffer: `totals` `[2, M]` (sums, counts) over the buffered groups or
        None, `auc` a 0-dim tensor over the buffered pairs or None; all on the device."""
        self._fold()
        totals, self._totals = self._totals, None
        auc = None
        if self._pairs:
            auc = pairwise_auc_tensor(torch.cat([c for c, _ in self._pairs]), torch.cat([r for _, r in self._pairs]))
            self._pairs = []
        return self.names, totals, auc


# --------------------------------------------------------------------------------------------------------------------
# Dataset preparation
# --------------------------------------------------------------------------------------------------------------------


def dataset_columns(dataset: Dataset | IterableDataset, dataset_name: str) -> list[str]:
    """Column names of a dataset; a stream with no row at all (whose columns TRL reads from its first row) is an
    error that says so, not a bare `StopIteration`."""
    try:
        return compat.dataset_column_names(dataset)
    except StopIteration:
        raise ValueError(f"The {dataset_name} dataset (streamed) is empty: it yields no row.") from None


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
    "identical_completions_left_out": "completions identical after truncation to a better-ranked one, left out of the "
                                      "Plackett-Luce loss",
    "truncated_completions": "completions truncated",
    "dropped_too_long_completions": "completions longer than max_length left out",
    "skipped_too_long": "groups left without a pair by them",
    "invalid_weight": "pairs with an invalid weight",
    "empty_completion": "pairs with an empty completion (allow_empty_completions=False)",
    "identical_pairs": "pairs identical after truncation left out",
    "dropped_for_max_length": "pairs left out for max_length",
}
# Counted per pair on the pairwise path: what went in and neither came out nor was counted was dropped by TRL's
# own length filter (a prompt that fills max_length, a pair longer than it).
_PAIR_SKIPS = ("invalid_weight", "empty_completion", "identical_pairs")


def skip_details(counts: Counter, first_error: str | None = None) -> str:
    """The non-zero skip counts, in words, in a fixed order (and the first invalid row's error)."""
    details = ", ".join(f"{counts[key]} {label}" for key, label in _SKIP_REASONS.items() if counts[key])
    if first_error:
        details += f" (first invalid: {first_error})"
    return details


class StreamReport:
    """What the preparation of a streamed (`IterableDataset`) data set leaves out, counted as the stream is read.

    A stream's counts are not known before training, so the preparation's map/filter steps add to `counts` as rows go
    through them, and [`counted_stream`], the last step, counts the rows kept and opens and closes each pass over the
    data (an epoch; a look at the first rows opens one that never closes). The first skip is logged at WARNING when it
    happens, and each completed pass logs one line of totals by reason (when anything was left out) and stores them in
    the trainer's `ranking_stats`. A completed pass that kept nothing raises with the counts: a run must not end after
    zero steps without saying why. `error()` is the same error for a stream found empty while the trainer is built.
    """

    def __init__(self, dataset_name: str, stats: dict[str, Counter], unit: str = "ranked groups",
                 pairwise: bool = False) -> None:
        self.dataset_name = dataset_name
        self.stats = stats
        self.unit = unit
        self.pairwise = pairwise
        self.counts: Counter = Counter()
        self.passes = 0
        self.first_error: str | None = None
        self._warned = False
        self._trackers: list[tuple[Any, dict[str, int]]] = []

    def add(self, key: str, n: int = 1, error: str | None = None) -> None:
        if not n:
            return
        self.counts[key] += n
        if error and self.first_error is None:
            self.first_error = error
        if not self._warned and key in _SKIP_REASONS and key != "truncated_completions":
            self._warned = True
            logger.warning("%s dataset (streamed): skipping %s%s (first skip; totals by reason are logged at the end "
                           "of each pass).", self.dataset_name, _SKIP_REASONS[key], f": {error}" if error else "")

    def track(self, read: Any) -> None:
        """Also count, per pass, the growth of cumulative counts kept elsewhere (`read()` -> {reason: count})."""
        self._trackers.append((read, dict(read())))

    def begin(self) -> None:
        self.counts = Counter()
        self._trackers = [(read, dict(read())) for read, _ in self._trackers]

    def totals(self) -> Counter:
        counts = Counter(self.counts)
        for read, start in self._trackers:
            for key, value in read().items():
                counts[key] += value - start.get(key, 0)
        if self.pairwise:
            left = counts.pop("_in", 0) - counts["ok"] - sum(counts[key] for key in _PAIR_SKIPS)
            counts["dropped_for_max_length"] += max(left, 0)
        counts.pop("_in", None)
        return +counts

    def error(self, counts: Counter | None = None) -> ValueError:
        counts = self.totals() if counts is None else counts
        what = "no pair left" if self.pairwise else "no trainable ranked group"
        return ValueError(f"The {self.dataset_name} dataset (streamed) has {what}: "
                          f"{skip_details(counts, self.first_error) or 'it is empty'}.")

    def end(self) -> None:
        self.passes += 1
        counts = self.totals()
        self.stats[self.dataset_name] = counts
        if not counts["ok"]:
            raise self.error(counts)
        details = skip_details(counts, self.first_error)
        if details:
            logger.warning("%s dataset (streamed), end of pass %d: %d %s kept; %s.", self.dataset_name, self.passes,
                           counts["ok"], self.unit, details)


def counted_stream(rows: Any, report: StreamReport):
    """The last step of a streamed preparation (through `IterableDataset.from_generator`): yields `rows`, counting
    each as kept, one pass of `report` per iteration."""
    report.begin()
    for row in rows:
        report.add("ok")
        yield row
    report.end()


def ranked_classifier(skip_invalid: bool, pair_strategy: str, allow_empty_completions: bool):
    """The map function that validates a ranked row: its `ranks`, `_status` (`ok` or why it is skipped), `_empty`
    (empty completions) and `_error` (the row's error with `on_invalid_rows="skip"`, else it raises). Built from plain
    values so that `datasets` fingerprints it the same way in every process (and a cached result is reused)."""

    def classify(example: dict, index: int) -> dict:
        try:
            ranks = validate_ranked_example(example, index, allow_empty_completions)
        except ValueError as err:
            if not skip_invalid:
                raise
            return {"ranks": [], "_status": "invalid", "_empty": 0, "_error": str(err)}
        return {"ranks": ranks, "_status": ranked_status(ranks, pair_strategy),
                "_empty": sum(map(is_empty_completion, example["completions"])), "_error": ""}

    return classify


def pair_checker(weighted: bool, check_empty: bool, skip_invalid: bool):
    """The map function that checks a pairwise row (see `RankedDataMixin._check_pairs`): `_problem` is "" or why the
    row is skipped; without `skip_invalid` a bad row raises naming the row and field."""

    def find_problem(example: dict, index: int) -> dict:
        problem, error = "", None
        if weighted:
            try:
                check_weight(example["weight"], index)
            except ValueError as err:
                problem, error = "invalid_weight", err
        for side in ("chosen", "rejected") if check_empty and not problem else ():
            if is_empty_completion(example[side]):
                what = "is an empty string" if isinstance(example[side], str) else "has only empty message contents"
                problem = "empty_completion"
                error = ValueError(f"row {index}, field '{side}': {side} {what}; allow_empty_completions=False "
                                   "refuses empty completions")
                break
        if error is not None and not skip_invalid:
            raise error
        return {"_problem": problem}

    return find_problem


def model_rows(example: dict, max_length: int | None, truncation_mode: str = "keep_start") -> list[list[int]]:
    """The token ids of each completion row of a tokenized group, as the model will see them (truncated; with the
    [CLS] head's token types, which tell otherwise identical ids apart)."""
    rows, _ = truncate_rows(example.get("prompt_ids"), example["completion_ids"], max_length, truncation_mode)
    if "completion_token_type_ids" in example:
        rows = [r + [-1] + list(t) for r, t in zip(rows, example["completion_token_type_ids"])]
    return rows


def identical_marker(max_length: int | None, truncation_mode: str, pair_strategy: str, listwise: bool):
    """The map function that finds rows identical after truncation in a tokenized group: `_identical` / `_pairs` (the
    group's pairs with two identical rows, and all its pairs; Bradley-Terry leaves the former out in the collator) and
    `_left_out`. With the listwise loss (`listwise=True`) a row identical to a better-ranked row of its group is left
    out of the group (its `completion_ids`, `ranks` and token types): Plackett-Luce would otherwise have to order two
    equal scores, a term that pulls them apart from the rest with no preference behind it; identical rows of equal
    rank stay (a tie, which the listwise loss treats as one)."""

    def mark(example: dict) -> dict:
        rows, ranks = model_rows(example, max_length, truncation_mode), list(example["ranks"])
        out: dict[str, Any] = {}
        if listwise:
            keep = [i for i in range(len(rows))
                    if not any(rows[j] == rows[i] and ranks[j] < ranks[i] for j in range(len(rows)))]
            for name in ("completion_ids", "completion_token_type_ids"):
                if name in example:
                    out[name] = [example[name][i] for i in keep]
            out["ranks"] = [ranks[i] for i in keep]
            rows, ranks = [rows[i] for i in keep], out["ranks"]
        identical, total = identical_pairs(rows, ranks, pair_strategy)
        out.update(_identical=identical, _pairs=total, _left_out=len(example["ranks"]) - len(ranks))
        return out

    return mark


class RankedDataMixin:
    """Preference-data preparation shared by our RewardTrainer and DPOTrainer.

    * `_check_preference_columns`: ranked (`completions` + `ranks` | `scores`) or pairwise (`chosen`, `rejected`),
      else one error naming the columns found.
    * `_prepare_ranked` validates every row (errors name the user's row index and field), skips and counts invalid
      rows (with `on_invalid_rows="skip"`), groups with K < 2 and all-tied groups, hands the trainable groups to the
      trainer's `_tokenize_ranked`, leaves out pairs whose two completions are identical as the model sees them (after
      truncation; with the Plackett-Luce loss, the worse-ranked of two identical rows) and groups left without a pair,
      records the counts in `self.ranking_stats[dataset_name]`, prints one summary line at WARNING when anything was
      skipped or truncated, and refuses a dataset with no trainable group, before and after tokenisation.
    * A streaming `IterableDataset` goes through the same steps lazily; a [`StreamReport`] counts what they leave
      out as the stream is read (first skip at WARNING, totals at the end of each pass, in `ranking_stats`), and a
      pass that keeps nothing, or a stream found empty while the trainer is built, raises with the counts.
    * `_expand_ranked` is the `ranked_training="pairwise"` path: weighted pairs from [`ranked_to_pairs`].
    * `_check_pairs`: a pairwise `weight` column must be finite and >= 0, and `allow_empty_completions=False` refuses
      an empty chosen or rejected (raise naming the row, or skip and count).
    * The map and filter functions are built from plain values (no trainer inside), so that `datasets` fingerprints
      them alike in every process and, under TRL's main-process-first guard (`compat.main_process_first`), the other
      processes reuse the main process's cached results.
    """

    ranking_stats: dict[str, Counter]

    def _tokenize_ranked(self, dataset, processing_class, args, dataset_name) -> tuple[Any, Counter]:
        """Trainer-specific: token ids of the kept groups (`completion_ids`, `ranks`, ...) and extra counts (a stream
        counts what it leaves out into `self._stream_report_for(dataset, dataset_name)` instead)."""
        raise NotImplementedError

    def _stream_report(self, dataset_name: str, pairwise: bool = False) -> StreamReport:
        """A new [`StreamReport`] for a streamed dataset, kept (by dataset name) for the preparation steps to count
        into; its per-pass counts go to `self.ranking_stats`."""
        reports = self.__dict__.setdefault("_stream_reports", {})
        reports[dataset_name] = StreamReport(dataset_name, self.ranking_stats, "pairs" if pairwise else "ranked groups",
                                             pairwise)
        return reports[dataset_name]

    def _stream_report_for(self, dataset: Any, dataset_name: str) -> StreamReport | None:
        """The report a streamed dataset's preparation counts into (None for a `Dataset`, whose counts are read from
        its columns)."""
        if isinstance(dataset, Dataset):
            return None
        return self.__dict__.get("_stream_reports", {}).get(dataset_name)

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
        if isinstance(dataset, IterableDataset):
            return self._prepare_ranked_stream(dataset, processing_class, args, dataset_name)
        classify = ranked_classifier(args.on_invalid_rows == "skip", args.pair_strategy, args.allow_empty_completions)
        dataset = dataset.map(classify, with_indices=True,
                              **map_kwargs(dataset, args, f"Validating ranked {dataset_name} dataset"))
        counts: Counter = Counter(dataset["_status"])
        counts["empty_completions"] = sum(dataset["_empty"])
        first_error = next((error for error in dataset["_error"] if error), None)
        dataset = dataset.filter(lambda status: status == "ok", input_columns="_status",
                                 **map_kwargs(dataset, args, f"Keeping trainable {dataset_name} groups"))
        dataset = dataset.remove_columns(["_status", "_empty", "_error"])
        if len(dataset) == 0:
            self._report_ranked(dataset_name, counts, first_error)  # raises
        dataset, extra = self._tokenize_ranked(dataset, processing_class, args, dataset_name)
        counts.update(extra)
        if len(dataset) == 0:  # tokenisation left nothing (every prompt fills max_length, every completion too long)
            counts["ok"] = 0
            self._report_ranked(dataset_name, counts, first_error)  # raises, with the counts

        dataset = dataset.map(self._identical_marker(args),
                              **map_kwargs(dataset, args, f"Checking {dataset_name} pairs"))
        identical, pairs, left_out = dataset["_identical"], dataset["_pairs"], dataset["_left_out"]
        counts["skipped_identical_after_truncation"] = sum(i == p for i, p in zip(identical, pairs))
        counts["identical_pairs_after_truncation"] = sum(i for i, p in zip(identical, pairs) if i < p)
        counts["identical_completions_left_out"] = sum(n for n, i, p in zip(left_out, identical, pairs) if i < p)
        dataset = dataset.filter(lambda identical, pairs: identical < pairs, input_columns=["_identical", "_pairs"],
                                 **map_kwargs(dataset, args, f"Keeping {dataset_name} groups with a pair"))
        dataset = dataset.remove_columns(["_identical", "_pairs", "_left_out"])
        counts["ok"] = len(dataset)
        self.ranking_stats[dataset_name] = +counts
        self._report_ranked(dataset_name, counts, first_error)
        return dataset

    @staticmethod
    def _identical_marker(args: Any):
        return identical_marker(getattr(args, "max_length", None), getattr(args, "truncation_mode", "keep_start"),
                                args.pair_strategy, args.ranked_loss == "plackett_luce")

    def _prepare_ranked_stream(self, dataset, processing_class, args, dataset_name):
        """`_prepare_ranked` on a stream: the same steps, lazily, each counting what it leaves out into a
        [`StreamReport`] (first skip at WARNING, totals at the end of each pass, an error for a pass that keeps
        nothing); a stream found empty while the trainer is built is the same error, with the counts so far."""
        report = self._stream_report(dataset_name)
        classify = ranked_classifier(args.on_invalid_rows == "skip", args.pair_strategy, args.allow_empty_completions)
        mark = self._identical_marker(args)

        def counted_classify(example: dict, index: int) -> dict:
            out = classify(example, index)
            if out["_status"] != "ok":
                report.add(out["_status"], error=out["_error"] or None)
            report.add("empty_completions", out["_empty"])
            return out

        def counted_mark(example: dict) -> dict:
            out = mark(example)
            if out["_identical"] == out["_pairs"]:
                report.add("skipped_identical_after_truncation")
            else:
                report.add("identical_pairs_after_truncation", out["_identical"])
                report.add("identical_completions_left_out", out["_left_out"])
            return out

        try:
            dataset = dataset.map(counted_classify, with_indices=True)
            dataset = dataset.filter(lambda status: status == "ok", input_columns="_status")
            dataset = dataset.remove_columns(["_status", "_empty", "_error"])
            dataset, _ = self._tokenize_ranked(dataset, processing_class, args, dataset_name)
            dataset = dataset.map(counted_mark)
            dataset = dataset.filter(lambda identical, pairs: identical < pairs,
                                     input_columns=["_identical", "_pairs"])
            dataset = dataset.remove_columns(["_identical", "_pairs", "_left_out"])
        except StopIteration:  # a look at the first row (TRL's, or for the column names) found none
            raise report.error() from None
        return IterableDataset.from_generator(counted_stream, gen_kwargs={"rows": dataset, "report": report})

    @staticmethod
    def _report_ranked(dataset_name: str, counts: Counter, first_error: str | None) -> None:
        skipped = skip_details(counts)
        details = skip_details(counts, first_error)
        if counts["ok"] == 0:
            raise ValueError(f"The {dataset_name} dataset has no trainable ranked group: {details or 'it is empty'}. "
                             "A group needs at least two completions with different ranks that stay different "
                             "tokens within max_length.")
        logger.info("%s ranked dataset: %s", dataset_name, dict(counts))
        if skipped:
            logger.warning("%s dataset: %d ranked groups kept; %s.", dataset_name, counts["ok"], details)

    def _ranking_buffer(self, mode: str) -> RankingMetricBuffer:
        """The device buffer of `mode` ("train" | "eval") that `rm/*` metrics are computed from at the next `log`."""
        buffers = getattr(self, "_ranking_buffers", None)
        if buffers is None:
            buffers = self._ranking_buffers = {}
        if mode not in buffers:
            buffers[mode] = RankingMetricBuffer(getattr(self.args, "ndcg_k", None))
        return buffers[mode]

    def _buffer_group_scores(self, mode: str, scores: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        """Keep one step's per-row scores (detached, on their device) for the ranking metrics of the next `log`: no host
        sync and a handful of ops per step; the metrics themselves are computed once per logging step. `batch` holds
        the step's `ranks` and `group_rows` (a collator of its own that gives only `completion_group` costs a sync)."""
        group_rows = batch.get("group_rows")
        if group_rows is None:
            group_rows = group_rows_from_groups(batch["completion_group"])
        self._ranking_buffer(mode).add_groups(scores, batch["ranks"], group_rows)

    def _log_ranking_metrics(self, mode: str) -> None:
        """At `log` time: `rm/kendall_tau`, `rm/spearman`, `rm/top1_accuracy`, `rm/ndcg` (and `rm/ndcg@k`) over every
        group of every process since the last log (means over groups; a group where a metric is undefined, e.g. all
        gold ranks tied, is left out of that metric), and `rm/auc` over the buffered pairwise evaluation scores, put in
        TRL's metric dict for TRL's `log` to report. One gather of the per-metric sums and counts (groups differ in
        size across processes) and one host sync for all of them."""
        buffer = self._ranking_buffer(mode)
        if buffer.empty():
            return
        names, totals, auc = buffer.pop()
        parts = []
        if totals is not None:
            if self.accelerator.num_processes > 1:  # every process logs, so every process joins the gather
                totals = self.accelerator.gather(totals[None]).sum(dim=0)
            parts += [totals[0] / totals[1], totals[1]]
        if auc is not None:
            parts.append(auc.reshape(1).to(parts[0].dtype if parts else auc.dtype))
        values = torch.cat(parts).tolist()
        metrics = compat.metrics(self, mode)
        if totals is not None:
            means, counts = values[: len(names)], values[len(names) : 2 * len(names)]
            for name, mean, count in zip(names, means, counts):
                if count > 0:
                    metrics[f"rm/{name}"] = [mean]
        if auc is not None:
            metrics["rm/auc"] = [values[-1]]

    def _expand_ranked(self, dataset, args, dataset_name):
        pairs, stats = ranked_to_pairs(dataset, pair_strategy=args.pair_strategy, weighting="group",
                                       on_invalid_rows=args.on_invalid_rows,
                                       allow_empty_completions=args.allow_empty_completions)
        if isinstance(dataset, Dataset):
            dropped = stats.skipped_small_groups + stats.skipped_all_tied + stats.skipped_invalid
            if stats.groups == 0:
                raise ValueError(f"The {dataset_name} dataset has no trainable ranked group: {stats.summary()}")
            (logger.warning if dropped else logger.info)("%s dataset: %s", dataset_name, stats.summary())
        else:  # the expansion's stats fill in as the stream is read: report their growth over each pass
            report = self._stream_report_for(dataset, dataset_name)
            if report is not None:
                report.track(lambda: {"invalid": stats.skipped_invalid, "skipped_all_tied": stats.skipped_all_tied,
                                      "skipped_small_group": stats.skipped_small_groups})
        return pairs

    def _check_pairs(self, dataset, args, dataset_name, check_empty: bool = True):
        """Pairwise rows: a `weight` column must be finite and >= 0 and, with `allow_empty_completions=False` (and
        `check_empty`: not for pairs expanded from rankings, checked per group before), `chosen` and `rejected` must
        not be empty. A bad row raises naming the user's row and field, or with `on_invalid_rows="skip"` is skipped and
        counted (`invalid_weight`, `empty_completion`)."""
        columns = compat.dataset_column_names(dataset)
        weighted = "weight" in columns
        check_empty = check_empty and not args.allow_empty_completions
        if not weighted and not check_empty:
            return dataset
        find_problem = pair_checker(weighted, check_empty, args.on_invalid_rows == "skip")
        report = self._stream_report_for(dataset, dataset_name)
        if report is not None:
            def counted(example: dict, index: int) -> dict:
                out = find_problem(example, index)
                if out["_problem"]:
                    report.add(out["_problem"])
                return out

            dataset = dataset.map(counted, with_indices=True)
            return dataset.filter(lambda problem: not problem, input_columns="_problem").remove_columns("_problem")
        marked = dataset.map(find_problem, with_indices=True,
                             **map_kwargs(dataset, args, f"Checking {dataset_name} pairs"))
        problems = Counter(problem for problem in marked["_problem"] if problem)
        kept = marked.filter(lambda problem: not problem, input_columns="_problem",
                             **map_kwargs(dataset, args, f"Keeping valid {dataset_name} pairs"))
        kept = kept.remove_columns("_problem")
        if problems:
            self.ranking_stats.setdefault(dataset_name, Counter()).update(problems)
        if problems["invalid_weight"]:
            logger.warning("%s dataset: skipped %d pairs with an invalid weight (weights must be finite and >= 0).",
                           dataset_name, problems["invalid_weight"])
        if problems["empty_completion"]:
            logger.warning("%s dataset: skipped %d pairs with an empty completion (allow_empty_completions=False).",
                           dataset_name, problems["empty_completion"])
        if problems and len(kept) == 0:
            what = "a valid weight" if set(problems) == {"invalid_weight"} else "a valid weight and no empty completion"
            raise ValueError(f"The {dataset_name} dataset has no pair with {what}: {skip_details(problems)}.")
        return kept

    def _count_pairs_in(self, dataset, dataset_name):
        """A streamed pairwise dataset: count the pairs that enter the preparation (what TRL's own filters then leave
        out is the difference)."""
        report = self._stream_report_for(dataset, dataset_name)
        if report is None:
            return dataset

        def count(example: dict) -> dict:
            report.add("_in")
            return {}

        return dataset.map(count)

    def _finish_stream(self, dataset, dataset_name):
        """The prepared stream, counted pass by pass by its [`StreamReport`] (a `Dataset` is returned as it is)."""
        report = self._stream_report_for(dataset, dataset_name)
        if report is None:
            return dataset
        return IterableDataset.from_generator(counted_stream, gen_kwargs={"rows": dataset, "report": report})
