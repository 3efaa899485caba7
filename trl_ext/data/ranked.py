"""Ranked preference data: the format, its validation, and ranking-to-pairs expansion.

A *ranked* data set has one row per prompt with K completions and either their ranks (0 = best, equal ranks = tie)
or their scores (higher = better)::

    {"prompt": "...", "completions": ["a", "b", "c"], "ranks": [1, 0, 1]}
    {"prompt": [{"role": "user", "content": "..."}],
     "completions": [[{"role": "assistant", "content": "a"}], [{"role": "assistant", "content": "b"}]],
     "scores": [0.3, 0.9]}

:func:`ranked_to_pairs` expands it into TRL's explicit-prompt preference format (``prompt`` / ``chosen`` /
``rejected``, standard text or conversational) with a per-pair ``weight`` so that every prompt can count the same
however many completions it has.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset, Features, IterableDataset, LargeList, List, Value

logger = logging.getLogger(__name__)

# "prompt" and "completions" are always required, plus one of the two ordering columns.
RANKED_COLUMNS: tuple[str, str, tuple[str, str]] = ("prompt", "completions", ("ranks", "scores"))
PAIR_STRATEGIES: tuple[str, ...] = ("all", "best_vs_rest", "adjacent")
WEIGHTINGS: tuple[str, ...] = ("group", "uniform")
ON_INVALID_ROWS: tuple[str, ...] = ("raise", "skip")

# Columns consumed by the expansion (not copied onto the pairs) and columns it creates.
_CONSUMED_COLUMNS = ("completions", "ranks", "scores")
_PAIR_COLUMNS = ("prompt", "chosen", "rejected", "group_id", "chosen_rank", "rejected_rank", "weight")
_SCORE_COLUMNS = ("chosen_score", "rejected_score")


# --------------------------------------------------------------------------------------------------------------------
# Ranks and pairs
# --------------------------------------------------------------------------------------------------------------------


def is_ranked_dataset(column_names: Iterable[str]) -> bool:
    """Whether a data set with these columns is in ranked format (``completions`` plus ``ranks`` or ``scores``)."""
    names = set(column_names)
    return "completions" in names and ("ranks" in names or "scores" in names)


def ranks_from_scores(scores: Sequence[float]) -> list[int]:
    """Dense ranks from scores: 0 = highest score, equal scores share a rank, no gaps.

    >>> ranks_from_scores([0.1, 0.9, 0.9, 0.5])
    [2, 0, 0, 1]

    Raises:
        ValueError: a score is None, not a number, NaN or infinite (naming its position and value).
    """
    values: list[float] = []
    for position, score in enumerate(scores):
        values.append(_check_score(score, position))
    levels = sorted(set(values), reverse=True)
    level_of = {value: level for level, value in enumerate(levels)}
    return [level_of[value] for value in values]


def rank_pairs(ranks: Sequence[int], pair_strategy: str = "all", *,
               strategy: str | None = None) -> tuple[list[tuple[int, int]], int]:
    """Preference pairs ``(better_index, worse_index)`` for one group of ranked completions.

    ``pair_strategy`` (the name the configs and `ranked_to_pairs` use; ``strategy`` is its deprecated former name, a
    FutureWarning) is one of (ties never become a pair):

    - ``"all"``: every two completions with different ranks (C(K, 2) minus the tied pairs).
    - ``"best_vs_rest"``: each completion with the best rank against each completion with a worse rank.
    - ``"adjacent"``: each completion at a rank level against each completion at the next distinct worse level
      (gaps in the rank numbers do not matter: ranks [0, 2] give one pair).

    Order is deterministic: better completions in (rank, index) order, then worse ones in (rank, index) order.

    Returns:
        ``(pairs, n_tied_pairs)`` where ``n_tied_pairs`` is the number of unordered index pairs with equal rank in
        the group; it does not depend on the strategy.

    Raises:
        ValueError: unknown strategy (naming it and the valid ones).
    """
    if strategy is not None:
        warnings.warn("rank_pairs(strategy=...) is now called pair_strategy (the name the trainer configs and "
                      "ranked_to_pairs use); the old name will be removed.", FutureWarning, stacklevel=2)
        pair_strategy = strategy
    strategy = pair_strategy
    if strategy not in PAIR_STRATEGIES:
        raise ValueError(f"unknown pair strategy {strategy!r}; valid strategies: {', '.join(PAIR_STRATEGIES)}")
    order = sorted(range(len(ranks)), key=lambda i: (ranks[i], i))
    n_tied = sum(count * (count - 1) // 2 for count in Counter(ranks).values())
    if not order:
        return [], n_tied

    pairs: list[tuple[int, int]] = []
    if strategy == "all":
        for a, better in enumerate(order):
            for worse in order[a + 1 :]:
                if ranks[worse] != ranks[better]:
                    pairs.append((better, worse))
    elif strategy == "best_vs_rest":
        best = ranks[order[0]]
        top = [i for i in order if ranks[i] == best]
        rest = [i for i in order if ranks[i] != best]
        pairs = [(better, worse) for better in top for worse in rest]
    else:  # adjacent
        by_level: dict[int, list[int]] = defaultdict(list)
        for i in order:  # `order` is sorted, so each level's members stay in index order
            by_level[ranks[i]].append(i)
        levels = sorted(by_level)
        for level, next_level in zip(levels, levels[1:]):
            pairs.extend((better, worse) for better in by_level[level] for worse in by_level[next_level])
    return pairs, n_tied


# --------------------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------------------


def _renamed_allow_empty(value: bool, legacy: bool | None, function: str) -> bool:
    """`allow_empty_completions`, or the value given under its former name `allow_empty` (with a FutureWarning)."""
    if legacy is None:
        return value
    warnings.warn(f"{function}(allow_empty=...) is now called allow_empty_completions (the name the trainer configs "
                  "use); the old name will be removed.", FutureWarning, stacklevel=3)
    return legacy


def _row_error(index: int, field_name: str, message: str) -> ValueError:
    return ValueError(f"row {index}, field '{field_name}': {message}")


def check_weight(value: Any, index: int, field_name: str = "weight") -> float:
    """A row's weight as a float: it must be a finite number ≥ 0 (0 means "do not train on this row").

    A negative weight would silently reverse that row's gradient, and a NaN or infinite one turns every parameter into
    NaN, so both are refused with the row index, the field and the value.
    """
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < 0:
        raise _row_error(index, field_name, f"weight is {value!r}; weights must be finite numbers >= 0")
    return float(value)


def check_ranked_columns(columns: Iterable[str]) -> None:
    """Refuse a data set that looks ranked but is not usable as such, naming the columns found.

    Ranked data needs `prompt`, `completions` and `ranks` or `scores`. A `margin` column is refused: it is a property
    of one (chosen, rejected) pair, and a ranking has C(K,2) pairs (expand with `ranked_to_pairs` and set a margin per
    pair instead). A `weight` column is allowed and weights the whole group.
    """
    columns = list(columns)
    missing = [name for name in ("prompt", "completions") if name not in columns]
    if "ranks" not in columns and "scores" not in columns:
        missing.append("'ranks' or 'scores'")
    if missing:
        raise ValueError(f"ranked data set is missing required column(s) {missing}; found columns: {columns}")
    if "margin" in columns:
        raise ValueError(
            "column 'margin' is not supported on ranked data: a margin belongs to one (chosen, rejected) pair and a "
            "ranking yields C(K,2) pairs; drop the column, or expand with ranked_to_pairs and add a margin per pair"
        )


def _check_score(score: Any, position: int) -> float:
    """Return ``score`` as a finite float or raise a ValueError naming its position (callers add row/field)."""
    if score is None or isinstance(score, bool) or not isinstance(score, numbers.Real):
        raise ValueError(f"score at position {position} is {score!r}; scores must be finite numbers")
    value = float(score)
    if not math.isfinite(value):
        raise ValueError(f"score at position {position} is {score!r}; scores must be finite numbers")
    return value


def _check_rank(rank: Any, position: int) -> int:
    """Return ``rank`` as a non-negative int or raise a ValueError naming its position (callers add row/field)."""
    # bool is an Integral, but True/False as a rank is almost certainly a label column used by mistake.
    if rank is None or isinstance(rank, bool):
        raise ValueError(f"rank at position {position} is {rank!r}; ranks must be non-negative integers")
    if isinstance(rank, numbers.Integral):
        value = int(rank)
    elif isinstance(rank, numbers.Real) and math.isfinite(float(rank)) and float(rank).is_integer():
        value = int(rank)  # 2.0 is fine: JSON round-trips and pandas often turn int columns into floats
    else:
        raise ValueError(f"rank at position {position} is {rank!r}; ranks must be non-negative integers")
    if value < 0:
        raise ValueError(f"rank at position {position} is {rank!r}; ranks must be non-negative integers")
    return value


def _checked_values(example: dict, index: int, field_name: str, n_completions: int, check) -> list:
    """The row's `ranks` or `scores`, one per completion, each passed through `check`; a one-line row error else."""
    raw = example[field_name]
    if not isinstance(raw, (list, tuple)):
        raise _row_error(index, field_name, f"expected a list of {field_name}, got {raw!r}")
    if len(raw) != n_completions:
        raise _row_error(index, field_name, f"has {len(raw)} {field_name} but there are {n_completions} completions")
    try:
        return [check(value, position) for position, value in enumerate(raw)]
    except ValueError as err:
        raise _row_error(index, field_name, str(err)) from None


