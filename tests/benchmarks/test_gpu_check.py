"""benchmarks/gpu_check.py: the dry run (the same steps on CPU, tiny shapes, no engine) and its failure reporting."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import pytest

from benchmarks import gpu_check
from tests.helpers import REPO_ROOT, run_script


def test_dry_run_runs_every_step_and_writes_the_report(tmp_path):
    proc = run_script([sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", "--out",
                       str(tmp_path)], cwd=REPO_ROOT)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] and report["device"] == "cpu" and report["versions"]["trl"] and report["part"] == "all"
    assert report["harness"]["status"] == "ok"
    assert {row["scenario"] for row in report["harness"]["scenarios"]} == {"dpo_overhead", "dpo_qlora"}
    assert list(report["matrix"]) == ["none"]
    cells = report["matrix"]["none"]
    assert set(cells) == set(gpu_check.TRAINERS)
    for name, cell in cells.items():
        assert cell["status"] == "ok", (name, cell)
        assert cell["params_changed"] > 0 and cell["resumed_step"] == 3 and "traceback" not in cell
    for name in gpu_check.TRAINERS:  # a progress line per trainer, as it finishes
        assert f"matrix none / {name}: ok" in proc.stdout
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "| ppo_qlora | ok |" in markdown and "## Failures and refusals" in markdown and "\n\nNone.\n" in markdown
    assert "part `all`" in markdown


def _deep_failure(depth: int):
    if depth == 0:
        raise AssertionError  # bare, as DeepSpeed's `assert len(set(dtypes)) == 1` raises it
    _deeper(depth - 1)


def _deeper(depth: int):  # alternating frames: Python does not fold them into "[Previous line repeated]"
    _deep_failure(depth)


def test_a_failing_trainer_keeps_its_error_line_and_traceback_and_the_rest_still_run(tmp_path, monkeypatch):
    from trl_ext.peft_utils import UnsupportedEngineError

    def fake_check(name, dry, workdir):
        if name == "dpo_grouped":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if name == "ppo":
            _deep_failure(30)  # a traceback longer than the 40 lines kept
        if name == "ppo_qlora":
            raise UnsupportedEngineError("PPO's critic under FSDP: use DeepSpeed ZeRO-3")
        return {"status": "ok", "error": None}

    monkeypatch.setattr(gpu_check, "check_trainer", fake_check)
    args = gpu_check.argparse.Namespace(engine="deepspeed_zero3", result=str(tmp_path / "m.json"), dry_run=True,
                                        trainers="reward_grouped,dpo_grouped,ppo,ppo_qlora,rloo")
    gpu_check.worker(args)
    cells = json.loads((tmp_path / "m.json").read_text())
    oom = cells["dpo_grouped"]
    assert oom["status"] == "failed" and oom["error"] == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert oom["traceback"].startswith("Traceback (most recent call last):") and "in fake_check" in oom["traceback"]
    deep = cells["ppo"]
    lines = deep["traceback"].splitlines()
    assert deep["status"] == "failed" and deep["error"] == "AssertionError"
    assert len(lines) == 40 and lines[-1] == "AssertionError"  # the last 40 lines, down to the error
    assert "raise AssertionError" in "".join(lines[-4:])
    refused = cells["ppo_qlora"]
    assert refused["status"] == "refused"
    assert refused["error"] == "UnsupportedEngineError: PPO's critic under FSDP: use DeepSpeed ZeRO-3"
    assert cells["reward_grouped"]["status"] == cells["rloo"]["status"] == "ok"

    report = {"device": "NVIDIA H200", "dry_run": False, "seconds": 1.0, "command": "x", "trainers": list(cells),
              "harness": {"status": "failed", "error": "ImportError: no module named deepspeed", "scenarios": [],
                          "traceback": "Traceback (most recent call last):\nImportError: no module named deepspeed"},
              "matrix": {"deepspeed_zero3": cells}}
    gpu_check.write_report(report, tmp_path)
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "| dpo_grouped | failed |" in markdown and "| ppo_qlora | refused |" in markdown
    assert "- deepspeed_zero3 / dpo_grouped: failed: `RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB`" \
        in markdown
    assert "- deepspeed_zero3 / ppo_qlora: refused: `UnsupportedEngineError: PPO's critic under FSDP" in markdown
    assert "- - / harness: failed: `ImportError: no module named deepspeed`" in markdown
    ppo_block = markdown.split("- deepspeed_zero3 / ppo: failed: `AssertionError`")[1].split("```")[1]
    assert ppo_block.strip().splitlines()[-1].strip() == "AssertionError" and len(ppo_block.strip().splitlines()) == 41
    assert json.loads((tmp_path / "gpu_check.json").read_text())["matrix"]["deepspeed_zero3"]["ppo"]["traceback"] == \
        deep["traceback"]


def test_a_crashed_engine_process_fails_its_running_trainer_with_the_launch_traceback(tmp_path, monkeypatch):
    """The worker process dies (e.g. a NCCL abort) during the second trainer: that one failed with the traceback
    found in the launch's output (watchdog noise dropped), the later ones did not run."""
    output = ("[gpu_check 1 s] matrix deepspeed_zero3 / reward_grouped: ok\n"
              "[rank0]: Traceback (most recent call last):\n[rank0]:   File \"x.py\", line 1, in f\n"
              "[rank0]: torch.distributed.DistBackendError: NCCL error\n"
              "[rank0]:[W1204 16:05:25.1 TCPStore.cpp:106] [c10d] sendBytes failed\n"
              "frame #0: c10::Error::Error(...)\n")

    def fake_run(cmd, timeout, log, echo=False):
        (tmp_path / "matrix_deepspeed_zero3.json").write_text(json.dumps({"reward_grouped": {"status": "ok"}}))
        return 1, output

    monkeypatch.setattr(gpu_check, "_run", fake_run)
    args = gpu_check.argparse.Namespace(trainers="reward_grouped,dpo_grouped,rloo", dry_run=False)
    cells = gpu_check.matrix_step(args, tmp_path, "deepspeed_zero3", 100.0)
    assert cells["reward_grouped"]["status"] == "ok"
    assert cells["dpo_grouped"]["status"] == "failed"
    assert cells["dpo_grouped"]["error"] == "[rank0]: torch.distributed.DistBackendError: NCCL error"
    assert "TCPStore" not in cells["dpo_grouped"]["traceback"] and "frame #" not in cells["dpo_grouped"]["traceback"]
    assert cells["rloo"]["status"] == "not run"


