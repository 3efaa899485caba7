"""The file loaders never drop, merge or round anything silently: a bad value is an error naming the file line (or
message id) and field; what is left out is counted by reason and printed at WARNING; an empty result says why."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from trl_ext.data import load_hh_rlhf, load_oasst_ranked, load_preference_file


def _message(mid, parent, role, text, rank=None, deleted=False, synthetic=False, tree="t1", **extra):
    return {"message_id": mid, "parent_id": parent, "role": role, "text": text, "rank": rank, "deleted": deleted,
            "synthetic": synthetic, "message_tree_id": tree, **extra}


TREE = [
    _message("r", None, "prompter", "Hi?"),
    _message("a1", "r", "assistant", "Hello.", rank=1),
    _message("a2", "r", "assistant", "Hey there!", rank=0),
    _message("a3", "r", "assistant", "Hi.", rank=2),
]


def _write(path: Path, messages: list) -> Path:
    path.write_text("".join(json.dumps(m) + "\n" for m in messages))
    return path


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------------------------------------------------
# OpenAssistant: ranks
# --------------------------------------------------------------------------------------------------------------------


def test_a_fractional_rank_is_refused_with_its_message_id_and_line(tmp_path):
    messages = [*TREE[:2], dict(TREE[2], rank=0.5), TREE[3]]
    with pytest.raises(ValueError, match=r"msgs.jsonl, line 3, message 'a2', field 'rank': 0.5; ranks must be "
                                         r"non-negative integers"):
        load_oasst_ranked(_write(tmp_path / "msgs.jsonl", messages))


@pytest.mark.parametrize("bad", ["x", True, -1, float("nan")])
def test_a_rank_that_is_not_a_non_negative_integer_is_refused(tmp_path, bad):
    messages = [*TREE[:3], dict(TREE[3], rank=bad)]
    with pytest.raises(ValueError, match=r"line 4, message 'a3', field 'rank'"):
        load_oasst_ranked(_write(tmp_path / "msgs.jsonl", messages))


def test_an_integral_float_rank_is_a_rank(tmp_path):
    messages = [*TREE[:2], dict(TREE[2], rank=0.0), TREE[3]]
    assert load_oasst_ranked(_write(tmp_path / "msgs.jsonl", messages))["ranks"] == [[1, 0, 2]]


# --------------------------------------------------------------------------------------------------------------------
# OpenAssistant: duplicates, missing fields, what is dropped
# --------------------------------------------------------------------------------------------------------------------


def test_the_same_file_twice_is_deduplicated_counted_and_said(tmp_path, caplog):
    once = load_oasst_ranked(_write(tmp_path / "once.jsonl", TREE))
    with caplog.at_level(logging.WARNING):
        twice = load_oasst_ranked(_write(tmp_path / "twice.jsonl", TREE + TREE))
    assert twice.to_list() == once.to_list() and twice["ranks"] == [[1, 0, 2]]  # not one group of six, ranks doubled
    assert any("4 duplicate messages (same message_id)" in w for w in _warnings(caplog)), _warnings(caplog)


def test_two_versions_of_one_message_are_refused(tmp_path):
    # e.g. oasst1 and oasst2 concatenated, where a reply was re-ranked in the later release
    messages = TREE + [dict(TREE[1], rank=3)]
    with pytest.raises(ValueError, match=r"message 'a1' is on line 2 and line 5 with different 'rank' \(1 vs 3\)"):
        load_oasst_ranked(_write(tmp_path / "msgs.jsonl", messages))


def test_messages_without_parent_id_are_counted_and_the_empty_result_says_why(tmp_path, caplog):
    messages = [{k: v for k, v in m.items() if k != "parent_id"} for m in TREE]
    with caplog.at_level(logging.WARNING):
        data = load_oasst_ranked(_write(tmp_path / "msgs.jsonl", messages))
    assert len(data) == 0
    text = " | ".join(_warnings(caplog))
    assert "0 ranked groups" in text and "3 replies without a parent_id" in text, text


def test_every_left_out_reply_is_counted_by_reason(tmp_path, caplog):
    messages = TREE + [
        _message("a4", "r", "assistant", "unranked"),
        _message("a5", "r", "assistant", "gone", rank=3, deleted=True),
        _message("a6", "r", "assistant", "made up", rank=4, synthetic=True),
        _message("p2", "a2", "prompter", "More?"),
        _message("b1", "p2", "assistant", "only one", rank=0),
        _message("c1", "nowhere", "assistant", "orphan", rank=0),
        _message("c2", "nowhere", "assistant", "orphan too", rank=1),
    ]
    with caplog.at_level(logging.WARNING):
        data = load_oasst_ranked(_write(tmp_path / "msgs.jsonl", messages))
    assert data["parent_id"] == ["r"]
    (line,) = [w for w in _warnings(caplog) if "load_oasst_ranked" in w]
    for part in ("1 ranked groups", "1 unranked", "1 deleted", "1 synthetic", "1 in groups with fewer than 2 ranked "
                 "replies", "2 whose parent or an ancestor is not in the file"):
        assert part in line, (part, line)


def test_a_file_where_nothing_is_dropped_prints_no_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        load_oasst_ranked(_write(tmp_path / "msgs.jsonl", TREE))
    assert not _warnings(caplog)


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_an_empty_or_blank_file_gives_no_group_and_says_why(tmp_path, caplog, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with caplog.at_level(logging.WARNING):
        data = load_oasst_ranked(path)
    assert len(data) == 0 and data.column_names == ["prompt", "completions", "ranks", "message_tree_id", "parent_id"]
    assert any("empty.jsonl holds no messages" in w for w in _warnings(caplog)), _warnings(caplog)


def test_replies_whose_parent_is_missing_give_no_group_and_say_why(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        data = load_oasst_ranked(_write(tmp_path / "msgs.jsonl", TREE[1:]))
    assert len(data) == 0
    assert any("0 ranked groups" in w and "3 whose parent or an ancestor is not in the file" in w
               for w in _warnings(caplog)), _warnings(caplog)


def test_a_deleted_root_gives_no_group_and_says_why(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        data = load_oasst_ranked(_write(tmp_path / "msgs.jsonl", [dict(TREE[0], deleted=True), *TREE[1:]]))
    assert len(data) == 0
    assert any("0 ranked groups" in w and "3 whose parent or an ancestor is deleted" in w
               for w in _warnings(caplog)), _warnings(caplog)


@pytest.mark.parametrize("change,error", [
    ({"role": None}, r"line 2, message 'a1', field 'role': None; expected 'prompter' or 'assistant'"),
    ({"role": "system"}, r"line 2, message 'a1', field 'role': 'system'; expected 'prompter' or 'assistant'"),
    ({"text": None}, r"line 2, message 'a1', field 'text': None; expected text"),
    ({"text": 3}, r"line 2, message 'a1', field 'text': 3; expected text"),
    ({"message_id": None}, r"line 2, field 'message_id': None"),
])
def test_a_bad_message_field_names_the_line_and_message(tmp_path, change, error):
    messages = [TREE[0], dict(TREE[1], **change), *TREE[2:]]
    with pytest.raises(ValueError, match=error):
        load_oasst_ranked(_write(tmp_path / "msgs.jsonl", messages))


@pytest.mark.parametrize("field", ["role", "text", "message_id"])
def test_a_missing_message_field_names_the_line_and_message(tmp_path, field):
    messages = [TREE[0], {k: v for k, v in TREE[1].items() if k != field}, *TREE[2:]]
    with pytest.raises(ValueError, match=rf"line 2, (message 'a1', )?field '{field}': missing"):
        load_oasst_ranked(_write(tmp_path / "msgs.jsonl", messages))


def _tree(*replies) -> dict:
    return {"message_tree_id": "t1", "prompt": {"message_id": "q", "role": "prompter", "text": "Why?", "rank": None,
                                                "replies": list(replies)}}


def _reply(mid, text, rank, **extra):
    return {"message_id": mid, "role": "assistant", "text": text, "rank": rank, "replies": [], **extra}


def test_a_reply_that_is_a_string_in_a_tree_file_names_the_line_and_parent(tmp_path):
    path = _write(tmp_path / "x.trees.jsonl", [_tree(_reply("a1", "ok", 0), _reply("a2", "no", 1)),
                                                _tree(_reply("b1", "fine", 0), "just a string")])
    with pytest.raises(ValueError, match=r"x.trees.jsonl, line 2, message 'q', field 'replies': reply 1 is a str "
                                         r"\('just a string'\), expected a message object"):
        load_oasst_ranked(path)


def test_a_tree_reply_without_role_names_the_line_and_message(tmp_path):
    bad = {k: v for k, v in _reply("a2", "no", 1).items() if k != "role"}
    with gzip.open(tmp_path / "x.trees.jsonl.gz", "wt") as handle:
        handle.write(json.dumps(_tree(_reply("a1", "ok", 0), bad)) + "\n")
    with pytest.raises(ValueError, match=r"line 1, message 'a2', field 'role': missing"):
        load_oasst_ranked(tmp_path / "x.trees.jsonl.gz")


def test_a_null_reply_text_in_a_tree_is_refused(tmp_path):
    path = _write(tmp_path / "x.trees.jsonl", [_tree(_reply("a1", None, 0), _reply("a2", "no", 1))])
    with pytest.raises(ValueError, match=r"line 1, message 'a1', field 'text': None; expected text"):
        load_oasst_ranked(path)


# --------------------------------------------------------------------------------------------------------------------
# Preference files and HH-RLHF
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", " \n\n"])
def test_an_empty_preference_file_says_so(tmp_path, caplog, content):
    path = tmp_path / "prefs.jsonl"
    path.write_text(content)
    with caplog.at_level(logging.WARNING):
        assert len(load_preference_file(path)) == 0
    assert any("prefs.jsonl holds no rows" in w for w in _warnings(caplog)), _warnings(caplog)


def test_an_empty_hh_file_says_so(tmp_path, caplog):
    path = tmp_path / "helpful-base_test.jsonl"
    path.write_text("")
    with caplog.at_level(logging.WARNING):
        data, stats = load_hh_rlhf(path)
    assert len(data) == 0 and stats["rows"] == 0
    assert any("helpful-base_test.jsonl holds no rows" in w for w in _warnings(caplog)), _warnings(caplog)


def test_hh_rows_that_give_no_pair_say_why(tmp_path, caplog):
    path = tmp_path / "hh.jsonl"
    h, a = "\n\nHuman:", "\n\nAssistant:"
    _write(path, [{"chosen": f"{h} hi{a} same", "rejected": f"{h} hi{a} same"}])
    with caplog.at_level(logging.WARNING):
        data, _ = load_hh_rlhf(path)
    assert len(data) == 0
    assert any("0 pairs" in w and "skipped_identical" in w for w in _warnings(caplog)), _warnings(caplog)