def _is_blank_content(content: Any) -> bool:
    if content is None:
        return True
    if isinstance(content, str):
        return not content.strip()
    if isinstance(content, (list, tuple)):  # multimodal content parts: empty only when there are none
        return len(content) == 0
    return False


def _emptiness_problem(value: Any) -> str | None:
    """Why a prompt/completion (a string or a list of messages) is empty or malformed, or None if it is fine."""
    if value is None:
        return "is missing (None)"
    if isinstance(value, str):
        return "is an empty string" if not value.strip() else None
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            return "is an empty message list"
        for position, message in enumerate(value):
            if not isinstance(message, dict) or "content" not in message:
                return f"message {position} is {message!r}, expected a dict with 'role' and 'content'"
        if all(_is_blank_content(message.get("content")) for message in value):
            return "has only empty message contents"
        return None
    return f"is a {type(value).__name__} ({value!r}), expected a string or a list of messages"


def _completion_key(completion: Any) -> str:
    """Hashable, order-stable key of a completion, to find the same completion twice in one group."""
    if isinstance(completion, str):
        return "s:" + completion
    return "m:" + json.dumps(completion, sort_keys=True, ensure_ascii=False, default=str)


def is_empty_completion(completion: Any) -> bool:
    """An empty answer: blank text, or messages whose contents are all blank (an empty message list is malformed)."""
    if isinstance(completion, str):
        return not completion.strip()
    return isinstance(completion, (list, tuple)) and len(completion) > 0 and all(
        isinstance(m, dict) and _is_blank_content(m.get("content")) for m in completion)


