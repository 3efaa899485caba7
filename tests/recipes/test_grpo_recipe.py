"""recipes/grpo.py: short runs on a tiny model (with a BERT-CLS RM next to the rule rewards) and on the real SmolLM2."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import REPO_ROOT
from tests.helpers import run_script as _run


RECIPE = str(REPO_ROOT / "recipes" / "grpo.py")


def test_recipe_runs_with_a_reward_model(tmp_path, tiny_llama_causal_dir, tiny_rm_dir):
    out = tmp_path / "grpo"
    proc = _run([sys.executable, RECIPE, "--model_name_or_path", tiny_llama_causal_dir, "--dtype", "float32",
                 "--max_steps", "2", "--logging_steps", "1", "--max_train_samples", "8", "--max_eval_samples", "4",
                 "--eval_max_new_tokens", "4", "--reward_model_path", tiny_rm_dir, "--output_dir", str(out)],
                cwd=tmp_path)
    assert "held-out greedy answer accuracy  before" in proc.stdout
    assert "kl_control=adaptive" in proc.stdout
    assert (out / "adapter_config.json").exists()


@pytest.mark.integration
def test_default_recipe_short_run_on_real_smollm2(tmp_path):
    pytest.importorskip("gguf")
    out = tmp_path / "grpo"
    proc = _run([sys.executable, RECIPE, "--max_steps", "1", "--max_train_samples", "4", "--max_eval_samples", "2",
                 "--output_dir", str(out)], cwd=tmp_path)
    assert "SmolLM2-135M-Instruct" in proc.stdout and "held-out greedy answer accuracy" in proc.stdout
    assert (out / "adapter_model.safetensors").exists()
