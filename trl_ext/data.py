"""Ranked preference data: ranking-to-pairs expansion and loaders for real preference data sets.

A *ranked* data set has one row per prompt with K completions and either their ranks (0 = best, equal ranks = tie)
or their scores (higher = better)::

    {"prompt": "...", "completions": ["a", "b", "c"], "ranks": [1, 0, 1]}
    {"prompt": [{"role": "user", "content": "..."}],
     "completions": [[{"role": "assistant", "content": "a"}], [{"role": "assistant", "content": "b"}]],
     "scores": [0.3, 0.9]}

:func:`ranked_to_pairs` expands it into TRL's explicit-prompt preference format (``prompt`` / ``chosen`` /
``rejected``, standard text or conversational) with a per-pair ``weight`` so that every prompt can count the same
however many completions it has. The loaders turn the real OpenAssistant and Anthropic HH-RLHF files into these
formats without any hub access.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import numbers
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from datasets import Dataset, Features, LargeList, List, Value

from .utils import shared_data_dir

logger = logging.getLogger(__name__)

__all__ = [
    "RANKED_COLUMNS",
    "PAIR_STRATEGIES",
    "WEIGHTINGS",
    "ON_INVALID",
    "RankingStats",
    "is_ranked_dataset",
    "ranks_from_scores",
    "rank_pairs",
    "validate_ranked_example",
    "ranked_to_pairs",
    "load_oasst_ranked",
    "load_hh_rlhf",
    "load_preference_file",
]

# "prompt" and "completions" are always required, plus one of the two ordering columns.
RANKED_COLUMNS: tuple[str, str, tuple[str, str]] = ("prompt", "completions", ("ranks", "scores"))
PAIR_STRATEGIES: tuple[str, ...] = ("all", "best_vs_rest", "adjacent")
WEIGHTINGS: tuple[str, ...] = ("group", "uniform")
ON_INVALID: tuple[str, ...] = ("raise", "skip")

# Columns consumed by the expansion (not copied onto the pairs) and columns it creates.
_CONSUMED_COLUMNS = ("completions", "ranks", "scores")
_PAIR_COLUMNS = ("prompt", "chosen", "rejected", "group_id", "chosen_rank", "rejected_rank", "weight")
_SCORE_COLUMNS = ("chosen_score", "rejected_score")

_HH_ASSISTANT = "\n\nAssistant:"
_HH_DEFAULT_FILES = ("helpful-base_test.jsonl.gz", "harmless-base_test.jsonl.gz")
_OASST_DEFAULT_FILE = Path("oasst1") / "oasst1_en_validation.messages.jsonl"


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


def rank_pairs(ranks: Sequence[int], strategy: str = "all") -> tuple[list[tuple[int, int]], int]:
    """Preference pairs ``(better_index, worse_index)`` for one group of ranked completions.

    Strategies (ties never become a pair):

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


def _row_error(index: int, field_name: str, message: str) -> ValueError:
    return ValueError(f"row {index}, field '{field_name}': {message}")


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


