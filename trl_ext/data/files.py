"""Reading local preference files (.json / .jsonl, optionally gzipped) without any hub access: `datasets`' json
loader, and a line-by-line reader that names the line of a bad row."""

from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset

logger = logging.getLogger(__name__)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"preference data file not found: {path}")
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return handle.read()
    return path.read_text(encoding="utf-8")


def read_json_lines(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """Rows of a .json/.jsonl(.gz) file, each with where it is: ``("line 3", row)`` for one JSON object per line
    (blank lines skipped, numbers as in the file), ``("element 2", row)`` for a file holding one JSON list."""
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
        return [(f"element {position}", record) for position, record in enumerate(records)]

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
        records.append((f"line {line_number}", record))
    return records


def read_json_records(path: str | os.PathLike) -> list[dict]:
    """Rows of a .json/.jsonl(.gz) file holding either one JSON list of objects or one JSON object per line."""
    return [record for _, record in read_json_lines(path)]


def load_preference_file(path: str | os.PathLike) -> Dataset:
    """Load a local ``.jsonl`` / ``.json`` / ``.jsonl.gz`` / ``.json.gz`` file into a Dataset, without hub access.

    Read by `datasets`' json loader (`load_dataset("json", data_files=path)`, kept in memory). The file holds either
    one JSON list of objects or one JSON object per line (blank lines are ignored). Every key seen in any row becomes
    a column (rows lacking it get None), so nothing is silently dropped. An empty file gives an empty Dataset, with a
    warning.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: invalid JSON (naming the line number), a row that is not an object, or a column holding two kinds
            of value (e.g. a number in one row and a string in another: `datasets` would load it as untyped JSON).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"preference data file not found: {path}")
    if _is_blank(path):
        logger.warning("load_preference_file: %s holds no rows (the file is empty or blank): an empty dataset.", path)
        return Dataset.from_dict({})
    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # one small local file: no "Generating train split" bar per load
    try:
        # force_redownload: a file rewritten in place (same path, same size, same mtime tick) is never served stale
        dataset = datasets.load_dataset("json", data_files=str(path), split="train", keep_in_memory=True,
                                        download_mode="force_redownload")
    except Exception as err:  # noqa: BLE001  (datasets' errors name neither the line nor the field: find them)
        raise ValueError(_diagnose(path, err)) from None
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
    if _holds_json(dataset.features):  # a column of mixed kinds, which `datasets` keeps as untyped JSON values
        records = read_json_records(path)  # the values as written (decoded JSON values can lose their kind)
        where = _first_mixed_value(records, list(dict.fromkeys(key for record in records for key in record)))
        raise ValueError(f"{path}: {where or 'a column holds values of more than one kind'}")
    return dataset


def _is_blank(path: Path) -> bool:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return False
    return True


def _holds_json(feature: Any) -> bool:
    """Whether a feature (or one nested in it) is `datasets.Json`: values of more than one kind in one column."""
    if isinstance(feature, datasets.Json):
        return True
    if isinstance(feature, dict):
        return any(_holds_json(inner) for inner in feature.values())
    inner = getattr(feature, "feature", None)  # List, LargeList, Sequence
    return inner is not None and _holds_json(inner)


def _diagnose(path: Path, err: Exception) -> str:
    """One line naming what in the file stopped `datasets`' json loader: the line (invalid JSON, not an object), the
    row and field (a column of two kinds), or else the loader's own message."""
    records = read_json_records(path)  # raises ValueError naming the line of invalid JSON or a non-object row
    columns = list(dict.fromkeys(key for record in records for key in record))
    where = _first_mixed_value(records, columns)
    cause = err.__cause__ or err
    return f"{path}: {where or f'cannot load it as JSON rows: {str(cause).splitlines()[0] if str(cause) else type(cause).__name__}'}"


def _kind(value: Any) -> str | None:
    """What a JSON value holds, in comparable words ("text", "number", "a list of texts", ...); None for null.
    A list holding two kinds is reported as "mixed: <kinds>"."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "message" if "content" in value else "object"
    kinds = {k for k in map(_kind, value) if k is not None}
    if len(kinds) > 1:
        return "mixed: " + " and ".join(sorted(kinds))
    return f"a list of {kinds.pop()}s" if kinds else "a list"


def _first_mixed_value(records: list[dict], columns: list[str]) -> str | None:
    """"row i, field 'f': ..." for the first value whose kind differs from the column's first value (or that mixes
    kinds itself), which is what keeps Arrow from building one column."""
    for column in columns:
        first: tuple[int, str] | None = None
        for index, record in enumerate(records):
            kind = _kind(record.get(column))
            if kind is None:
                continue
            if kind.startswith("mixed: "):
                return f"row {index}, field '{column}': holds {kind[7:]}; one column holds one kind of value"
            if first is None:
                first = (index, kind)
            elif kind != first[1]:
                return (f"row {index}, field '{column}': {kind}, where row {first[0]} has {first[1]}; "
                        "one column holds one kind of value")
    return None


