"""The DPO recipe: short runs on a tiny model (2-process DDP, W&B offline) and the real default model."""

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import REPO_ROOT, wandb_history  # noqa: E402

RECIPE = str(REPO_ROOT / "recipes" / "dpo_lora.py")


@pytest.fixture(scope="module")
def tiny_ranked_file(tmp_path_factory):
    rows = []
    for i, (a, b) in enumerate([(a, b) for a in range(1, 7) for b in range(1, 5)]):
        prompt = [{"role": "user", "content": f"{a}+{b}="}]
        completions = [[{"role": "assistant", "content": str(a + b)}], [{"role": "assistant", "content": str(a + b + 1)}],
                       [{"role": "assistant", "content": "no"}]]
        rows.append({"prompt": prompt, "completions": completions, "ranks": [0, 1, 2],
                     "split": "test" if i % 6 == 0 else "train"})
    path = tmp_path_factory.mktemp("data") / "tiny_ranked.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _run(cmd, cwd, env_extra=None, timeout=600):
    env = dict(os.environ, **(env_extra or {}))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + "\n" + proc.stderr[-4000:]
    return proc


def test_two_process_ddp_trains_the_same_adapter(tmp_path, tiny_llama_causal_dir, tiny_ranked_file):
    out = tmp_path / "ddp"
    # accelerate 1.15 starts 2 CPU processes only via its torchrun launcher (`--cpu` alone runs one process without
    # mpirun): recipes/accelerate/cpu_ddp.yaml + ACCELERATE_USE_CPU gives DDP over gloo.
    _run(["accelerate", "launch", "--config_file", str(REPO_ROOT / "recipes" / "accelerate" / "cpu_ddp.yaml"),
          str(REPO_ROOT / "tests" / "recipes" / "ddp_worker.py"),
          "--model_name_or_path", tiny_llama_causal_dir, "--dataset_path", tiny_ranked_file, "--max_steps", "3",
          "--per_device_train_batch_size", "2", "--learning_rate", "1e-2", "--output_dir", str(out)], cwd=tmp_path,
         env_extra={"ACCELERATE_USE_CPU": "true"})
    ranks = [torch.load(out / f"rank{r}.pt") for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["step"] == 3 for r in ranks)
    assert ranks[0]["lora"].keys() == ranks[1]["lora"].keys() and ranks[0]["lora"]
    for name, weight in ranks[0]["lora"].items():
        torch.testing.assert_close(weight, ranks[1]["lora"][name], rtol=0, atol=0)
    # the adapter did train: LoRA B matrices start at zero
    assert any(w.abs().sum() > 0 for n, w in ranks[0]["lora"].items() if "lora_B" in n)
    assert (out / "adapter_config.json").exists()


def test_wandb_offline_run_logs_dpo_metrics(tmp_path, tiny_llama_causal_dir, tiny_ranked_file):
    pytest.importorskip("wandb")
    out = tmp_path / "wb"
    _run([sys.executable, RECIPE, "--model_name_or_path", tiny_llama_causal_dir, "--dataset_path", tiny_ranked_file,
          "--max_steps", "2", "--logging_steps", "1", "--report_to", "wandb", "--output_dir", str(out),
          "--run_name", "trl-ext-test"],
         cwd=tmp_path, env_extra={"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"})
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, list((tmp_path / "wandb").iterdir())
    history = wandb_history(runs[0])
    assert len(history) >= 2  # one row per logging step
    for key in ("train/loss", "train/rewards/accuracies", "train/rewards/margins", "train/logps/chosen"):
        assert any(key in row for row in history), sorted(history[-1])
    assert all(0.0 <= row["train/rewards/accuracies"] <= 1.0 for row in history if "train/rewards/accuracies" in row)


@pytest.mark.integration
def test_default_recipe_short_run_on_real_smollm2(tmp_path):
    pytest.importorskip("gguf")
    out = tmp_path / "dpo"
    proc = _run(["accelerate", "launch", "--num_processes", "1", "--cpu", RECIPE, "--max_steps", "1",
                 "--per_device_train_batch_size", "1", "--max_train_samples", "2", "--max_eval_samples", "1",
                 "--output_dir", str(out)], cwd=tmp_path,
                timeout=900)
    assert "held-out preference accuracy (implicit reward)" in proc.stdout
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
