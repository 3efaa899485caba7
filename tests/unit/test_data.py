"""Tests for trl_ext.data: ranks -> pairs expansion, validation, and the real-data loaders."""

from __future__ import annotations

import gzip
import json
import math
import re
from collections import Counter
from math import comb
from pathlib import Path

import pytest
from datasets import Dataset

from trl_ext.data import (
    PAIR_STRATEGIES,
    RankingStats,
    is_ranked_dataset,
    load_hh_rlhf,
    load_oasst_ranked,
    load_preference_file,
    rank_pairs,
    ranked_to_pairs,
    ranks_from_scores,
    validate_ranked_example,
)
from tests.helpers import shared_data_dir

OASST_FILE = shared_data_dir() / "oasst1" / "oasst1_en_validation.messages.jsonl"
HH_FILES = [shared_data_dir() / "hh-rlhf" / f"{name}.jsonl.gz" for name in ("helpful-base_test", "harmless-base_test")]


PAIR_COLUMNS = ["prompt", "chosen", "rejected", "group_id", "chosen_rank", "rejected_rank", "weight"]


def _msgs(text: str, role: str = "assistant") -> list[dict]:
    return [{"role": role, "content": text}]


# ---------------------------------------------------------------------------------------------------------------------
# ranks_from_scores / is_ranked_dataset
# ---------------------------------------------------------------------------------------------------------------------


def test_ranks_from_scores_dense_with_ties():
    assert ranks_from_scores([0.1, 0.9, 0.9, 0.5]) == [2, 0, 0, 1]
    assert ranks_from_scores([3, 1, 2]) == [0, 2, 1]
    assert ranks_from_scores([1.0, 1.0]) == [0, 0]
    assert ranks_from_scores([]) == []


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), "0.5"])
def test_ranks_from_scores_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="position 1"):
        ranks_from_scores([0.1, bad])


def test_is_ranked_dataset():
    assert is_ranked_dataset(["prompt", "completions", "ranks"])
    assert is_ranked_dataset(["prompt", "completions", "scores", "id"])
    assert not is_ranked_dataset(["prompt", "chosen", "rejected"])
    assert not is_ranked_dataset(["prompt", "completions"])


# ---------------------------------------------------------------------------------------------------------------------
# rank_pairs
# ---------------------------------------------------------------------------------------------------------------------


def test_rank_pairs_all_no_ties():
    pairs, tied = rank_pairs([2, 0, 1])
    # Better ones in (rank, index) order: 1 (rank 0), 2 (rank 1), 0 (rank 2).
    assert pairs == [(1, 2), (1, 0), (2, 0)]
    assert tied == 0


def test_rank_pairs_all_with_ties():
    ranks = [1, 0, 1, 2, 0]
    pairs, tied = rank_pairs(ranks, "all")
    assert pairs == [
        (1, 0), (1, 2), (1, 3),
        (4, 0), (4, 2), (4, 3),
        (0, 3), (2, 3),
    ]  # fmt: skip
    assert tied == 2  # (1, 4) at rank 0 and (0, 2) at rank 1
    assert len(pairs) == comb(5, 2) - tied
    assert all(ranks[b] < ranks[w] for b, w in pairs)


def test_rank_pairs_best_vs_rest_with_ties():
    pairs, tied = rank_pairs([1, 0, 1, 2, 0], "best_vs_rest")
    assert pairs == [(1, 0), (1, 2), (1, 3), (4, 0), (4, 2), (4, 3)]
    assert tied == 2


def test_rank_pairs_adjacent_with_ties_and_gaps():
    pairs, tied = rank_pairs([1, 0, 1, 2, 0], "adjacent")
    assert pairs == [(1, 0), (1, 2), (4, 0), (4, 2), (0, 3), (2, 3)]
    assert tied == 2
    # Gaps in rank numbers do not matter: the next distinct worse level is used.
    assert rank_pairs([5, 0, 9], "adjacent") == ([(1, 0), (0, 2)], 0)


@pytest.mark.parametrize("strategy", PAIR_STRATEGIES)
def test_rank_pairs_all_tied_and_small(strategy):
    assert rank_pairs([3, 3, 3], strategy) == ([], 3)
    assert rank_pairs([0], strategy) == ([], 0)
    assert rank_pairs([], strategy) == ([], 0)


def test_rank_pairs_unknown_strategy():
    with pytest.raises(ValueError, match=r"'pairwise'.*all, best_vs_rest, adjacent"):
        rank_pairs([0, 1], "pairwise")


def test_rank_pairs_takes_the_option_name_the_configs_use():
    assert rank_pairs([1, 0, 2], pair_strategy="adjacent") == ([(1, 0), (0, 2)], 0)
    with pytest.warns(FutureWarning, match="now called pair_strategy"):
        assert rank_pairs([1, 0, 2], strategy="adjacent") == ([(1, 0), (0, 2)], 0)


# ---------------------------------------------------------------------------------------------------------------------
# ranked_to_pairs
# ---------------------------------------------------------------------------------------------------------------------