def validate_ranked_example(example: dict, index: int, allow_empty_completions: bool = True, *,
                            allow_empty: bool | None = None) -> list[int]:
    """Check one ranked row and return its ranks (from ``ranks``, or dense ranks converted from ``scores``).

    When a row has both ``ranks`` and ``scores``, both are checked and ``ranks`` decides the order. A group with
    fewer than two completions, or whose completions all share one rank, is *not* an error here (the caller skips and
    counts it). An empty completion (blank text, or messages with only blank contents) is a completion like any
    other: ranked above or below another one it gives pairs, tied it gives none (e.g. two answers judged equally bad,
    one of them empty); ``allow_empty_completions=False`` refuses every empty completion (``allow_empty`` is its
    former, deprecated name).

    Raises:
        ValueError: with a message starting ``"row {index}, field '{field}': "`` for a missing/empty prompt,
            ``completions`` that is not a list, ranks/scores that are not a list or whose length differs from the
            completions', a None/NaN/infinite score, a rank that is None/bool/non-integer/negative, an empty
            completion with ``allow_empty_completions=False`` (blank string or only blank contents), an empty
            message list, a completion that is text where
            the prompt is messages (or the reverse), the same completion twice with different ranks, or a `weight`
            that is not a finite number >= 0.
    """
    allow_empty_completions = _renamed_allow_empty(allow_empty_completions, allow_empty, "validate_ranked_example")
    problem = _emptiness_problem(example.get("prompt"))
    if problem is not None:
        raise _row_error(index, "prompt", f"prompt {problem}")

    completions = example.get("completions")
    if not isinstance(completions, (list, tuple)):
        raise _row_error(index, "completions", f"expected a list of completions, got {completions!r}")

    has_ranks = example.get("ranks") is not None
    has_scores = example.get("scores") is not None
    if not has_ranks and not has_scores:
        # Name the column the data set actually has, so the message points at the None value.
        missing = "scores" if "scores" in example and "ranks" not in example else "ranks"
        raise _row_error(index, missing, f"expected a list of {missing}, got None (need 'ranks' or 'scores')")

    scores: list[float] | None = None
    if has_scores:
        scores = _checked_values(example, index, "scores", len(completions), _check_score)

    if has_ranks:
        ranks = _checked_values(example, index, "ranks", len(completions), _check_rank)
        order_field = "ranks"
    else:
        assert scores is not None
        ranks = ranks_from_scores(scores)
        order_field = "scores"

    if "weight" in example:
        check_weight(example["weight"], index)

    conversational = not isinstance(example["prompt"], str)
    seen: dict[str, int] = {}
    for position, completion in enumerate(completions):
        if allow_empty_completions and is_empty_completion(completion):
            # An empty answer is a real preference when it is ranked above or below something (a model that said
            # nothing, ranked worst); tied, it is a tie like any other (no pair; an all-tied group is skipped).
            pass
        else:
            problem = _emptiness_problem(completion)
            if problem is not None:
                raise _row_error(index, "completions", f"completion at position {position} {problem}")
        if isinstance(completion, str) == conversational:
            kinds = ("text", "a list of messages") if conversational else ("a list of messages", "text")
            raise _row_error(index, "completions", f"completion at position {position} is {kinds[0]} but the prompt "
                             f"is {kinds[1]}; use text for both or messages for both")
        key = _completion_key(completion)
        first = seen.setdefault(key, position)
        if first != position and ranks[first] != ranks[position]:
            # Same text ranked both better and worse is a contradiction, not a tie: there is no pair to learn.
            values = scores if order_field == "scores" else ranks
            raise _row_error(
                index,
                "completions",
                f"completions at positions {first} and {position} are identical but have different {order_field} "
                f"({values[first]!r} vs {values[position]!r})",
            )
    return ranks


