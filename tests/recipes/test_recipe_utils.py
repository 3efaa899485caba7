"""trl_ext.scripts.utils (what the recipes share): hub access only when the user names a hub model or dataset, and the RL prompt data."""

from __future__ import annotations

import pytest
from datasets import Dataset

from tests.helpers import RECIPES_DIR
from trl_ext.rewards.maths import prompt_answer_dataset
from trl_ext.scripts import utils as script_utils
from trl_ext.scripts.utils import offline_unless_hub_named
from trl_ext.rewards import final_number_reward


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    return monkeypatch


def test_defaults_run_offline(clean_env, tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("output_dir: out\nlearning_rate: 1.0e-3\n")
    assert offline_unless_hub_named(["--max_steps", "3"], config) is True
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"


@pytest.mark.parametrize("argv", [
    ["--model_name_or_path", "Qwen/Qwen2.5-0.5B-Instruct"],
    ["--dataset_name=trl-lib/ultrafeedback_binarized"],
    ["--reward_model_path", "OpenAssistant/reward-model-deberta-v3-large-v2", "--max_steps", "2"],
])
def test_a_named_hub_repository_keeps_the_hub(clean_env, argv):
    import os

    assert offline_unless_hub_named(argv, None) is False
    assert "HF_HUB_OFFLINE" not in os.environ


def test_a_hub_model_named_in_the_yaml_keeps_the_hub(clean_env, tmp_path):
    import os

    config = tmp_path / "mine.yaml"
    config.write_text("model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct\n")
    assert offline_unless_hub_named(["--config", str(config)], RECIPES_DIR / "dpo_lora.yaml") is False
    assert "HF_HUB_OFFLINE" not in os.environ


def test_local_paths_and_the_users_environment_win(clean_env, tmp_path):
    import os

    assert offline_unless_hub_named(["--model_name_or_path", str(tmp_path)], None) is True
    clean_env.setenv("HF_HUB_OFFLINE", "0")
    offline_unless_hub_named([], None)
    assert os.environ["HF_HUB_OFFLINE"] == "0"


def test_prompt_answer_dataset_from_ranked_and_gsm8k_rows():
    ranked = Dataset.from_list([
        {"prompt": "What is 2 + 3?", "completions": ["2 + 3 = 6.", "2 + 3 = 5."], "ranks": [1, 0]},
        {"prompt": "What is 4 x 2?", "completions": ["4 x 2 = 8.", "no"], "ranks": [0, 1]},
    ])
    rows = prompt_answer_dataset(ranked)
    assert rows.column_names == ["prompt", "answer"] and rows["answer"] == ["5", "8"]
    scored = Dataset.from_list([{"prompt": "What is 4 x 3?", "completions": ["4 x 3 = 12.", "no"], "scores": [2.0, -1]}])
    assert prompt_answer_dataset(scored)["answer"] == ["12"]
    big = Dataset.from_list([{"prompt": "p", "completions": ["1234567", "2.5"], "ranks": [0, 1]},
                             {"prompt": "q", "completions": ["x = 2.5", "3"], "ranks": [0, 1]}])
    answers = prompt_answer_dataset(big)["answer"]
    assert answers == ["1234567", "2.5"] and final_number_reward(["1234567", "2.5"], answer=answers) == [1.0, 1.0]
    gsm = Dataset.from_list([{"question": "How many?", "answer": "... #### 7"}])
    assert prompt_answer_dataset(gsm)[0] == {"prompt": "How many?", "answer": "... #### 7"}
    with pytest.raises(ValueError, match="row 0, field 'completions'"):
        prompt_answer_dataset(Dataset.from_list([{"prompt": "p", "completions": ["x", "y"], "ranks": [0, 1]}]))
    with pytest.raises(ValueError, match="Need an 'answer' column"):
        prompt_answer_dataset(Dataset.from_list([{"prompt": "p", "chosen": "a", "rejected": "b"}]))


def _file(tmp_path, rows):
    import json

    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def _data_args(path, **kw):
    return script_utils.DataArguments(dataset_path=str(path), **kw)


def test_split_values_other_than_the_split_names_are_refused(tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": "a", "rejected": "b", "split": s}
            for i, s in enumerate(["train"] * 10 + ["test"] * 10 + ["dev"] * 10)]
    with pytest.raises(ValueError, match=r"column 'split' has values \{'dev': 10\} besides 'train' and 'test'"):
        script_utils.load_splits(_data_args(_file(tmp_path, rows)), tmp_path / "unused", seed=0)


def test_errors_name_the_row_of_the_file_not_of_the_shuffled_split(tmp_path):
    rows = [{"prompt": f"p{i}", "completions": ["a", "b"], "ranks": [0, 1]} for i in range(20)]
    rows[7]["ranks"] = [0, -1]
    with pytest.raises(ValueError, match=r"data.jsonl: row 7, field 'ranks'"):
        script_utils.load_splits(_data_args(_file(tmp_path, rows)), tmp_path / "unused", seed=0)
    splits = script_utils.load_splits(_data_args(_file(tmp_path, rows)), tmp_path / "unused", seed=0,
                                      on_invalid_rows="skip")
    assert len(splits["train"]) + len(splits["test"]) == 19


@pytest.mark.parametrize("argv,message", [
    (["--lerning_rate", "1e-3"], "unknown option --lerning_rate (did you mean --learning_rate?)"),
    (["--dataset_path", "/no/such/file.jsonl"], "--dataset_path '/no/such/file.jsonl': no such file or directory"),
    (["--model_name_or_path", "./no/such/model"], "--model_name_or_path './no/such/model': no such file or directory (nor a hub repo id org/name)"),
    (["--max_steps", "many"], "argument --max_steps/--max-steps: invalid int value: 'many'"),
])
def test_bad_options_stop_with_one_line_before_any_model_loads(argv, message, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(RECIPES_DIR / "dpo_lora.py"), *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"dpo_lora.py: error: {message}"], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "usage:" not in proc.stderr


def test_importing_the_script_helpers_loads_no_hub_library():
    """The recipes call `offline_unless_hub_named` right after importing it: datasets, transformers and
    huggingface_hub read HF_HUB_OFFLINE once, at their import, so importing the helper must not import them."""
    import json
    import subprocess
    import sys

    code = ("import sys, json\nfrom trl_ext.scripts.utils import offline_unless_hub_named\n"
            "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))")
    modules = set(json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                            timeout=120).stdout.splitlines()[-1]))
    assert not modules & {"datasets", "transformers", "huggingface_hub", "trl", "torch"}
