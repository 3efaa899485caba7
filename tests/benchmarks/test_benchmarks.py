"""The benchmark harness: measurement helpers (exact values) and the CPU smoke run's output schema."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from benchmarks.measure import (
    StepRecord,
    TimedCall,
    TokenCounter,
    datasheet_bf16_tflops,
    device_slug,
    parameter_count,
    summarize,
)
from tests.helpers import REPO_ROOT, wandb_history


def test_parameter_count_counts_tied_weights_once():
    emb = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    model = torch.nn.ModuleDict({"emb": emb, "head": head, "mid": torch.nn.Linear(4, 4)})
    assert parameter_count(model) == 40 + 16 + 4


def test_token_counter_splits_trained_and_forward_only_tokens():
    class Echo(torch.nn.Module):
        def forward(self, input_ids=None, attention_mask=None, past_key_values=None):
            return input_ids

    module = Echo()
    counter = TokenCounter(module, "policy", n_params=7)
    ids = torch.ones(2, 5, dtype=torch.long)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    module(input_ids=ids, attention_mask=mask)  # grad enabled: trained tokens, padding excluded
    with torch.no_grad():
        module(input_ids=ids, attention_mask=mask)  # reference / prefill
        module(input_ids=torch.ones(2, 1, dtype=torch.long), attention_mask=torch.ones(2, 6), past_key_values=object())
    assert counter.take() == (8, 8 + 2)
    assert counter.take() == (0, 0)
    counter.remove()
    module(input_ids=ids, attention_mask=mask)
    assert counter.take() == (0, 0)


def test_summarize_flops_mfu_and_shares():
    counter = TokenCounter(torch.nn.Linear(1, 1), "policy", n_params=100)
    counter.remove()
    records = [
        StepRecord(seconds=9.0, train_tokens={"policy": 1}, forward_tokens={"policy": 1}, timers={"rm": 9.0}),  # warm-up
        StepRecord(seconds=2.0, train_tokens={"policy": 10}, forward_tokens={"policy": 5}, timers={"rm": 0.5}),
        StepRecord(seconds=4.0, train_tokens={"policy": 30}, forward_tokens={"policy": 15}, timers={"rm": 0.5}),
    ]
    out = summarize(records, warmup=1, counters=[counter], samples_per_step=6, peak_tflops=1e-9)
    assert out["steps_measured"] == 2
    assert out["step_time_s_median"] == pytest.approx(3.0)
    assert out["samples_per_s"] == pytest.approx(2.0)
    assert out["tokens_per_s"] == pytest.approx(40 / 6)
    flops = 6 * 100 * 40 + 2 * 100 * 20
    assert out["flops_per_step"] == pytest.approx(flops / 2)
    assert out["achieved_tflops"] == pytest.approx(flops / 6 / 1e12)
    assert out["mfu"] == pytest.approx(flops / 6 / 1e12 / 1e-9)
    assert out["rm_share_of_step"] == pytest.approx(1.0 / 6)
    with pytest.raises(RuntimeError, match="No measured steps"):
        summarize(records[:1], warmup=1, counters=[counter], samples_per_step=1, peak_tflops=None)


def test_timed_call_accumulates_and_keeps_the_name():
    def my_reward(x):
        return [x]

    timed = TimedCall(my_reward)
    assert timed(3) == [3] and timed.__name__ == "my_reward"
    assert timed.take() >= 0.0 and timed.take() == 0.0


def test_datasheet_and_slug():
    assert datasheet_bf16_tflops("NVIDIA H100 80GB HBM3") == pytest.approx(989.4)
    assert datasheet_bf16_tflops("NVIDIA H100 PCIe") == pytest.approx(756.5)
    assert datasheet_bf16_tflops("NVIDIA H200") == pytest.approx(989.4)
    assert datasheet_bf16_tflops("Some GPU") is None
    assert device_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert device_slug("cpu") == "cpu"


def test_cli_rejects_bad_arguments():
    from benchmarks.run import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--scenarios", "no_such_scenario"])
    with pytest.raises(SystemExit):
        parse_args(["--cpu-smoke", "--steps", "0"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            parse_args(["--size", "gpu"])
    with pytest.raises(SystemExit):
        parse_args(["--cpu-smoke", "--repeats", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--cpu-smoke", "--size", "small"])
    with pytest.raises(SystemExit):
        parse_args(["--cpu-smoke", "--scenarios", "dpo_qlora_3b"])  # a 3B model: size gpu only
    assert parse_args(["--cpu-smoke"]).size == "cpu-smoke"
    assert parse_args(["--cpu-smoke", "--repeats", "2", "--name", "x"]).repeats == 2


def _fake_row(scenario, meta) -> dict:
    figures = {"variant": "v", "step_time_s_median": 1.0, "samples_per_s": 2.0, "tokens_per_s": 3.0,
               "peak_memory_mib": 4.0, "mfu": None}
    return {"scenario": scenario.name, "description": scenario.description, "kind": scenario.kind, **meta,
            "variants": {"baseline": figures, "candidate": figures},
            "ratios": {"step_time": 1.0, "samples_per_s": 1.0, "peak_memory": 1.0, "forward_ratio": 1.0},
            "goal": {"text": scenario.goal, "met": True}}


def test_harness_writes_each_scenario_as_it_finishes(tmp_path, monkeypatch):
    """A run stopped after two scenarios (e.g. killed at a time limit) keeps both in its JSON lines and table; a
    scenario that raised is kept with its error and traceback, and the run goes on to the next one."""
    from benchmarks import run

    calls = []

    def fake_run_scenario(scenario, size, repeats, meta, peak, datasheet, on_gpu, bar=None):
        calls.append(scenario.name)
        if len(calls) == 1:
            return _fake_row(scenario, meta)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        raise KeyboardInterrupt  # the run is stopped during the third scenario

    monkeypatch.setattr(run, "run_scenario", fake_run_scenario)
    with pytest.raises(KeyboardInterrupt):
        run.main(["--cpu-smoke", "--out", str(tmp_path), "--no-plots", "--scenarios", "rm_overhead", "dpo_overhead",
                  "dpo_qlora"])
    rows = [json.loads(line) for line in (tmp_path / "cpu-smoke.jsonl").read_text().splitlines()]
    assert [r["scenario"] for r in rows] == ["rm_overhead", "dpo_overhead"]
    assert rows[0]["ratios"]["step_time"] == 1.0 and "error" not in rows[0]
    assert rows[1]["error"] == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert rows[1]["traceback"].startswith("Traceback (most recent call last):")
    assert rows[1]["versions"]["trl"] and rows[1]["command"].startswith("python -m benchmarks.run")
    md = (tmp_path / "cpu-smoke.md").read_text()
    assert "| rm_overhead | v |" in md
    assert "- dpo_overhead: `RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB`" in md


def test_qlora_memory_goals_per_shape():
    """At the 1B shape (activations dominate) QLoRA must not use more than bf16 LoRA; at the 3B shape with one pair
    and activation checkpointing (weights dominate) at most 0.45 x; neither goal applies off GPU."""
    from benchmarks.run import compare
    from benchmarks.scenarios import all_scenarios

    def figures(peak, params=1.2e9):
        return {"step_time_s_median": 1.0, "samples_per_s": 1.0, "peak_memory_mib": peak, "params": {"policy": params},
                "train_tokens_per_step": 10, "forward_only_tokens_per_step": 0, "samples_per_step": 1}

    one_b, three_b = all_scenarios()["dpo_qlora"], all_scenarios()["dpo_qlora_3b"]
    assert compare(one_b, figures(100.0), figures(99.0), on_gpu=True)["goal"]["met"] is True
    assert compare(one_b, figures(100.0), figures(101.0), on_gpu=True)["goal"]["met"] is False
    assert compare(three_b, figures(100.0, 3.2e9), figures(45.0, 3.2e9), on_gpu=True)["goal"]["met"] is True
    assert compare(three_b, figures(100.0, 3.2e9), figures(46.0, 3.2e9), on_gpu=True)["goal"]["met"] is False
    assert compare(one_b, figures(100.0), figures(50.0), on_gpu=False)["goal"]["met"] is None


def test_cpu_smoke_run_writes_every_scenario(tmp_path):
    """The CI smoke run: every scenario, both variants, the JSON schema, the table and the plots (not the numbers)."""
    pytest.importorskip("wandb")
    env = {**os.environ, "TRL_EXT_BENCH_CACHE": str(tmp_path / "models"), "CUDA_VISIBLE_DEVICES": "",
           "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--cpu-smoke", "--out", str(out), "--report_to",
                           "wandb"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "RANDOM" in proc.stdout
    rows = [json.loads(line) for line in (out / "cpu-smoke.jsonl").read_text().splitlines()]
    from benchmarks.scenarios import all_scenarios, default_scenarios

    assert [r["scenario"] for r in rows] == list(default_scenarios("cpu-smoke"))
    assert "dpo_qlora_3b" in all_scenarios() and "dpo_qlora_3b" not in default_scenarios("cpu-smoke")  # gpu only
    for row in rows:
        for key in ("device", "device_name", "versions", "command", "size_config", "definitions", "ratios", "goal"):
            assert key in row, (row["scenario"], key)
        assert row["versions"]["trl"] and row["command"].startswith("python -m benchmarks.run")
        for role in ("baseline", "candidate"):
            f = row["variants"][role]
            assert f["steps_measured"] == row["size_config"]["steps"]
            for key in ("step_time_s_median", "samples_per_s", "tokens_per_s", "peak_memory_mib", "flops_per_step"):
                assert isinstance(f[key], float) and math.isfinite(f[key]) and f[key] > 0, (row["scenario"], role, key)
            assert f["mfu"] is None  # CPU: no MFU
        assert set(row["ratios"]) == {"step_time", "samples_per_s", "peak_memory", "forward_ratio"}
    by_name = {r["scenario"]: r for r in rows}
    # grouped training forwards each completion once: K=4 -> 3x fewer rows per pair, K=8 -> 7x (policy + reference)
    assert by_name["rm_grouped_k4"]["ratios"]["forward_ratio"] == pytest.approx(3.0, rel=0.15)
    assert by_name["rm_grouped_k8"]["ratios"]["forward_ratio"] == pytest.approx(7.0, rel=0.15)
    assert by_name["dpo_grouped_k4"]["ratios"]["forward_ratio"] == pytest.approx(3.0, rel=0.15)
    assert by_name["rm_overhead"]["ratios"]["forward_ratio"] == pytest.approx(1.0, rel=0.01)
    share = by_name["grpo_bert_rm"]["variants"]["candidate"]["reward_model_share_of_step"]
    assert 0.0 < share < 1.0
    assert "reward_model_share_of_step" not in by_name["grpo_bert_rm"]["variants"]["baseline"]
    ppo = by_name["ppo_vs_rloo"]
    assert ppo["variants"]["baseline"]["trainer"].endswith("trl.trainer.rloo_trainer.RLOOTrainer")
    assert ppo["variants"]["candidate"]["trainer"] == "trl_ext.trainer.ppo_trainer.PPOTrainer"
    assert ppo["goal"]["met"] in (True, False)  # both conditions evaluated on CPU too
    assert ppo["variants"]["baseline"]["samples_per_step"] == ppo["variants"]["candidate"]["samples_per_step"]
    md = (out / "cpu-smoke.md").read_text()
    assert "random" in md and all(name in md for name in by_name)
    assert (out / "cpu-smoke_throughput.png").stat().st_size > 1000
    assert (out / "cpu-smoke_memory.png").stat().st_size > 1000
    # --report_to wandb: the offline run holds the table and the per-scenario ratios
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    history = wandb_history(run_file)
    logged = {key for row in history for key in row}
    table_rows = [row for row in history if row.get("benchmark/table/_type") == "table-file"]
    assert table_rows and table_rows[0]["benchmark/table/nrows"] == 2 * len(rows)  # baseline + candidate per scenario
    assert "benchmark/dpo_grouped_k4/ratio_samples_per_s" in logged


def test_kl_control_plot_shows_both_estimators_and_compared_runs(tmp_path):
    """`python -m benchmarks.kl_control --plot`: the table names each run's estimator and error, compared runs included."""
    from benchmarks.kl_control import plot

    def run(estimator, kls, sampled=None):
        rows = [{"step": i + 1, "kl": kl, "kl_sampled": (sampled or kls)[i], "beta": 0.3, "reward": 0.5}
                for i, kl in enumerate(kls)]
        return {"kl_target": 1.0, "kl_horizon": 400.0, "beta_start": 0.4, "kl_estimator": estimator, "learning_rate": 5e-5,
                "mean_kl_second_half": 1.0, "mean_abs_rel_error_second_half": 0.11,
                "mean_abs_rel_error_second_half_sampled_kl": 0.3, "accuracy_before": 0.1, "accuracy_after": 0.3,
                "wall_clock_s": 1.0, "command": "python -m benchmarks.kl_control ...", "per_step": rows}

    (tmp_path / "ppo_kl_adaptive.json").write_text(json.dumps(run("full", [0.9, 1.1], sampled=[0.7, 1.4])))
    (tmp_path / "ppo_kl_adaptive_old.json").write_text(json.dumps(run("sample", [0.5, 1.5])))
    plot(tmp_path, "ppo", ("ppo_kl_adaptive_old.json",))
    table = (tmp_path / "ppo_kl_control.md").read_text()
    assert "| adaptive | full | 5e-05 | 1.0 | 400.0 | 0.4 -> 0.3 | 1 | 0.110 |" in table  # runs differ in lr: shown
    assert "| adaptive_old | sample |" in table
    assert (tmp_path / "ppo_kl_control.png").stat().st_size > 10_000
    with pytest.raises(SystemExit, match="no grpo_kl_"):
        plot(tmp_path, "grpo")


