"""trl_ext.data.load_preference_file reads through `datasets`' json loader and keeps the errors that name the row."""

from __future__ import annotations

import gzip
import json
import logging
import os

import datasets
import pytest

from trl_ext.data import load_preference_file


def test_reads_through_datasets_json_loader(tmp_path, monkeypatch):
    path = tmp_path / "pairs.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    calls = []
    real = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **kw: calls.append((a, kw)) or real(*a, **kw))
    data = load_preference_file(path)
    assert [(a[0], kw["data_files"]) for a, kw in calls] == [("json", str(path))]
    assert data.to_list() == [{"prompt": "p", "chosen": "a", "rejected": "b"}]
    assert data.cache_files == []  # in memory, as a Dataset built from rows: no file in the datasets cache to go stale


def test_a_file_rewritten_in_place_is_read_again(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    stat = path.stat()
    assert load_preference_file(path)["chosen"] == ["a"]
    path.write_text('{"prompt": "p", "chosen": "z", "rejected": "b"}\n')  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same modification time
    assert load_preference_file(path)["chosen"] == ["z"]


def test_bad_json_names_the_files_line_after_blank_lines(tmp_path):
    """pyarrow's message counts rows of its block ("in row 1"); the error names the line of the file."""
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n\n\n{"prompt": "q", "chosen": }\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: invalid JSON on line 4"):
        load_preference_file(path)


@pytest.mark.parametrize("second, message", [
    ('{"prompt": "q", "weight": true}', "row 1, field 'weight': true/false, where row 0 has number"),
    ('{"prompt": "q", "weight": "2"}', "row 1, field 'weight': text, where row 0 has number"),
])
def test_a_column_of_two_kinds_is_refused_not_loaded_as_untyped_json(tmp_path, second, message):
    """`datasets` would load these as `Json` values (a bool or a text weight reaching the trainer)."""
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"prompt": "p", "weight": 1}\n' + second + "\n")
    with pytest.raises(ValueError, match=rf"mixed.jsonl: {message}"):
        load_preference_file(path)


@pytest.mark.parametrize("name", ["empty.jsonl", "blank.json.gz"])
def test_an_empty_file_gives_an_empty_dataset_with_a_warning(tmp_path, caplog, name):
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as handle:
            handle.write("\n  \n")
    else:
        path.write_text("")
    with caplog.at_level(logging.WARNING, logger="trl_ext.data.files"):
        data = load_preference_file(path)
    assert len(data) == 0 and "holds no rows" in caplog.text