# --------------------------------------------------------------------------------------------------------------------
# Ranked -> pairs
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class RankingStats:
    """What :func:`ranked_to_pairs` did, for logs and for checking a data set before training."""

    rows: int = 0  # input rows seen
    groups: int = 0  # groups that produced >= 1 pair
    pairs: int = 0
    tied_pairs: int = 0  # tied pairs not turned into pairs
    skipped_small_groups: int = 0  # K < 2
    skipped_all_tied: int = 0  # K >= 2 but every completion tied -> no pair
    skipped_invalid: int = 0  # malformed rows skipped with on_invalid_rows="skip"
    empty_completions: int = 0  # empty completions kept (ranked above or below another one)
    invalid_examples: dict[int, str] = field(default_factory=dict)  # row index -> error message

    def summary(self) -> str:
        """One human-readable line for logs."""
        ratio = f" ({self.pairs / self.groups:.2f} per group)" if self.groups else ""
        return (
            f"ranked_to_pairs: {self.rows} rows -> {self.pairs} pairs from {self.groups} groups{ratio}; "
            f"{self.tied_pairs} tied pairs dropped; skipped {self.skipped_small_groups} groups with K<2, "
            f"{self.skipped_all_tied} all-tied groups, {self.skipped_invalid} invalid rows"
            + (f"; {self.empty_completions} empty completions kept" if self.empty_completions else "")
        )