def test_kl_control_plot_lists_a_run_stopped_by_hand(tmp_path):
    """A partial run (rows parsed from its log, no summary) gets a 'stopped at step N of M' row, not a KeyError."""
    from benchmarks.kl_control import plot

    rows = [{"step": 1, "kl": 0.2, "beta": 0.3, "reward": 0.1}, {"step": 5, "kl": 1.8, "beta": 0.31, "reward": 0.4}]
    partial = {"kl_target": 1.0, "kl_horizon": 200.0, "beta_start": 0.3, "learning_rate": 1e-4, "steps": 160,
               "stopped_at_step": 5, "command": "python -m benchmarks.kl_control ...", "per_step": rows}
    (tmp_path / "ppo_kl_adaptive_partial.json").write_text(json.dumps(partial))
    plot(tmp_path, "ppo", ("ppo_kl_adaptive_partial.json",))
    assert "| adaptive_partial | sample | 0.0001 | 1.0 | 200.0 | 0.3 -> 0.31 | stopped at step 5 of 160 |" in (
        tmp_path / "ppo_kl_control.md").read_text()


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "benchmarks" / "results" / "cpu")
                                        .glob("*_kl_*.json")), ids=lambda p: p.name)
def test_committed_kl_control_results_can_be_plotted(path, tmp_path):
    """Every KL-control result kept in the repo can be drawn with `--plot --compare` (same schema, old runs included)."""
    from benchmarks.kl_control import plot

    algo = path.name.split("_kl_")[0]
    (tmp_path / path.name).write_text(path.read_text())
    plot(tmp_path, algo, (path.name,))
    assert path.stem.removeprefix(f"{algo}_kl_") in (tmp_path / f"{algo}_kl_control.md").read_text()