def test_part_selects_the_harness_or_the_matrix(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(gpu_check, "harness_step", lambda args, out, budget: calls.append("harness") or
                        {"status": "ok", "error": None, "scenarios": []})
    monkeypatch.setattr(gpu_check, "matrix_step", lambda args, out, engine, budget: calls.append(engine) or
                        {name: {"status": "ok"} for name in args.trainers.split(",")})
    report = gpu_check.main(["--dry-run", "--out", str(tmp_path), "--part", "harness"])
    assert calls == ["harness"] and report["matrix"] == {} and report["part"] == "harness"
    assert "Not run (`--part harness`)." in (tmp_path / "gpu_check.md").read_text()
    calls.clear()
    report = gpu_check.main(["--dry-run", "--out", str(tmp_path), "--part", "matrix"])
    assert calls == ["none"] and report["harness"]["status"] == "skipped" and report["part"] == "matrix"
    calls.clear()
    gpu_check.main(["--dry-run", "--out", str(tmp_path)])
    assert calls == ["harness", "none"]
    calls.clear()
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path), "--skip-harness"])["part"] == "matrix"
    assert calls == ["none"]
    with pytest.raises(SystemExit):
        gpu_check.main(["--dry-run", "--part", "everything"])


def test_harness_step_keeps_the_scenarios_finished_before_a_stop(tmp_path, monkeypatch):
    """The harness is killed at its time budget after writing one scenario's line: the report keeps that scenario,
    and a scenario that raised is listed with its error."""
    (tmp_path / "harness").mkdir()
    row = {"scenario": "dpo_overhead", "ratios": {"step_time": 1.0}, "goal": {"met": True},
           "variants": {"baseline": {"variant": "plain TRL"}, "candidate": {"variant": "trl_ext", "mfu": 0.4}}}
    failed = {"scenario": "dpo_qlora", "error": "torch.OutOfMemoryError: CUDA out of memory.", "traceback": "T"}
    (tmp_path / "harness" / "gpu.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(failed) + "\n")
    monkeypatch.setattr(gpu_check, "_run", lambda cmd, timeout, log: (
        124, "Traceback (most recent call last):\nTimeoutError: stopped after 240 s (time budget)\n"))
    result = gpu_check.harness_step(gpu_check.argparse.Namespace(dry_run=False, scenarios=None), tmp_path, 240.0)
    assert result["status"] == "failed" and result["error"] == "TimeoutError: stopped after 240 s (time budget)"
    assert [r["scenario"] for r in result["scenarios"]] == ["dpo_overhead", "dpo_qlora"]
    assert result["scenarios"][0]["status"] == "ok" and result["scenarios"][0]["candidate"]["mfu"] == 0.4
    assert result["scenarios"][1] == {"scenario": "dpo_qlora", "status": "failed", "error": failed["error"],
                                      "traceback": "T"}


def test_first_error_line_picks_the_exception_not_the_traceback_noise():
    text = "Traceback (most recent call last):\n  File \"x.py\", line 3, in <module>\n    f()\n" \
           "torch.OutOfMemoryError: CUDA out of memory.\n[rank0]: exiting\n"
    assert gpu_check.first_error_line(text) == "torch.OutOfMemoryError: CUDA out of memory."
    assert gpu_check.first_error_line("") == "no output"
    # a bare assertion (DeepSpeed's) is the error line, not the line after it
    assert gpu_check.first_error_line("Traceback (most recent call last):\n    assert x\nAssertionError\n"
                                      "[rank0]: exiting\n") == "AssertionError"


def test_online_cells_reward_varies_between_completions_of_a_random_policy():
    """The check's online-RL reward gives a group of completions a non-zero spread whatever a random policy writes
    (a letter-counting reward is 0 for every completion that lacks the letter: zero advantages, nothing can train)."""
    import random

    from benchmarks.scenarios import letter_a_reward, token_sum_reward

    assert "token_sum_reward" in inspect.getsource(gpu_check._build)  # the reward the online cells train with
    rng = random.Random(0)
    groups = [[[rng.randrange(49152) for _ in range(32)] for _ in range(4)] for _ in range(500)]  # SmolLM2's vocab
    for group in groups:
        texts = ["".join(rng.choice("bcdefgh ") for _ in range(32)) for _ in group]  # never an 'a'
        assert len(set(token_sum_reward(texts, completion_ids=group))) > 1
        assert len(set(token_sum_reward(texts))) > 1  # characters, when no token ids are given
        assert set(letter_a_reward(texts)) == {0.0}  # the old reward: no spread, no learning signal
    rewards = token_sum_reward(["x"] * 3, completion_ids=[[1, 2], [2, 1], [5]])
    assert rewards[0] == rewards[1] != rewards[2] and all(0.0 <= r < 1.0 for r in rewards)


def test_zero3_ppo_resumes_under_deepspeed_on_cpu(tmp_path):
    """The ZeRO-3 PPO cell of the GPU check, on DeepSpeed's CPU accelerator with bf16 as on the GPU: the resumed
    trainer's base is created under `zero.Init` (a ZeRO-3 TrainingArguments already exists), DeepSpeed then leaves the
    dtypes as they are, and PPO's fp32 critic (adapter + value head) beside the bf16 policy adapter made ZeRO-3's
    `defragment` fail with a bare AssertionError. Skipped where DeepSpeed is not installed."""
    pytest.importorskip("deepspeed")
    wrapper = tmp_path / "worker.py"
    # This CPU has no "bf16 GPU": let TrainingArguments accept bf16=True, as it does on the GPU machine.
    wrapper.write_text(
        "import sys\nsys.path.insert(0, sys.argv.pop(1))\n"
        "import transformers.training_args as ta\nta.is_torch_bf16_gpu_available = lambda: True\n"
        "from benchmarks import gpu_check\n"
        "shapes = gpu_check._shapes\ngpu_check._shapes = lambda dry: {**shapes(True), 'bf16': True}\n"
        "gpu_check.main(sys.argv[1:])\n")
    result = tmp_path / "m.json"
    env = dict(os.environ, DS_ACCELERATOR="cpu")
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--config_file",
         str(REPO_ROOT / gpu_check.ENGINES["deepspeed_zero3"]), str(wrapper), str(REPO_ROOT), "--worker", "--engine",
         "deepspeed_zero3", "--trainers", "ppo", "--result", str(result)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    cells = json.loads(result.read_text()) if result.exists() else {}
    assert cells.get("ppo", {}).get("status") == "ok", (cells, proc.stdout[-3000:], proc.stderr[-3000:])
    assert cells["ppo"]["resumed_step"] == 3 and cells["ppo"]["params_changed"] > 0
