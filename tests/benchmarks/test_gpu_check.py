"""benchmarks/gpu_check.py: the dry run (the same steps on CPU, tiny shapes, no engine) and its failure reporting."""

from __future__ import annotations

import json
import sys

from benchmarks import gpu_check
from tests.helpers import REPO_ROOT, run_script


def test_dry_run_runs_every_step_and_writes_the_report(tmp_path):
    proc = run_script([sys.executable, str(REPO_ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--out",
                       str(tmp_path)], cwd=REPO_ROOT)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] and report["device"] == "cpu" and report["versions"]["trl"]
    assert report["harness"]["status"] == "ok"
    assert {row["scenario"] for row in report["harness"]["scenarios"]} == {"dpo_overhead", "dpo_qlora"}
    assert list(report["matrix"]) == ["none"]
    cells = report["matrix"]["none"]
    assert set(cells) == set(gpu_check.TRAINERS)
    for name, cell in cells.items():
        assert cell["status"] == "ok", (name, cell)
        assert cell["params_changed"] > 0 and cell["resumed_step"] == 3
    for name in gpu_check.TRAINERS:  # a progress line per trainer, as it finishes
        assert f"matrix none / {name}: ok" in proc.stdout
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "| ppo_qlora | ok |" in markdown and "## Failures (first error line)\n\nNone." in markdown


def test_a_failing_trainer_is_reported_with_its_first_error_line_and_the_rest_still_run(tmp_path, monkeypatch):
    def fake_check(name, dry, workdir):
        if name == "dpo_grouped":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"status": "ok", "error": None}

    monkeypatch.setattr(gpu_check, "check_trainer", fake_check)
    args = gpu_check.argparse.Namespace(engine="deepspeed_zero3", trainers="reward_grouped,dpo_grouped,rloo",
                                        result=str(tmp_path / "m.json"), dry_run=True)
    gpu_check.worker(args)
    cells = json.loads((tmp_path / "m.json").read_text())
    assert cells["dpo_grouped"] == {"status": "failed",
                                    "error": "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"}
    assert cells["reward_grouped"]["status"] == cells["rloo"]["status"] == "ok"
    report = {"device": "NVIDIA H200", "dry_run": False, "seconds": 1.0, "command": "x", "trainers": list(cells),
              "harness": {"status": "failed", "error": "ImportError: no module named deepspeed", "scenarios": []},
              "matrix": {"deepspeed_zero3": cells}}
    gpu_check.write_report(report, tmp_path)
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "| dpo_grouped | failed |" in markdown
    assert "- deepspeed_zero3 / dpo_grouped: `RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB`" in markdown
    assert "- - / harness: `ImportError: no module named deepspeed`" in markdown


def test_first_error_line_picks_the_exception_not_the_traceback_noise():
    text = "Traceback (most recent call last):\n  File \"x.py\", line 3, in <module>\n    f()\n" \
           "torch.OutOfMemoryError: CUDA out of memory.\n[rank0]: exiting\n"
    assert gpu_check.first_error_line(text) == "torch.OutOfMemoryError: CUDA out of memory."
    assert gpu_check.first_error_line("") == "no output"
