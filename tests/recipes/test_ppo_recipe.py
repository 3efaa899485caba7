"""recipes/ppo.py: a short run on a tiny model with a BERT-CLS RM next to the rule rewards, and on the real SmolLM2."""

from __future__ import annotations

import sys

import pytest


from tests.helpers import REPO_ROOT
from tests.helpers import run_script as _run

RECIPE = str(REPO_ROOT / "recipes" / "ppo.py")


def test_recipe_runs_with_a_reward_model(tmp_path, tiny_llama_causal_dir, tiny_rm_dir):
    out = tmp_path / "ppo"
    proc = _run([sys.executable, RECIPE, "--model_name_or_path", tiny_llama_causal_dir, "--dtype", "float32",
                 "--max_steps", "4", "--logging_steps", "1", "--max_train_samples", "16", "--max_eval_samples", "4",
                 "--eval_max_new_tokens", "4", "--reward_model_path", tiny_rm_dir, "--output_dir", str(out)],
                cwd=tmp_path)
    assert "PPO on" in proc.stdout and "held-out greedy answer accuracy  before" in proc.stdout
    assert "kl_control=adaptive" in proc.stdout
    assert (out / "adapter_config.json").exists() and (out / "critic" / "adapter_config.json").exists()
    assert (out / "value_head.safetensors").exists()


@pytest.mark.integration
def test_default_recipe_short_run_on_real_smollm2(tmp_path):
    pytest.importorskip("gguf")
    out = tmp_path / "ppo"
    proc = _run([sys.executable, RECIPE, "--max_steps", "2", "--max_train_samples", "16", "--max_eval_samples", "2",
                 "--output_dir", str(out)], cwd=tmp_path)
    assert "SmolLM2-135M-Instruct" in proc.stdout and "held-out greedy answer accuracy" in proc.stdout
    assert (out / "value_head.safetensors").exists()