def _ranked_rows() -> list[dict]:
    return [
        {"prompt": "p0", "completions": ["a", "b", "c"], "ranks": [2, 0, 1], "id": "x0"},
        {"prompt": "p1", "completions": ["a", "b", "c", "d"], "ranks": [0, 1, 0, 2], "id": "x1"},  # one tie
        {"prompt": "p2", "completions": ["only"], "ranks": [0], "id": "x2"},  # K < 2
        {"prompt": "p3", "completions": ["a", "b"], "ranks": [1, 1], "id": "x3"},  # all tied
        {"prompt": "p4", "completions": ["a", "b", "c", "d", "e"], "ranks": [4, 3, 2, 1, 0], "id": "x4"},
    ]


def test_ranked_to_pairs_counts_and_order():
    rows = _ranked_rows()
    pairs, stats = ranked_to_pairs(Dataset.from_list(rows))
    expected = 0
    expected_tied = 0
    for row in rows:
        _, tied = rank_pairs(row["ranks"])
        expected_tied += tied
        if len(row["completions"]) >= 2:
            expected += comb(len(row["completions"]), 2) - tied
    assert expected == 3 + 5 + 10
    assert len(pairs) == stats.pairs == expected
    assert stats.tied_pairs == expected_tied == 2
    assert stats.rows == 5
    assert stats.groups == 3
    assert stats.skipped_small_groups == 1
    assert stats.skipped_all_tied == 1
    assert stats.skipped_invalid == 0
    assert all(c < r for c, r in zip(pairs["chosen_rank"], pairs["rejected_rank"]))
    # Preferred first, with the right texts: row 0 pairs in rank_pairs order.
    first = pairs.filter(lambda ex: ex["group_id"] == 0)
    assert list(zip(first["chosen"], first["rejected"])) == [("b", "c"), ("b", "a"), ("c", "a")]
    assert sorted(set(pairs["group_id"])) == [0, 1, 4]
    assert pairs["group_id"] == sorted(pairs["group_id"])  # rows stay in input order
    assert "ranks" not in pairs.column_names and "completions" not in pairs.column_names
    assert "chosen_score" not in pairs.column_names
    summary = stats.summary()
    assert "18 pairs" in summary and "\n" not in summary


# Per ranked row (K<2 and all-tied rows give none): best_vs_rest 2 + 2*2 + 4; adjacent 2 + (2*1 + 1) + 4.
@pytest.mark.parametrize("strategy,expected", [("all", 18), ("best_vs_rest", 10), ("adjacent", 9)])
def test_ranked_to_pairs_strategies(strategy, expected):
    pairs, stats = ranked_to_pairs(Dataset.from_list(_ranked_rows()), pair_strategy=strategy)
    assert len(pairs) == stats.pairs == expected
    assert all(c < r for c, r in zip(pairs["chosen_rank"], pairs["rejected_rank"]))


def test_ranked_to_pairs_group_weights_sum_to_one():
    pairs, _ = ranked_to_pairs(Dataset.from_list(_ranked_rows()))
    totals: dict[int, float] = {}
    for group, weight in zip(pairs["group_id"], pairs["weight"]):
        totals[group] = totals.get(group, 0.0) + weight
    assert totals.keys() == {0, 1, 4}
    assert all(math.isclose(total, 1.0) for total in totals.values())
    assert math.isclose(pairs["weight"][0], 1 / 3)  # group 0 has 3 pairs


def test_ranked_to_pairs_uniform_weights():
    pairs, _ = ranked_to_pairs(Dataset.from_list(_ranked_rows()), weighting="uniform")
    assert set(pairs["weight"]) == {1.0}


def test_ranked_to_pairs_scores():
    rows = [
        {"prompt": "p", "completions": ["lo", "hi", "mid", "hi2"], "scores": [0.1, 0.9, 0.5, 0.9]},
        {"prompt": "q", "completions": ["x", "y"], "scores": [-1.0, 2.5]},
    ]
    pairs, stats = ranked_to_pairs(Dataset.from_list(rows))
    assert len(pairs) == comb(4, 2) - 1 + 1
    assert stats.tied_pairs == 1
    assert all(c > r for c, r in zip(pairs["chosen_score"], pairs["rejected_score"]))
    assert all(c < r for c, r in zip(pairs["chosen_rank"], pairs["rejected_rank"]))
    assert pairs[0]["chosen"] == "hi" and pairs[0]["rejected"] == "mid"
    assert pairs[len(pairs) - 1]["chosen"] == "y" and pairs[len(pairs) - 1]["rejected"] == "x"


def test_ranked_to_pairs_carries_extra_columns():
    rows = [
        {"prompt": "p", "completions": ["a", "b"], "ranks": [1, 0], "meta": {"src": "s1", "n": 3}, "tags": ["t"]},
        {"prompt": "q", "completions": ["c", "d", "e"], "ranks": [0, 1, 2], "meta": {"src": "s2", "n": 4}, "tags": []},
    ]
    source = Dataset.from_list(rows)
    pairs, _ = ranked_to_pairs(source)
    assert pairs.features["meta"] == source.features["meta"]
    assert pairs["meta"] == [{"src": "s1", "n": 3}] + [{"src": "s2", "n": 4}] * 3
    assert pairs["tags"] == [["t"], [], [], []]
    assert pairs.column_names[:7] == PAIR_COLUMNS