def validate_ranked_example(example: dict, index: int) -> list[int]:
    """Check one ranked row and return its ranks (from ``ranks``, or dense ranks converted from ``scores``).

    When a row has both ``ranks`` and ``scores``, both are checked and ``ranks`` decides the order. A group with
    fewer than two completions is *not* an error here (the caller skips and counts it).

    Raises:
        ValueError: with a message starting ``"row {index}, field '{field}': "`` for a missing/empty prompt,
            ``completions`` that is not a list, ranks/scores that are not a list or whose length differs from the
            completions', a None/NaN/infinite score, a rank that is None/bool/non-integer/negative, an empty
            completion (blank string, empty message list, or only blank contents), or the same completion twice
            with different ranks.
    """
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
        raw_scores = example["scores"]
        if not isinstance(raw_scores, (list, tuple)):
            raise _row_error(index, "scores", f"expected a list of scores, got {raw_scores!r}")
        if len(raw_scores) != len(completions):
            raise _row_error(
                index, "scores", f"has {len(raw_scores)} scores but there are {len(completions)} completions"
            )
        try:
            scores = [_check_score(score, position) for position, score in enumerate(raw_scores)]
        except ValueError as err:
            raise _row_error(index, "scores", str(err)) from None

    if has_ranks:
        raw_ranks = example["ranks"]
        if not isinstance(raw_ranks, (list, tuple)):
            raise _row_error(index, "ranks", f"expected a list of ranks, got {raw_ranks!r}")
        if len(raw_ranks) != len(completions):
            raise _row_error(
                index, "ranks", f"has {len(raw_ranks)} ranks but there are {len(completions)} completions"
            )
        try:
            ranks = [_check_rank(rank, position) for position, rank in enumerate(raw_ranks)]
        except ValueError as err:
            raise _row_error(index, "ranks", str(err)) from None
        order_field = "ranks"
    else:
        assert scores is not None
        ranks = ranks_from_scores(scores)
        order_field = "scores"

    seen: dict[str, int] = {}
    for position, completion in enumerate(completions):
        problem = _emptiness_problem(completion)
        if problem is not None:
            raise _row_error(index, "completions", f"completion at position {position} {problem}")
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
    skipped_invalid: int = 0  # malformed rows skipped with on_invalid="skip"
    invalid_examples: dict[int, str] = field(default_factory=dict)  # row index -> error message

    def summary(self) -> str:
        """One human-readable line for logs."""
        ratio = f" ({self.pairs / self.groups:.2f} per group)" if self.groups else ""
        return (
            f"ranked_to_pairs: {self.rows} rows -> {self.pairs} pairs from {self.groups} groups{ratio}; "
            f"{self.tied_pairs} tied pairs dropped; skipped {self.skipped_small_groups} groups with K<2, "
            f"{self.skipped_all_tied} all-tied groups, {self.skipped_invalid} invalid rows"
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
    dataset: Dataset,
    pair_strategy: str = "all",
    weighting: str = "group",
    on_invalid: str = "raise",
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
            same in total, however many completions it has; ``"uniform"`` gives every pair 1.0.
        on_invalid: ``"raise"`` re-raises the first malformed row's ValueError; ``"skip"`` skips such rows and
            records them in ``stats.skipped_invalid`` / ``stats.invalid_examples``.

    Returns:
        ``(pairs, stats)``. Order is deterministic: by input row, then :func:`rank_pairs` order. An empty result is
        still a Dataset with the output columns.

    Raises:
        ValueError: bad ``pair_strategy`` / ``weighting`` / ``on_invalid``, missing required columns, an input
            column that would clash with an output column, or (``on_invalid="raise"``) a malformed row.
    """
    if pair_strategy not in PAIR_STRATEGIES:
        raise ValueError(
            f"unknown pair_strategy {pair_strategy!r}; valid strategies: {', '.join(PAIR_STRATEGIES)}"
        )
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; valid values: {', '.join(WEIGHTINGS)}")
    if on_invalid not in ON_INVALID:
        raise ValueError(f"unknown on_invalid {on_invalid!r}; valid values: {', '.join(ON_INVALID)}")

    columns = list(dataset.column_names)
    missing = [name for name in ("prompt", "completions") if name not in columns]
    if "ranks" not in columns and "scores" not in columns:
        missing.append("'ranks' or 'scores'")
    if missing:
        raise ValueError(f"ranked data set is missing required column(s) {missing}; found columns: {columns}")
    has_scores = "scores" in columns
    extra_columns = [name for name in columns if name not in _CONSUMED_COLUMNS and name != "prompt"]
    clashes = [name for name in extra_columns if name in _PAIR_COLUMNS or name in _SCORE_COLUMNS]
    if clashes:
        raise ValueError(
            f"input column(s) {clashes} would be overwritten by ranked_to_pairs output columns; rename them first "
            f"(found columns: {columns})"
        )

    features = _pair_features(dataset.features, has_scores, extra_columns)
    stats = RankingStats()

    def expand(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in features}
        for offset, row_index in enumerate(indices):
            stats.rows += 1
            example = {name: values[offset] for name, values in batch.items()}
            try:
                ranks = validate_ranked_example(example, row_index)
            except ValueError as err:
                if on_invalid == "raise":
                    raise
                stats.skipped_invalid += 1
                stats.invalid_examples[row_index] = str(err)
                continue
            completions = example["completions"]
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


# --------------------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"preference data file not found: {path}")
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return handle.read()
    return path.read_text(encoding="utf-8")


def _read_json_records(path: str | os.PathLike) -> list[dict]:
    """Rows of a .json/.jsonl(.gz) file holding either one JSON list of objects or one JSON object per line."""
    path = Path(path)
    text = _read_text(path)
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON list of objects, got {type(records).__name__}")
        for position, record in enumerate(records):
            if not isinstance(record, dict):
                raise ValueError(f"{path}: list element {position} is {type(record).__name__}, expected an object")
        return records

    records = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON on line {line_number}: {err.msg} (column {err.colno})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {line_number} is a JSON {type(record).__name__}, expected an object")
        records.append(record)
    return records


def load_preference_file(path: str | os.PathLike) -> Dataset:
    """Load a local ``.jsonl`` / ``.json`` / ``.jsonl.gz`` / ``.json.gz`` file into a Dataset, without hub access.

    The file holds either one JSON list of objects or one JSON object per line (blank lines are ignored). Every
    key seen in any row becomes a column (rows lacking it get None), so nothing is silently dropped. An empty file
    gives an empty Dataset.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: invalid JSON (naming the line number), a row that is not an object, or values Arrow cannot
            put in one column (e.g. a number in one row and a string in another).
    """
    records = _read_json_records(path)
    columns: dict[str, None] = {}  # ordered union of keys: Dataset.from_list only looks at the first row's keys
    for record in records:
        for key in record:
            columns.setdefault(key, None)
    try:
        return Dataset.from_dict({key: [record.get(key) for record in records] for key in columns})
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as err:
        raise ValueError(f"{path}: cannot build a Dataset from its rows: {err}") from None


# --------------------------------------------------------------------------------------------------------------------
# OpenAssistant
# --------------------------------------------------------------------------------------------------------------------


def _render_oasst_text(turns: list[tuple[str, str]]) -> str:
    speaker = {"user": "User", "assistant": "Assistant"}
    rendered = "\n\n".join(f"{speaker[role]}: {text}" for role, text in turns)
    return rendered + "\n\nAssistant:"


def load_oasst_ranked(
    path: str | os.PathLike | None = None,
    conversational: bool = True,
    include_synthetic: bool = False,
    min_completions: int = 2,
    *,
    drop_contradictory: bool = True,
) -> Dataset:
    """Turn a raw OpenAssistant (oasst1) message-tree file into a ranked data set.

    For each parent message, its assistant replies with a non-null ``rank`` form one group: ``prompt`` is the
    conversation from the tree root down to and including the parent, ``completions`` are the replies' texts and
    ``ranks`` their OASST ranks (0 = best; kept as in the file, so they may have gaps where a sibling was deleted
    or left unranked). Columns ``message_tree_id`` and ``parent_id`` identify the group. Groups come in the file
    order of their parents; replies within a group in file order.

    Formats:
        - ``conversational=True``: ``prompt`` is a list of ``{"role": "user"|"assistant", "content"}`` messages and
          each completion is ``[{"role": "assistant", "content": text}]``.
        - ``conversational=False``: ``prompt`` is ``"User: ...\\n\\nAssistant: ...\\n\\nUser: ...\\n\\nAssistant:"``
          (ends with ``"Assistant:"``) and each completion is ``" " + text`` (leading space, the same convention as
          :func:`load_hh_rlhf`, so ``prompt + completion`` reads naturally).

    Deleted messages are skipped, and so are groups whose parent or any ancestor is deleted or missing. With
    ``include_synthetic=False`` synthetic messages are treated the same way. Groups with fewer than
    ``min_completions`` ranked replies are dropped. With ``drop_contradictory=True`` a group in which the same
    reply text has two different ranks is dropped (it carries no consistent preference and would fail
    :func:`validate_ranked_example`); pass False to keep it as-is.

    Raises:
        FileNotFoundError: the file does not exist (``path=None`` looks in
            ``shared_data_dir()/oasst1/oasst1_en_validation.messages.jsonl``).
        ValueError: ``min_completions < 1``, or a message lacking ``message_id`` / ``role`` / ``text``.
    """
    if min_completions < 1:
        raise ValueError(f"min_completions must be >= 1, got {min_completions}")
    if path is None:
        path = shared_data_dir() / _OASST_DEFAULT_FILE
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"OpenAssistant message file not found: {path} (pass `path`, or set TRL_EXT_SHARED_DATA to the folder "
            f"holding {_OASST_DEFAULT_FILE})"
        )
    messages = _read_json_records(path)
    for line_index, message in enumerate(messages):
        for key in ("message_id", "role", "text"):
            if key not in message:
                raise ValueError(f"{path}: message {line_index} has no field '{key}'")

    def excluded(message: dict) -> bool:
        return bool(message.get("deleted")) or (not include_synthetic and bool(message.get("synthetic")))

    by_id = {message["message_id"]: message for message in messages}
    position = {message["message_id"]: line_index for line_index, message in enumerate(messages)}
    children: dict[str, list[dict]] = defaultdict(list)
    for message in messages:
        if (
            message["role"] == "assistant"
            and message.get("rank") is not None
            and message.get("parent_id") is not None
            and not excluded(message)
        ):
            children[message["parent_id"]].append(message)

    dropped: Counter[str] = Counter()
    rows: dict[str, list] = {"prompt": [], "completions": [], "ranks": [], "message_tree_id": [], "parent_id": []}
    # Unknown parents sort last so a truncated file still gives a deterministic order.
    for parent_id in sorted(children, key=lambda pid: position.get(pid, len(messages))):
        replies = children[parent_id]
        chain: list[dict] = []
        node_id: str | None = parent_id
        broken = False
        while node_id is not None:
            node = by_id.get(node_id)
            if node is None or excluded(node) or len(chain) > len(messages):  # missing, deleted, or a cycle
                broken = True
                break
            chain.append(node)
            node_id = node.get("parent_id")
        if broken:
            dropped["deleted_or_missing_ancestor"] += 1
            continue
        if len(replies) < min_completions:
            dropped[f"fewer_than_{min_completions}_replies"] += 1
            continue
        if drop_contradictory:
            rank_of: dict[str, int] = {}
            if any(rank_of.setdefault(reply["text"], reply["rank"]) != reply["rank"] for reply in replies):
                dropped["contradictory_duplicate"] += 1
                logger.warning(
                    "load_oasst_ranked: dropping the group under parent %s: the same reply text has different ranks",
                    parent_id,
                )
                continue

        turns = [("user" if node["role"] == "prompter" else "assistant", node["text"]) for node in reversed(chain)]
        if conversational:
            rows["prompt"].append([{"role": role, "content": text} for role, text in turns])
            rows["completions"].append([[{"role": "assistant", "content": reply["text"]}] for reply in replies])
        else:
            rows["prompt"].append(_render_oasst_text(turns))
            rows["completions"].append([" " + reply["text"] for reply in replies])
        rows["ranks"].append([int(reply["rank"]) for reply in replies])
        rows["message_tree_id"].append(chain[-1].get("message_tree_id") or chain[-1]["message_id"])
        rows["parent_id"].append(parent_id)

    message_feature = {"role": Value("string"), "content": Value("string")}
    features = Features(
        {
            "prompt": List(message_feature) if conversational else Value("string"),
            "completions": List(List(message_feature)) if conversational else List(Value("string")),
            "ranks": List(Value("int64")),
            "message_tree_id": Value("string"),
            "parent_id": Value("string"),
        }
    )
    histogram = Counter(len(ranks) for ranks in rows["ranks"])
    logger.info(
        "load_oasst_ranked: %d ranked groups from %s (K histogram %s); dropped %s",
        len(rows["ranks"]),
        path,
        dict(sorted(histogram.items())),
        dict(dropped) or "none",
    )
    return Dataset.from_dict(rows, features=features)


# --------------------------------------------------------------------------------------------------------------------
# Anthropic HH-RLHF
# --------------------------------------------------------------------------------------------------------------------


def _hh_split(text: Any) -> tuple[str, str] | None:
    """``(prompt, reply)`` of one HH transcript, split after its last ``"\\n\\nAssistant:"``; None if impossible."""
    if not isinstance(text, str):
        return None
    cut = text.rfind(_HH_ASSISTANT)
    if cut < 0:
        return None
    cut += len(_HH_ASSISTANT)
    return text[:cut], text[cut:]


def load_hh_rlhf(
    paths: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
) -> tuple[Dataset, dict[str, int]]:
    """Load Anthropic HH-RLHF ``{"chosen", "rejected"}`` transcripts as explicit prompt / chosen / rejected.

    ``prompt`` is the transcript up to and including its last ``"\\n\\nAssistant:"`` (so it ends with
    ``"Assistant:"``), ``chosen`` / ``rejected`` are the final replies *with* their leading space kept, so
    ``prompt + chosen`` is exactly the original transcript. A ``source`` column holds the file stem (e.g.
    ``"helpful-base_test"``).

    Rows that cannot form a clean pair are skipped, counted and logged with a warning: no ``"\\n\\nAssistant:"``
    or non-string fields (``skipped_unparseable``), dialogues that differ before the last reply
    (``skipped_prompt_mismatch``), identical replies (``skipped_identical``), and a blank chosen or rejected reply
    (``skipped_empty_reply``: an empty target is not a usable completion, same rule as
    :func:`validate_ranked_example`).

    Args:
        paths: one file or several (.jsonl / .jsonl.gz / .json ...); None loads ``helpful-base_test.jsonl.gz`` and
            ``harmless-base_test.jsonl.gz`` from ``shared_data_dir()/"hh-rlhf"``.

    Returns:
        ``(dataset, stats)`` with stats keys ``rows``, ``kept``, ``skipped_unparseable``,
        ``skipped_prompt_mismatch``, ``skipped_identical``, ``skipped_empty_reply``.

    Raises:
        FileNotFoundError: a file does not exist.
    """
    if paths is None:
        path_list = [shared_data_dir() / "hh-rlhf" / name for name in _HH_DEFAULT_FILES]
    elif isinstance(paths, (str, os.PathLike)):
        path_list = [Path(paths)]
    else:
        path_list = [Path(p) for p in paths]

    stats = {
        "rows": 0,
        "kept": 0,
        "skipped_unparseable": 0,
        "skipped_prompt_mismatch": 0,
        "skipped_identical": 0,
        "skipped_empty_reply": 0,
    }
    rows: dict[str, list[str]] = {"prompt": [], "chosen": [], "rejected": [], "source": []}
    for path in path_list:
        if not path.is_file():
            raise FileNotFoundError(
                f"HH-RLHF file not found: {path} (pass `paths`, or set TRL_EXT_SHARED_DATA to the folder holding "
                f"hh-rlhf/)"
            )
        source = path.name.split(".")[0]  # "helpful-base_test.jsonl.gz" -> "helpful-base_test"
        skipped_here: Counter[str] = Counter()
        for record in _read_json_records(path):
            stats["rows"] += 1
            chosen_split = _hh_split(record.get("chosen"))
            rejected_split = _hh_split(record.get("rejected"))
            if chosen_split is None or rejected_split is None:
                reason = "skipped_unparseable"
            elif chosen_split[0] != rejected_split[0]:
                reason = "skipped_prompt_mismatch"
            elif chosen_split[1].strip() == rejected_split[1].strip():
                reason = "skipped_identical"
            elif not chosen_split[1].strip() or not rejected_split[1].strip():
                reason = "skipped_empty_reply"
            else:
                rows["prompt"].append(chosen_split[0])
                rows["chosen"].append(chosen_split[1])
                rows["rejected"].append(rejected_split[1])
                rows["source"].append(source)
                stats["kept"] += 1
                continue
            stats[reason] += 1
            skipped_here[reason] += 1
        if skipped_here:
            logger.warning("load_hh_rlhf: %s: skipped %s", path.name, dict(skipped_here))

    features = Features({name: Value("string") for name in rows})
    logger.info("load_hh_rlhf: %s", stats)
    return Dataset.from_dict(rows, features=features), stats
