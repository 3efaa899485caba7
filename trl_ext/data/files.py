"""Reading local preference files (.json / .jsonl, optionally gzipped) without any hub access."""

from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
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

    The file holds either one JSON list of objects or one JSON object per line (blank lines are ignored). Every
    key seen in any row becomes a column (rows lacking it get None), so nothing is silently dropped. An empty file
    gives an empty Dataset, with a warning.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: invalid JSON (naming the line number), a row that is not an object, or values Arrow cannot
            put in one column (e.g. a number in one row and a string in another).
    """
    records = read_json_records(path)
    if not records:
        logger.warning("load_preference_file: %s holds no rows (the file is empty or blank): an empty dataset.", path)
    columns: dict[str, None] = {}  # ordered union of keys: Dataset.from_list only looks at the first row's keys
    for record in records:
        for key in record:
            columns.setdefault(key, None)
    try:
        return Dataset.from_dict({key: [record.get(key) for record in records] for key in columns})
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as err:
        where = _first_mixed_value(records, list(columns))
        raise ValueError(f"{path}: {where or f'cannot build a Dataset from its rows: {err}'}") from None


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