def test_ranked_to_pairs_conversational():
    rows = [
        {
            "prompt": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}],
            "completions": [_msgs("meh"), _msgs("hello!"), _msgs("hey")],
            "ranks": [2, 0, 1],
        }
    ]
    pairs, _ = ranked_to_pairs(Dataset.from_list(rows))
    assert len(pairs) == 3
    assert pairs[0]["prompt"] == rows[0]["prompt"]
    assert pairs[0]["chosen"] == _msgs("hello!") and pairs[0]["rejected"] == _msgs("hey")
    assert pairs[2]["chosen"] == _msgs("hey") and pairs[2]["rejected"] == _msgs("meh")
    # TRL's conversational preference shape: message lists with role/content.
    replies = list(pairs["chosen"]) + list(pairs["rejected"])
    assert all(isinstance(m, list) and m[0]["role"] == "assistant" for m in replies)


def test_ranked_to_pairs_deterministic():
    data = Dataset.from_list(_ranked_rows())
    first, stats1 = ranked_to_pairs(data, pair_strategy="all")
    second, stats2 = ranked_to_pairs(data, pair_strategy="all")
    assert first.to_list() == second.to_list()
    assert stats1 == stats2


def test_ranked_to_pairs_empty_result_has_columns():
    rows = [
        {"prompt": "p", "completions": ["a"], "ranks": [0]},
        {"prompt": "q", "completions": ["a", "b"], "ranks": [0, 0]},
    ]
    pairs, stats = ranked_to_pairs(Dataset.from_list(rows))
    assert len(pairs) == 0
    assert pairs.column_names == PAIR_COLUMNS
    assert stats.skipped_small_groups == 1 and stats.skipped_all_tied == 1
    empty, _ = ranked_to_pairs(Dataset.from_list(rows).select([]))
    assert len(empty) == 0 and "chosen" in empty.column_names


def test_ranked_to_pairs_bad_arguments():
    data = Dataset.from_list(_ranked_rows())
    with pytest.raises(ValueError, match="pair_strategy 'best'"):
        ranked_to_pairs(data, pair_strategy="best")
    with pytest.raises(ValueError, match="weighting 'per_pair'.*group, uniform"):
        ranked_to_pairs(data, weighting="per_pair")
    with pytest.raises(ValueError, match="on_invalid_rows 'ignore'.*raise, skip"):
        ranked_to_pairs(data, on_invalid_rows="ignore")


@pytest.mark.parametrize(
    "drop,missing",
    [("ranks", r"'ranks' or 'scores'"), ("completions", "completions"), ("prompt", "prompt")],
)
def test_ranked_to_pairs_missing_column(drop, missing):
    data = Dataset.from_list(_ranked_rows()).remove_columns(drop)
    with pytest.raises(ValueError, match=rf"missing required column\(s\) \[.*{missing}.*found columns"):
        ranked_to_pairs(data)


def test_ranked_to_pairs_output_column_clash():
    data = Dataset.from_list([{"prompt": "p", "completions": ["a", "b"], "ranks": [0, 1], "group_id": 2}])
    with pytest.raises(ValueError, match="'group_id'"):
        ranked_to_pairs(data)


def test_a_weight_column_weights_the_whole_group():
    data = Dataset.from_list([{"prompt": "p", "completions": ["a", "b", "c"], "ranks": [0, 1, 2], "weight": 2.0},
                              {"prompt": "q", "completions": ["x", "y"], "ranks": [0, 1], "weight": 0.0}])
    pairs, _ = ranked_to_pairs(data)
    assert pairs["weight"] == pytest.approx([2 / 3] * 3 + [0.0])
    uniform, _ = ranked_to_pairs(data, weighting="uniform")
    assert uniform["weight"] == [2.0] * 3 + [0.0]


def test_margin_on_ranked_data_is_refused():
    data = Dataset.from_list([{"prompt": "p", "completions": ["a", "b"], "ranks": [0, 1], "margin": 0.5}])
    with pytest.raises(ValueError, match="'margin' is not supported on ranked data"):
        ranked_to_pairs(data)


# ---------------------------------------------------------------------------------------------------------------------
# Validation: every bad-input case names the row and field, and is skipped with on_invalid_rows="skip"
# ---------------------------------------------------------------------------------------------------------------------

GOOD = {"prompt": "p", "completions": ["a", "b"], "ranks": [0, 1]}
GOOD_SCORED = {"prompt": "p", "completions": ["a", "b"], "scores": [0.5, 0.1]}