def test_kl_control_table_shows_no_horizon_for_a_fixed_beta_run(tmp_path):
    """A fixed-β run's horizon is the unused CLI default: the table prints '-' instead of a number that reads as used."""
    from benchmarks.kl_control import plot

    rows = [{"step": i + 1, "kl": 0.5, "beta": 0.4, "reward": 0.2} for i in range(4)]
    run = {"kl_control": "fixed", "kl_target": 1.0, "kl_horizon": 16, "beta_start": 0.4, "learning_rate": 5e-5,
           "mean_kl_second_half": 0.5, "mean_abs_rel_error_second_half": 0.5, "accuracy_before": 0.1,
           "accuracy_after": 0.2, "wall_clock_s": 1.0, "command": "python -m benchmarks.kl_control ...", "per_step": rows}
    (tmp_path / "grpo_kl_fixed.json").write_text(json.dumps(run))
    plot(tmp_path, "grpo")
    assert "| fixed | sample | 5e-05 | 1.0 | - | 0.4 -> 0.4 |" in (tmp_path / "grpo_kl_control.md").read_text()


def test_rlhf_pipeline_report_of_a_finished_run(tmp_path):
    """`python -m benchmarks.rlhf_pipeline --from_dir` turns the recipe's pipeline.json into the results JSON and table."""
    run = tmp_path / "run"
    run.mkdir()
    points = [{"step": 0, "learned_reward": 3.5, "kl": 0.0, "true_score": 0.75, "beta": 0.02},
              {"step": 6, "learned_reward": 3.7, "kl": 1.25, "true_score": 0.5, "beta": 0.02}]
    figures = {"pipeline": "rlhf", "seconds": {"sft": 150.0, "rm": 30.0, "rl_fixed": 200.0},
               "sft": {"examples": 300, "base": {"true_score": 0.03}, "after": {"true_score": 0.78}},
               "rm": {"model": "m", "heldout_groups": 80, "accuracy": {"before": 0.6, "after": 0.8},
                      "rm/ndcg": {"before": 0.7, "after": None}},
               "rl": {"fixed": {"algo": "ppo", "kl_control": "fixed", "beta_start": 0.02, "beta_end": 0.02,
                                "kl_target": 0.5, "steps": 6, "reward_funcs": ["reward_model"], "points": points}}}
    (run / "pipeline.json").write_text(json.dumps(figures))
    subprocess.run([sys.executable, "-m", "benchmarks.rlhf_pipeline", "--from_dir", str(run),
                    "--out", str(tmp_path / "out")], check=True, capture_output=True, cwd=REPO_ROOT)
    result = json.loads((tmp_path / "out" / "rlhf_pipeline.json").read_text())
    assert result["command"] == "accelerate launch recipes/rlhf_pipeline.py" and result["versions"]["trl"]
    assert result["rl"]["fixed"]["points"] == points
    table = (tmp_path / "out" / "rlhf_pipeline.md").read_text()
    assert "| total | 380 |" in table and "| accuracy | 0.600 | 0.800 |" in table and "rm/ndcg" not in table
    assert "| 6 | 3.700 | 1.250 | 0.500 | 0.02 |" in table and "held-out true score 0.030 -> 0.780" in table


