"""recipes/rlhf_pipeline.py on tiny models: all stages end to end (each artefact written and reloaded by the next),
the --stages resume path, one-line option errors, the ground truth kept out of training, and the r1 order."""

from __future__ import annotations

import json
import sys

import pytest

from tests.helpers import REPO_ROOT
from tests.helpers import run_script as _run

RECIPE = str(REPO_ROOT / "recipes" / "rlhf_pipeline.py")
TINY = ["--dtype", "float32", "--max_train_samples", "16", "--judge_prompts", "4", "--judge_every", "1",
        "--judge_max_new_tokens", "4", "--sft.max_steps", "2", "--rm.max_steps", "2", "--ppo.max_steps", "2",
        "--ppo.max_completion_length", "4", "--ppo.logging_steps", "1", "--grpo.max_steps", "1",
        "--grpo.max_completion_length", "4", "--max_eval_samples", "4"]


def _tiny(policy, encoder, out, *extra):
    return [sys.executable, RECIPE, "--model_name_or_path", policy, "--rm_model", encoder, "--output_dir", str(out),
            *TINY, *extra]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, tiny_llama_causal_dir, tiny_bert_dir):
    out = tmp_path_factory.mktemp("pipeline")
    proc = _run(_tiny(tiny_llama_causal_dir, tiny_bert_dir, out), cwd=out)
    return out, proc


def test_all_stages_write_their_artefacts_and_figures(pipeline_run):
    out, proc = pipeline_run
    assert (out / "sft" / "adapter_config.json").exists()
    assert (out / "rm" / "config.json").exists() and (out / "rm" / "tokenizer_config.json").exists()
    for mode in ("fixed", "adaptive"):
        assert (out / f"rl_{mode}" / "adapter_config.json").exists()
        assert (out / f"rl_{mode}" / "value_head.safetensors").exists()
    assert (out / "over_optimisation.png").stat().st_size > 0
    results = json.loads((out / "pipeline.json").read_text())
    assert set(results["seconds"]) == {"sft", "rm", "rl_fixed", "rl_adaptive"}
    assert results["rm"]["accuracy"]["after"] is not None and results["rm"]["rm/kendall_tau"]["after"] is not None
    for mode in ("fixed", "adaptive"):
        run = results["rl"][mode]
        assert run["kl_control"] == mode and run["steps"] == 2
        steps = [p["step"] for p in run["points"]]
        assert steps == [0, 1, 2]  # before RL, every judge_every=1 steps, and the end (not twice)
        for point in run["points"]:
            assert {"learned_reward", "kl", "true_score"} <= point.keys()
            assert 0.0 <= point["true_score"] <= 1.0
        assert abs(run["points"][0]["kl"]) < 1e-4  # before RL the policy is its SFT reference
    assert results["rl"]["fixed"]["beta_end"] == results["rl"]["fixed"]["beta_start"]
    assert "reward model held-out accuracy" in proc.stdout and "  adaptive: learned_reward" in proc.stdout


def test_the_true_score_never_enters_training(pipeline_run):
    out, _ = pipeline_run
    results = json.loads((out / "pipeline.json").read_text())
    for run in results["rl"].values():
        assert run["reward_funcs"] == ["reward_model"]  # the learned RM only: no rule reward
        assert run["train_columns"] == ["prompt"]  # and no answer a reward could read


def test_stages_rerun_the_rl_stage_from_the_saved_sft_adapter_and_rm(pipeline_run, tiny_llama_causal_dir,
                                                                     tiny_bert_dir):
    out, _ = pipeline_run
    sft_mtime = (out / "sft" / "adapter_model.safetensors").stat().st_mtime
    proc = _run(_tiny(tiny_llama_causal_dir, tiny_bert_dir, out, "--stages", "rl", "--kl_control", "adaptive",
                      "--ppo.max_steps", "1"), cwd=out)
    assert "=== stage sft ===" not in proc.stdout and "=== stage rl_adaptive ===" in proc.stdout
    assert (out / "sft" / "adapter_model.safetensors").stat().st_mtime == sft_mtime
    results = json.loads((out / "pipeline.json").read_text())
    assert results["rl"]["adaptive"]["steps"] == 1 and "sft" in results["seconds"]  # earlier figures kept
    assert results["rl"]["fixed"]["steps"] == 2  # and the RL run not rerun stays in the report and the plot


def test_a_missing_stage_artefact_or_a_bad_option_is_one_line(tmp_path, tiny_llama_causal_dir, tiny_bert_dir):
    proc = _run(_tiny(tiny_llama_causal_dir, tiny_bert_dir, tmp_path / "empty", "--stages", "rl"), cwd=tmp_path,
                check=False)
    assert proc.returncode == 2 and "stage rl needs the SFT adapter" in proc.stderr
    assert "Traceback" not in proc.stderr
    for bad, message in ((["--ppo.max_stepz", "3"], "unknown option --max_stepz"),
                         (["--stages", "sft,ppo"], "not a stage of the rlhf pipeline"),
                         (["--nope.lr", "1"], "unknown option section --nope.")):
        proc = _run(_tiny(tiny_llama_causal_dir, tiny_bert_dir, tmp_path / "x", *bad), cwd=tmp_path, check=False)
        last = proc.stderr.strip().splitlines()[-1]  # (bitsandbytes may print a kernels notice on import first)
        assert proc.returncode == 2 and last.startswith("rlhf_pipeline.py: error: ") and message in last, proc.stderr
        assert "Traceback" not in proc.stderr


def test_r1_order_runs_every_stage(tmp_path, tiny_llama_causal_dir, tiny_bert_dir):
    out = tmp_path / "r1"
    proc = _run(_tiny(tiny_llama_causal_dir, tiny_bert_dir, out, "--pipeline", "r1", "--rejection_samples", "2"),
                cwd=tmp_path)
    results = json.loads((out / "pipeline.json").read_text())
    assert list(results["seconds"]) == ["sft", "rm", "grpo_rules", "rejection_sft", "grpo_rm"]
    assert results["r1"]["grpo_rules"]["reward_funcs"] == ["final_number_reward", "format_reward"]
    assert results["r1"]["grpo_rm"]["reward_funcs"] == ["final_number_reward", "format_reward", "reward_model"]
    assert results["r1"]["rejection_sft"]["samples"] == 32
    assert (out / "grpo_rm" / "adapter_config.json").exists()
    assert "rejection sampling: kept" in proc.stdout