# (case id, bad row, field named in the error, extra regex the message must contain)
BAD_RANKED = [
    ("length_mismatch", {"prompt": "p", "completions": ["a", "b", "c"], "ranks": [0, 1]}, "ranks", "2 ranks.*3 compl"),
    ("negative_rank", {"prompt": "p", "completions": ["a", "b"], "ranks": [0, -1]}, "ranks", "position 1 is -1"),
    ("non_integer_rank", {"prompt": "p", "completions": ["a", "b"], "ranks": [0.0, 1.5]}, "ranks", "1.5"),
    ("none_rank", {"prompt": "p", "completions": ["a", "b"], "ranks": [0, None]}, "ranks", "None"),
    ("duplicate_different_rank", {"prompt": "p", "completions": ["a", "b", "a"], "ranks": [0, 1, 2]}, "completions",
     "0 and 2 are identical"),
    ("empty_prompt", {"prompt": " ", "completions": ["a", "b"], "ranks": [0, 1]}, "prompt", "empty"),
    ("none_prompt", {"prompt": None, "completions": ["a", "b"], "ranks": [0, 1]}, "prompt", "None"),
]  # fmt: skip
BAD_SCORED = [
    ("nan_score", {"prompt": "p", "completions": ["a", "b"], "scores": [0.5, float("nan")]}, "scores", "nan"),
    ("none_score", {"prompt": "p", "completions": ["a", "b"], "scores": [None, 0.5]}, "scores", "None"),
    ("inf_score", {"prompt": "p", "completions": ["a", "b"], "scores": [float("inf"), 0.5]}, "scores", "inf"),
    ("score_length_mismatch", {"prompt": "p", "completions": ["a", "b"], "scores": [0.5]}, "scores", "1 scores"),
    ("duplicate_different_score", {"prompt": "p", "completions": ["a", "a"], "scores": [0.5, 0.1]}, "completions",
     "identical"),
]  # fmt: skip
BAD_CONVERSATIONAL = [
    (
        "empty_message_list",
        {"prompt": _msgs("q", "user"), "completions": [_msgs("ok"), []], "ranks": [0, 1]},
        "completions",
        "empty message list",
    ),
    (
        "duplicate_messages_different_rank",
        {"prompt": _msgs("q", "user"), "completions": [_msgs("ok"), _msgs("no"), _msgs("ok")], "ranks": [0, 2, 1]},
        "completions",
        "identical",
    ),
    (
        "empty_prompt_messages",
        {"prompt": _msgs("", "user"), "completions": [_msgs("ok"), _msgs("no")], "ranks": [0, 1]},
        "prompt",
        "empty",
    ),
]  # fmt: skip



# Rows that Arrow cannot hold in one column next to GOOD (mixed types) or whose extra column GOOD lacks: checked
# row by row, and in datasets below where every row has the column.
BAD_ROW_ONLY = [
    ("negative_weight", {"prompt": "p", "completions": ["a", "b"], "ranks": [0, 1], "weight": -1.0}, "weight", "-1.0"),
    ("nan_weight", {"prompt": "p", "completions": ["a", "b"], "ranks": [0, 1], "weight": float("nan")}, "weight", "nan"),
    ("none_weight", {"prompt": "p", "completions": ["a", "b"], "ranks": [0, 1], "weight": None}, "weight", "None"),
    ("messages_with_text_prompt", {"prompt": "p", "completions": ["a", [{"role": "assistant", "content": "b"}]],
                                   "ranks": [0, 1]}, "completions", "position 1 is a list of messages but the prompt is text"),
    ("text_with_messages_prompt", {"prompt": [{"role": "user", "content": "p"}], "completions": ["a", "b"],
                                   "ranks": [0, 1]}, "completions", "position 0 is text but the prompt is a list"),
    ("int_completion", {"prompt": "p", "completions": ["a", 3], "ranks": [0, 1]}, "completions", "position 1 is a int"),
]  # fmt: skip
ALL_BAD = BAD_RANKED + BAD_SCORED + BAD_CONVERSATIONAL + BAD_ROW_ONLY


@pytest.mark.parametrize("case,row,field,detail", ALL_BAD, ids=[c[0] for c in ALL_BAD])
def test_validate_ranked_example_errors(case, row, field, detail):
    with pytest.raises(ValueError, match=rf"^row 7, field '{field}': .*{detail}"):
        validate_ranked_example(row, 7)


def test_validate_ranked_example_structure_errors():
    with pytest.raises(ValueError, match=r"^row 3, field 'completions': expected a list"):
        validate_ranked_example({"prompt": "p", "completions": "ab", "ranks": [0, 1]}, 3)
    with pytest.raises(ValueError, match=r"^row 3, field 'ranks': expected a list"):
        validate_ranked_example({"prompt": "p", "completions": ["a", "b"], "ranks": "01"}, 3)
    with pytest.raises(ValueError, match=r"^row 3, field 'scores': expected a list"):
        validate_ranked_example({"prompt": "p", "completions": ["a", "b"], "scores": 1.0}, 3)
    with pytest.raises(ValueError, match=r"^row 3, field 'ranks': .*True"):
        validate_ranked_example({"prompt": "p", "completions": ["a", "b"], "ranks": [0, True]}, 3)
    with pytest.raises(ValueError, match=r"^row 3, field 'prompt'"):
        validate_ranked_example({"completions": ["a", "b"], "ranks": [0, 1]}, 3)