def _inner_feature(feature: Any) -> Any:
    """The element feature of a list feature (the type of one completion), or None when it is not a list."""
    if isinstance(feature, (List, LargeList)):
        return feature.feature
    return None


def _pair_features(features: Features, has_scores: bool, extra_columns: list[str]) -> Features:
    completion_feature = _inner_feature(features["completions"])
    if completion_feature is None:
        # Not a list column: every row will fail validation; pick string so an empty result still has a schema.
        completion_feature = Value("string")
    prompt_feature = features["prompt"]
    if isinstance(prompt_feature, Value) and prompt_feature.dtype == "null":
        prompt_feature = Value("string")
    out: dict[str, Any] = {
        "prompt": prompt_feature,
        "chosen": completion_feature,
        "rejected": completion_feature,
        "group_id": Value("int64"),
        "chosen_rank": Value("int64"),
        "rejected_rank": Value("int64"),
        "weight": Value("float64"),
    }
    if has_scores:
        out["chosen_score"] = Value("float64")
        out["rejected_score"] = Value("float64")
    for name in extra_columns:
        out[name] = features[name]
    return Features(out)


def ranked_to_pairs(
    dataset: Dataset | IterableDataset,
    pair_strategy: str = "all",
    weighting: str = "group",
    on_invalid_rows: str = "raise",
    allow_empty_completions: bool = True,
    *,
    allow_empty: bool | None = None,
) -> tuple[Dataset, RankingStats]:
    """Expand a ranked data set into explicit-prompt preference pairs.

    Output columns: ``prompt``, ``chosen``, ``rejected`` (``chosen`` is always the better-ranked one),
    ``group_id`` (the input row index), ``chosen_rank``, ``rejected_rank``, ``weight``, plus ``chosen_score`` /
    ``rejected_score`` when the input has ``scores``, plus every other input column copied unchanged onto each pair.
    ``completions``, ``ranks`` and ``scores`` are dropped. Conversational rows give conversational pairs (``chosen``
    and ``rejected`` are message lists), matching TRL's conversational preference format.

    Args:
        dataset: ranked data set (see :data:`RANKED_COLUMNS`).
        pair_strategy: one of :data:`PAIR_STRATEGIES` (see :func:`rank_pairs`).
        weighting: ``"group"`` gives each pair ``1 / (pairs emitted for its group)`` so every prompt weighs the
            same in total, however many completions it has; ``"uniform"`` gives every pair 1.0. A ``weight`` column
            on the ranked data (finite, >= 0) weights the whole group: it multiplies each of its pairs' weights.
        on_invalid_rows: ``"raise"`` re-raises the first malformed row's ValueError; ``"skip"`` skips such rows and
            records them in ``stats.skipped_invalid`` / ``stats.invalid_examples``.
        allow_empty_completions: accept empty completions (counted in ``stats.empty_completions``); ranked above or
            below another one they give pairs, tied they give none. False refuses them.
        allow_empty: the former name of ``allow_empty_completions`` (deprecated).

    Returns:
        ``(pairs, stats)``. Order is deterministic: by input row, then :func:`rank_pairs` order. An empty result is
        still a Dataset with the output columns. A streaming ``IterableDataset`` gives a streaming result whose
        ``stats`` fill in as it is read.

    Raises:
        ValueError: bad ``pair_strategy`` / ``weighting`` / ``on_invalid_rows``, missing required columns, a
            ``margin`` column (see :func:`check_ranked_columns`), an input column that would clash with an output
            column, or (``on_invalid_rows="raise"``) a malformed row.
    """
    allow_empty_completions = _renamed_allow_empty(allow_empty_completions, allow_empty, "ranked_to_pairs")
    if pair_strategy not in PAIR_STRATEGIES:
        raise ValueError(
            f"unknown pair_strategy {pair_strategy!r}; valid strategies: {', '.join(PAIR_STRATEGIES)}"
        )
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; valid values: {', '.join(WEIGHTINGS)}")
    if on_invalid_rows not in ON_INVALID_ROWS:
        raise ValueError(f"unknown on_invalid_rows {on_invalid_rows!r}; valid values: {', '.join(ON_INVALID_ROWS)}")

    columns = list(dataset.column_names or next(iter(dataset)))  # a stream may not know its columns before reading
    check_ranked_columns(columns)
    has_scores = "scores" in columns
    group_weights = "weight" in columns  # a group's weight multiplies each of its pairs' weights
    extra_columns = [name for name in columns if name not in _CONSUMED_COLUMNS and name not in ("prompt", "weight")]
    clashes = [name for name in extra_columns if name in _PAIR_COLUMNS or name in _SCORE_COLUMNS]
    if clashes:
        raise ValueError(
            f"input column(s) {clashes} would be overwritten by ranked_to_pairs output columns; rename them first "
            f"(found columns: {columns})"
        )

    features = _pair_features(dataset.features, has_scores, extra_columns) if dataset.features else None
    names = [*_PAIR_COLUMNS, *(_SCORE_COLUMNS if has_scores else ()), *extra_columns]
    stats = RankingStats()

    def expand(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in names}
        for offset, row_index in enumerate(indices):
            stats.rows += 1
            example = {name: values[offset] for name, values in batch.items()}
            try:
                ranks = validate_ranked_example(example, row_index, allow_empty_completions)
            except ValueError as err:
                if on_invalid_rows == "raise":
                    raise
                stats.skipped_invalid += 1
                stats.invalid_examples[row_index] = str(err)
                continue
            completions = example["completions"]
            stats.empty_completions += sum(map(is_empty_completion, completions))
            if len(completions) < 2:
                stats.skipped_small_groups += 1
                continue
            pairs, n_tied = rank_pairs(ranks, pair_strategy)
            stats.tied_pairs += n_tied
            if not pairs:
                # Only possible when every completion shares one rank: all strategies pair every distinct level.
                stats.skipped_all_tied += 1
                continue
            stats.groups += 1
            stats.pairs += len(pairs)
            weight = 1.0 / len(pairs) if weighting == "group" else 1.0
            if group_weights:
                weight *= float(example["weight"])
            scores = example["scores"] if has_scores else None
            for better, worse in pairs:
                out["prompt"].append(example["prompt"])
                out["chosen"].append(completions[better])
                out["rejected"].append(completions[worse])
                out["group_id"].append(row_index)
                out["chosen_rank"].append(ranks[better])
                out["rejected_rank"].append(ranks[worse])
                out["weight"].append(weight)
                if has_scores:
                    # A row may have ranks and a None scores entry; then there is no score to report.
                    out["chosen_score"].append(None if scores is None else float(scores[better]))
                    out["rejected_score"].append(None if scores is None else float(scores[worse]))
                for name in extra_columns:
                    out[name].append(example[name])
        return out

    if not isinstance(dataset, Dataset):  # streaming: pairs (and stats) are produced as the data is read
        pairs_dataset = dataset.map(expand, batched=True, with_indices=True, remove_columns=columns, features=features)
        return pairs_dataset, stats
    if len(dataset) == 0:
        pairs_dataset = Dataset.from_dict({name: [] for name in features}, features=features)
    else:
        pairs_dataset = dataset.map(
            expand,
            batched=True,
            with_indices=True,
            remove_columns=columns,
            features=features,
            desc="Expanding rankings to pairs",
            load_from_cache_file=False,
        )
        if len(pairs_dataset) == 0 or list(pairs_dataset.column_names) != list(features):
            # `map` can return a schema-less table when nothing was written; rebuild it with the right columns.
            pairs_dataset = Dataset.from_dict({name: [] for name in features}, features=features)

    if stats.skipped_invalid:
        first_index = next(iter(stats.invalid_examples))
        logger.warning(
            "ranked_to_pairs skipped %d invalid rows; first: %s",
            stats.skipped_invalid,
            stats.invalid_examples[first_index],
        )
    logger.info(stats.summary())
    return pairs_dataset, stats


