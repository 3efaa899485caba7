"""Maths RL recipes: an `answer` that holds no number is refused when the data loads, naming the row (of the file),
instead of every completion silently scoring 0 or the run failing mid-training."""

from __future__ import annotations

import json
import sys

import pytest
from datasets import Dataset

from tests.helpers import RECIPES_DIR, run_script
from trl_ext.rewards.maths import check_answer_row, prompt_answer_dataset
from trl_ext.scripts.utils import DataArguments, load_splits


@pytest.mark.parametrize("bad", ["five", None, "", "n/a"])
def test_prompt_answer_dataset_refuses_an_answer_without_a_number(bad):
    rows = [{"prompt": "What is 2 + 3?", "answer": "5"}, {"prompt": "What is 4 x 2?", "answer": bad},
            {"prompt": "How many?", "answer": "... #### 7"}]
    with pytest.raises(ValueError, match=rf"row 1, field 'answer': {bad!r} holds no number"):
        prompt_answer_dataset(Dataset.from_list(rows))


def test_numbers_and_gsm8k_answers_are_answers():
    rows = [{"prompt": "a", "answer": "5"}, {"prompt": "b", "answer": "... #### 1,234"},
            {"prompt": "c", "answer": "-2.5"}]
    assert prompt_answer_dataset(Dataset.from_list(rows))["answer"] == ["5", "... #### 1,234", "-2.5"]
    check_answer_row({"prompt": "p", "answer": 7}, 0)
    check_answer_row({"prompt": "p", "chosen": "a", "rejected": "b"}, 0)  # no answer: nothing to check


def _file(tmp_path, rows):
    path = tmp_path / "maths.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_load_splits_names_the_file_row(tmp_path):
    rows = [{"prompt": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(20)]
    rows[13]["answer"] = "n/a"
    args = DataArguments(dataset_path=str(_file(tmp_path, rows)))
    with pytest.raises(ValueError, match=r"maths.jsonl: row 13, field 'answer': 'n/a' holds no number"):
        load_splits(args, tmp_path / "unused", seed=0,
                    check_row=check_answer_row)


def test_the_recipe_stops_with_one_line_before_any_model_loads(tmp_path):
    recipe = "grpo.py"  # recipes/ppo.py loads its data the same way (one subprocess is enough for the suite)
    rows = [{"prompt": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(20)]
    rows[4]["answer"] = "unknown"
    proc = run_script([sys.executable, str(RECIPES_DIR / recipe), "--dataset_path",
                       str(_file(tmp_path, rows)), "--output_dir", str(tmp_path / "out")], cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"{recipe}: error: {tmp_path / 'maths.jsonl'}: row 4, field 'answer': 'unknown' holds no "
                      "number to compare the completion's last number with"], proc.stderr[-2000:]
    assert "policy dtype" not in proc.stdout  # stopped before loading the policy