def test_validate_ranked_example_accepts_good_rows():
    assert validate_ranked_example(GOOD, 0) == [0, 1]
    assert validate_ranked_example(GOOD_SCORED, 0) == [0, 1]
    # Integer-valued floats, same completion with the same rank (a tie), and K < 2 are all fine.
    assert validate_ranked_example({"prompt": "p", "completions": ["a", "b"], "ranks": [2.0, 0]}, 0) == [2, 0]
    assert validate_ranked_example({"prompt": "p", "completions": ["a", "a"], "ranks": [0, 0]}, 0) == [0, 0]
    assert validate_ranked_example({"prompt": "p", "completions": ["a"], "ranks": [0]}, 0) == [0]


def _dataset_with_bad_row(good: dict, bad: dict) -> Dataset:
    # Bad row at index 1, between two good ones; Arrow needs one type per column, which these share.
    return Dataset.from_list([dict(good), dict(bad), dict(good)])


@pytest.mark.parametrize("case,row,field,detail", BAD_RANKED, ids=[c[0] for c in BAD_RANKED])
def test_ranked_to_pairs_bad_rank_rows(case, row, field, detail):
    _check_bad_row_in_dataset(GOOD, row, field)


@pytest.mark.parametrize("case,row,field,detail", BAD_SCORED, ids=[c[0] for c in BAD_SCORED])
def test_ranked_to_pairs_bad_score_rows(case, row, field, detail):
    _check_bad_row_in_dataset(GOOD_SCORED, row, field)


@pytest.mark.parametrize("case,row,field,detail", BAD_CONVERSATIONAL, ids=[c[0] for c in BAD_CONVERSATIONAL])
def test_ranked_to_pairs_bad_conversational_rows(case, row, field, detail):
    good = {"prompt": _msgs("q", "user"), "completions": [_msgs("ok"), _msgs("no")], "ranks": [0, 1]}
    _check_bad_row_in_dataset(good, row, field)


def _check_bad_row_in_dataset(good: dict, bad: dict, field: str) -> None:
    data = _dataset_with_bad_row(good, bad)
    with pytest.raises(ValueError, match=rf"^row 1, field '{field}'"):
        ranked_to_pairs(data)
    pairs, stats = ranked_to_pairs(data, on_invalid_rows="skip")
    assert stats.skipped_invalid == 1
    assert list(stats.invalid_examples) == [1]
    assert stats.invalid_examples[1].startswith(f"row 1, field '{field}'")
    assert stats.rows == 3 and stats.groups == 2
    assert len(pairs) == 2 and pairs["group_id"] == [0, 2]


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), None])
def test_bad_group_weight_in_a_dataset_names_the_row(bad):
    rows = [dict(GOOD, weight=1.0), dict(GOOD, weight=bad), dict(GOOD, weight=0.5)]
    with pytest.raises(ValueError, match=r"^row 1, field 'weight': weight is"):
        ranked_to_pairs(Dataset.from_list(rows))
    pairs, stats = ranked_to_pairs(Dataset.from_list(rows), on_invalid_rows="skip")
    assert stats.skipped_invalid == 1 and pairs["weight"] == [1.0, 0.5]


def test_ranking_stats_defaults_are_independent():
    a, b = RankingStats(), RankingStats()
    a.invalid_examples[0] = "x"
    assert b.invalid_examples == {}


# ---------------------------------------------------------------------------------------------------------------------
# load_preference_file
# ---------------------------------------------------------------------------------------------------------------------