def test_rm_hh_accuracy_records_each_runs_curve(tmp_path, minilm_dir, shared_data):
    """`python -m benchmarks.rm_hh_accuracy`: one short real run writes accuracy, eval loss and its training curve."""
    out = tmp_path / "hh"
    subprocess.run([sys.executable, "-m", "benchmarks.rm_hh_accuracy", "--poolings", "mean",
                    "--max_lengths", "32", "--max_train_pairs", "32", "--batch", "8", "--logging_steps", "2",
                    "--out", str(out)], check=True, capture_output=True, cwd=REPO_ROOT, timeout=600)
    result = json.loads((out / "rm_hh_accuracy.json").read_text())
    assert result["train_pairs"] == 32 and result["heldout_pairs"] > 400 and result["versions"]["trl"]
    (run,) = result["runs"]
    assert run["pooling"] == "mean" and run["max_length"] == 32 and 0 <= run["accuracy"] <= 1
    assert math.isfinite(run["eval_loss"])
    assert [point["step"] for point in run["train_log"]] == [2, 4]  # 32 pairs / batch 8 = 4 steps, a point every 2
    assert all(math.isfinite(point["loss"]) and 0 <= point["accuracy"] <= 1 for point in run["train_log"])
    assert "| mean | 32 |" in (out / "rm_hh_accuracy.md").read_text() and (out / "rm_hh_accuracy.png").exists()