def test_load_preference_file_formats(tmp_path: Path):
    rows = [
        {"prompt": "p", "chosen": "a", "rejected": "b"},
        {"prompt": "q", "chosen": "c", "rejected": "d", "extra": 1},
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (tmp_path / "b.json").write_text(json.dumps(rows))
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as handle:
        handle.write("\n".join(json.dumps(r) for r in rows))
    with gzip.open(tmp_path / "d.json.gz", "wt") as handle:
        handle.write(json.dumps(rows, indent=2))
    for name in ("a.jsonl", "b.json", "c.jsonl.gz", "d.json.gz"):
        data = load_preference_file(tmp_path / name)
        assert len(data) == 2, name
        # A key only in a later row is kept (Dataset.from_list alone would drop it).
        assert data["extra"] == [None, 1], name
        assert data["chosen"] == ["a", "c"], name


def test_load_preference_file_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_preference_file(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n{"a": 2}\n{"a": \n')
    with pytest.raises(ValueError, match="line 3"):
        load_preference_file(bad)
    bad_list = tmp_path / "bad.json"
    bad_list.write_text('[\n{"a": 1},\n{"a" 2}\n]')
    with pytest.raises(ValueError, match="line 3"):
        load_preference_file(bad_list)
    not_obj = tmp_path / "nums.jsonl"
    not_obj.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match="line 2"):
        load_preference_file(not_obj)


# ---------------------------------------------------------------------------------------------------------------------
# Loaders on synthetic files (always run)
# ---------------------------------------------------------------------------------------------------------------------


def _oasst_message(mid, parent, role, text, rank=None, deleted=False, synthetic=False, tree="t1"):
    return {
        "message_id": mid, "parent_id": parent, "role": role, "text": text, "rank": rank,
        "deleted": deleted, "synthetic": synthetic, "lang": "en", "message_tree_id": tree,
    }  # fmt: skip


def test_load_oasst_ranked_tree(tmp_path: Path):
    messages = [
        _oasst_message("r", None, "prompter", "Hi?"),
        _oasst_message("a1", "r", "assistant", "Hello.", rank=1),
        _oasst_message("a2", "r", "assistant", "Hey there!", rank=0),
        _oasst_message("a3", "r", "assistant", "unranked"),  # rank null: not in the group
        _oasst_message("a4", "r", "assistant", "gone", rank=2, deleted=True),
        _oasst_message("p2", "a2", "prompter", "How are you?"),
        _oasst_message("b1", "p2", "assistant", "Fine.", rank=0),
        _oasst_message("b2", "p2", "assistant", "Good.", rank=1, synthetic=True),
        _oasst_message("b3", "p2", "assistant", "Great.", rank=2),
        _oasst_message("p3", "a1", "prompter", "lonely"),
        _oasst_message("c1", "p3", "assistant", "only one", rank=0),
    ]
    path = tmp_path / "msgs.jsonl"
    path.write_text("\n".join(json.dumps(m) for m in messages))

    data = load_oasst_ranked(path)
    assert data.column_names == ["prompt", "completions", "ranks", "message_tree_id", "parent_id"]
    assert data["parent_id"] == ["r", "p2"]  # p3 has one reply < min_completions
    assert data[0]["prompt"] == [{"role": "user", "content": "Hi?"}]
    assert data[0]["completions"] == [_msgs("Hello."), _msgs("Hey there!")]
    assert data[0]["ranks"] == [1, 0]
    assert data[1]["prompt"] == [
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hey there!"},
        {"role": "user", "content": "How are you?"},
    ]
    assert data[1]["completions"] == [_msgs("Fine."), _msgs("Great.")]  # synthetic b2 excluded by default
    assert data[1]["ranks"] == [0, 2]
    assert data["message_tree_id"] == ["t1", "t1"]

    with_synth = load_oasst_ranked(path, include_synthetic=True)
    assert with_synth[1]["ranks"] == [0, 1, 2]
    assert load_oasst_ranked(path, min_completions=1)["parent_id"] == ["r", "p2", "p3"]

    text = load_oasst_ranked(path, conversational=False)
    assert text[1]["prompt"] == "User: Hi?\n\nAssistant: Hey there!\n\nUser: How are you?\n\nAssistant:"
    assert text[1]["completions"] == [" Fine.", " Great."]

    pairs, stats = ranked_to_pairs(data)
    assert stats.pairs == 2 and pairs[0]["chosen"] == _msgs("Hey there!")


def test_load_oasst_ranked_missing_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="OpenAssistant message file not found"):
        load_oasst_ranked(tmp_path / "missing.jsonl")


def test_load_hh_rlhf_synthetic(tmp_path: Path):
    h, a = "\n\nHuman:", "\n\nAssistant:"
    rows = [
        {"chosen": f"{h} hi{a} hello", "rejected": f"{h} hi{a} go away"},
        {"chosen": f"{h} hi{a} x{h} more?{a} yes", "rejected": f"{h} hi{a} y{h} more?{a} no"},  # mismatch
        {"chosen": f"{h} hi{a} same", "rejected": f"{h} hi{a} same"},  # identical
        {"chosen": f"{h} hi{a} ok", "rejected": f"{h} hi{a} "},  # empty reply
        {"chosen": f"{h} no assistant", "rejected": f"{h} no assistant either"},  # unparseable
    ]
    path = tmp_path / "tiny_test.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(json.dumps(r) for r in rows))
    data, stats = load_hh_rlhf(path, allow_empty_completions=False)
    assert stats == {
        "rows": 5,
        "kept": 1,
        "skipped_unparseable": 1,
        "skipped_prompt_mismatch": 1,
        "skipped_identical": 1,
        "skipped_empty_reply": 1,
        "empty_reply": 0,
    }
    assert data.to_list() == [
        {"prompt": f"{h} hi{a}", "chosen": " hello", "rejected": " go away", "source": "tiny_test"}
    ]
    # by default an empty reply is a preference like any other: an answer beats saying nothing
    data, stats = load_hh_rlhf(path)
    assert stats["kept"] == 2 and stats["empty_reply"] == 1 and stats["skipped_empty_reply"] == 0
    assert data.to_list()[1] == {"prompt": f"{h} hi{a}", "chosen": " ok", "rejected": " ", "source": "tiny_test"}


# ---------------------------------------------------------------------------------------------------------------------
# Real shared data (skipped in a clone without ../shared/data)
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.skipif(not OASST_FILE.is_file(), reason=f"shared OASST data not found at {OASST_FILE}")
def test_load_oasst_real_file():
    # The data README's histogram (136/266/13/1) counts every ranked sibling group among non-deleted replies; one
    # K=3 group has the same reply text ranked 0 and 2, so the default loader drops it as contradictory.
    raw = load_oasst_ranked(OASST_FILE, drop_contradictory=False)
    assert Counter(len(r) for r in raw["ranks"]) == {2: 136, 3: 266, 4: 13, 5: 1}
    with pytest.raises(ValueError, match=r"^row \d+, field 'completions': .*identical"):
        ranked_to_pairs(raw)

    data = load_oasst_ranked(OASST_FILE)
    histogram = Counter(len(r) for r in data["ranks"])
    assert histogram == {2: 136, 3: 265, 4: 13, 5: 1}
    pairs, stats = ranked_to_pairs(data)
    assert len(pairs) == stats.pairs == sum(n * comb(k, 2) for k, n in histogram.items()) == 1019
    assert stats.tied_pairs == 0 and stats.skipped_invalid == 0
    forward_ratio = 2 * stats.pairs / sum(k * n for k, n in histogram.items())
    assert forward_ratio == pytest.approx(1.813, abs=1e-3)
    assert all(c < r for c, r in zip(pairs["chosen_rank"], pairs["rejected_rank"]))
    assert all(p[-1]["role"] == "user" for p in pairs["prompt"])
    assert all(c[0]["role"] == "assistant" for c in pairs["chosen"])


@pytest.mark.integration
@pytest.mark.skipif(
    not all(p.is_file() for p in HH_FILES), reason=f"shared HH-RLHF data not found at {HH_FILES[0].parent}"
)
def test_load_hh_rlhf_real_files():
    data, stats = load_hh_rlhf(HH_FILES)
    assert stats == {
        "rows": 2354 + 2312,
        "kept": 4650,
        "skipped_unparseable": 0,
        "skipped_prompt_mismatch": 9 + 5,
        "skipped_identical": 2,
        "skipped_empty_reply": 0,
        "empty_reply": 8,  # kept: an answer judged against an empty reply is a real preference
    }
    assert len(data) == 4650
    assert Counter(data["source"]) == {"helpful-base_test": 2354 - 11, "harmless-base_test": 2312 - 5}
    assert all(p.endswith("Assistant:") for p in data["prompt"])
    assert all(c.strip() != r.strip() for c, r in zip(data["chosen"], data["rejected"]))
    strict, strict_stats = load_hh_rlhf(HH_FILES, allow_empty_completions=False)
    assert len(strict) == 4642 and strict_stats["skipped_empty_reply"] == 8
    assert all(c.strip() and r.strip() for c, r in zip(strict["chosen"], strict["rejected"]))


@pytest.mark.parametrize("bad,message", [
    ({"prompt": "p", "completions": ["a", 3], "ranks": [0, 1]}, "row 2, field 'completions': holds number and text"),
    ({"prompt": [{"role": "user", "content": "q"}], "completions": ["a", "b"], "ranks": [0, 1]},
     "row 2, field 'prompt': a list of messages, where row 0 has text"),
])
def test_a_file_mixing_kinds_of_values_names_the_row_and_field(tmp_path, bad, message):
    rows = [{"prompt": "p", "completions": ["a", "b"], "ranks": [0, 1]}] * 2 + [bad]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(ValueError, match=rf"mixed.jsonl: {re.escape(message)}"):
        load_preference_file(path)


@pytest.mark.parametrize("completions", [["a good answer", ""], [_msgs("a good answer"), _msgs("  ")]])
def test_an_empty_completion_ranked_below_another_is_a_valid_preference(completions):
    prompt = "q" if isinstance(completions[0], str) else _msgs("q", "user")
    row = {"prompt": prompt, "completions": completions, "ranks": [0, 1]}
    assert validate_ranked_example(row, 0) == [0, 1]
    pairs, stats = ranked_to_pairs(Dataset.from_list([row, dict(row, ranks=[1, 0])]))
    assert len(pairs) == 2 and stats.empty_completions == 2 and "2 empty completions kept" in stats.summary()
    with pytest.raises(ValueError, match=r"^row 0, field 'completions': completion at position 1 (is an empty string|"
                                         r"has only empty message contents)"):
        validate_ranked_example(row, 0, allow_empty_completions=False)


@pytest.mark.parametrize("completions", [["an equally bad answer", ""], [_msgs("an equally bad answer"), _msgs(" ")]])
def test_an_empty_completion_tied_with_the_others_is_a_tie_not_an_error(completions):
    # PandaLM-style judgement: two answers equally bad, one of them empty. No pair, counted as a tie; the rest of the
    # data set still trains.
    prompt = "q" if isinstance(completions[0], str) else _msgs("q", "user")
    tied = {"prompt": prompt, "completions": completions, "ranks": [1, 1]}
    good = {"prompt": prompt, "completions": [completions[0], completions[1]], "ranks": [0, 1]}
    assert validate_ranked_example(tied, 0) == [1, 1]
    pairs, stats = ranked_to_pairs(Dataset.from_list([tied, good]))
    assert len(pairs) == 1 and pairs["group_id"] == [1]
    assert stats.skipped_all_tied == 1 and stats.tied_pairs == 1 and stats.skipped_invalid == 0
    good_answer = "a good answer" if isinstance(completions[0], str) else _msgs("a good answer")
    three = {"prompt": prompt, "completions": [*completions, good_answer], "ranks": [1, 1, 0]}
    pairs, stats = ranked_to_pairs(Dataset.from_list([three]))
    assert len(pairs) == 2 and stats.tied_pairs == 1  # the empty one still loses to the good answer


def test_the_former_names_of_allow_empty_completions_still_work(tmp_path):
    row = {"prompt": "q", "completions": ["a", ""], "ranks": [0, 1]}
    with pytest.warns(FutureWarning, match="now called allow_empty_completions"):
        with pytest.raises(ValueError, match="is an empty string"):
            validate_ranked_example(row, 0, allow_empty=False)
    with pytest.warns(FutureWarning, match="now called allow_empty_completions"):
        with pytest.raises(ValueError, match="is an empty string"):
            ranked_to_pairs(Dataset.from_list([row]), allow_empty=False)
    h, a = "\n\nHuman:", "\n\nAssistant:"
    path = tmp_path / "hh.jsonl"
    path.write_text(json.dumps({"chosen": f"{h} hi{a} ok", "rejected": f"{h} hi{a} "}) + "\n")
    with pytest.warns(FutureWarning, match="now called allow_empty_completions"):
        assert load_hh_rlhf(path, allow_empty_replies=False)[1]["skipped_empty_reply"] == 1


def _to_trees(messages: list[dict]) -> list[dict]:
    """The shared messages file rewritten in OpenAssistant's tree format (what `*.trees.jsonl` holds)."""
    nodes = {m["message_id"]: dict(m, replies=[]) for m in messages}
    trees = []
    for message in messages:
        node = nodes[message["message_id"]]
        if message.get("parent_id") is None:
            trees.append({"message_tree_id": message["message_tree_id"], "tree_state": "ready_for_export",
                          "prompt": node})
        elif message["parent_id"] in nodes:
            nodes[message["parent_id"]]["replies"].append(node)
    for node in nodes.values():
        node.pop("parent_id", None)
        node.pop("message_tree_id", None)
    return trees


def _groups(data):
    return sorted((pid, tuple(ranks), tuple(c[0]["content"] for c in comps))
                  for pid, ranks, comps in zip(data["parent_id"], data["ranks"], data["completions"]))


def test_load_oasst_hand_made_tree(tmp_path: Path):
    tree = {"message_tree_id": "t1", "prompt": {
        "message_id": "q", "role": "prompter", "text": "Why is the sky blue?", "rank": None, "replies": [
            {"message_id": "a1", "role": "assistant", "text": "Rayleigh scattering.", "rank": 0, "replies": [
                {"message_id": "f", "role": "prompter", "text": "More detail?", "rank": None, "replies": [
                    {"message_id": "b1", "role": "assistant", "text": "Short waves scatter more.", "rank": 1,
                     "replies": []},
                    {"message_id": "b2", "role": "assistant", "text": "Blue light scatters most.", "rank": 0,
                     "replies": []}]}]},
            {"message_id": "a2", "role": "assistant", "text": "It reflects the sea.", "rank": 1, "replies": []}]}}
    for name, opener in (("x.trees.jsonl", open), ("x.trees.jsonl.gz", gzip.open)):
        with opener(tmp_path / name, "wt") as handle:
            handle.write(json.dumps(tree) + "\n")
        data = load_oasst_ranked(tmp_path / name)
        assert data["parent_id"] == ["q", "f"] and data["ranks"] == [[0, 1], [1, 0]]
        assert data["prompt"][1] == [{"role": "user", "content": "Why is the sky blue?"},
                                     {"role": "assistant", "content": "Rayleigh scattering."},
                                     {"role": "user", "content": "More detail?"}]
        assert data["message_tree_id"] == ["t1", "t1"]


@pytest.mark.integration
@pytest.mark.skipif(not OASST_FILE.is_file(), reason=f"shared OASST data not found at {OASST_FILE}")
def test_load_oasst_trees_give_the_same_groups_as_messages(tmp_path: Path):
    messages = [json.loads(line) for line in OASST_FILE.read_text().splitlines() if line.strip()]
    path = tmp_path / "oasst1_en_validation.trees.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(json.dumps(t) for t in _to_trees(messages)) + "\n")
    from_messages, from_trees = load_oasst_ranked(OASST_FILE), load_oasst_ranked(path)
    assert len(from_trees) == len(from_messages) == 415
    assert _groups(from_trees) == _groups(from_messages)
    assert ranked_to_pairs(from_trees)[1].pairs == ranked_to_pairs(from_messages)[1].pairs == 1019
