# Copyright 2026 The trl_ext authors. Apache-2.0.
"""One prepared GPU check: the benchmark harness, then every trainer under DeepSpeed ZeRO-2, ZeRO-3 and FSDP2.

    python -m benchmarks.gpu_check --part harness --out DIR   # the harness alone (one run of <= 9 minutes)
    python -m benchmarks.gpu_check --part matrix --out DIR    # the engine x trainer matrix alone (<= 9 minutes)
    python -m benchmarks.gpu_check                            # both, one after the other (default --part all)
    python -m benchmarks.gpu_check --dry-run --out DIR        # the same steps on CPU: tiny shapes, no engine

Steps, each printed as a progress line, none stopping the others:

1. `harness` (`--part harness|all`): `python -m benchmarks.run --size gpu` (every scenario: step time, tokens/s, peak
   memory, MFU against the measured bf16 matmul peak; QLoRA vs bf16 LoRA at 1B and 3B parameters; grouped vs
   pairwise; overhead vs plain TRL), with shortened warm-up/steps to fit the time budget. The harness writes each
   scenario's figures as soon as it finishes, so a run stopped at the budget keeps the finished ones.
2. `matrix` (`--part matrix|all`): for each engine (`recipes/accelerate/{deepspeed_zero2,deepspeed_zero3,fsdp}.yaml`,
   one process), one `accelerate launch` of this script in worker mode that runs each trainer (Reward grouped with
   the BERT-CLS head, DPO grouped, GRPO with adaptive KL, RLOO, PPO with the shared-base critic, DPO and PPO on a 4-bit
   QLoRA base) for 2 optimizer steps with a checkpoint, then resumes from it for a third: loss finite, trainable
   parameters changed (gathered across shards), the resumed run at step 3. The online-RL trainers are rewarded by
   `benchmarks.scenarios.token_sum_reward`, which differs between completions of one prompt even for a random-weight
   policy, so "no trainable parameter changed" points at the trainer, not at zero advantages.
3. `report`: `gpu_check.json` (every figure, device, versions, command) and `gpu_check.md` (the GPU table, the
   engine x trainer matrix, and for each failure its error line and the last 40 lines of its traceback).

A cell's status is `ok`, `failed` (a check or an exception), `refused` (trl_ext refused the combination by name with
`trl_ext.peft_utils.UnsupportedEngineError`, saying what to use instead) or `not run` (time budget spent).

`--dry-run` runs the harness's CPU smoke shapes on two scenarios and the matrix with engine `none`
(`accelerate launch --cpu`), tiny random models; it checks the plumbing on any machine in about a minute.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO_ROOT = Path(__file__).resolve().parents[1]

from benchmarks.report import TRACEBACK_LINES, first_error_line, traceback_tail  # noqa: E402

ENGINES = {"deepspeed_zero2": "recipes/accelerate/deepspeed_zero2.yaml",
           "deepspeed_zero3": "recipes/accelerate/deepspeed_zero3.yaml", "fsdp": "recipes/accelerate/fsdp.yaml"}
TRAINERS = ("reward_grouped", "dpo_grouped", "grpo_adaptive_kl", "rloo", "ppo", "dpo_qlora", "ppo_qlora")
PARTS = ("all", "harness", "matrix")
START = time.perf_counter()


def progress(message: str) -> None:
    print(f"[gpu_check {time.perf_counter() - START:6.0f} s] {message}", flush=True)


def failure(err: BaseException, formatted: str) -> dict[str, Any]:
    """A matrix cell for an exception: `refused` for trl_ext's named refusal of an engine combination, else `failed`;
    with its error line and the last lines of its traceback (`formatted`: `traceback.format_exc()`)."""
    from trl_ext.peft_utils import UnsupportedEngineError

    tail = traceback_tail(formatted)
    if isinstance(err, UnsupportedEngineError):
        return {"status": "refused", "error": f"{type(err).__name__}: {err}"[:400], "traceback": tail}
    return {"status": "failed", "error": first_error_line(tail) or repr(err), "traceback": tail}


# --------------------------------------------------------------------------------------------------------------------
# Worker: the trainers under one engine (runs inside `accelerate launch`)
# --------------------------------------------------------------------------------------------------------------------


def _shapes(dry: bool) -> dict[str, Any]:
    if dry:
        return {"decoder": "tiny-llama", "encoder": "tiny-bert", "prompt_len": 24, "completion_len": 12, "bf16": False}
    return {"decoder": "smollm2-135m", "encoder": "minilm-l6", "prompt_len": 64, "completion_len": 32, "bf16": True}


def _build(name: str, shapes: dict[str, Any], out: str, max_steps: int):
    """A trl_ext trainer for check `name` writing checkpoints to `out`."""
    import torch

    import trl_ext
    from benchmarks.scenarios import _load_policy, _tokenizer, prompt_only, ranked_groups, token_sum_reward
    from benchmarks.shapes import build_model

    dtype = torch.bfloat16 if shapes["bf16"] else torch.float32
    p_len, c_len = shapes["prompt_len"], shapes["completion_len"]
    common = dict(output_dir=out, max_steps=max_steps, learning_rate=1e-3, lr_scheduler_type="constant",
                  logging_steps=1, save_strategy="steps", save_steps=2, report_to=[], disable_tqdm=True,
                  bf16=shapes["bf16"], activation_checkpointing=False, dataloader_num_workers=0, seed=0)
    quantized = name.endswith("_qlora")

    class _Size:  # what benchmarks.scenarios._load_policy reads
        bf16 = shapes["bf16"]
        activation_checkpointing = False

    if name == "reward_grouped":
        built = build_model(shapes["encoder"], "bert_cls_reward", dtype)
        from transformers import AutoModelForSequenceClassification

        import trl_ext.modeling_bert_cls_reward  # noqa: F401  (registers the BERT-CLS reward head's auto classes)

        model = AutoModelForSequenceClassification.from_pretrained(built.path, dtype=dtype)
        args = trl_ext.RewardConfig(**common, per_device_train_batch_size=2, max_length=p_len + c_len + 8)
        return trl_ext.RewardTrainer(model, args=args, train_dataset=ranked_groups(8, 4, p_len, c_len),
                                     processing_class=_tokenizer(built))
    built = build_model(shapes["decoder"], "causal_lm", dtype)
    model, peft_config = _load_policy(built, _Size, quantized)
    tokenizer = _tokenizer(built)
    if name.startswith("dpo"):
        args = trl_ext.DPOConfig(**common, per_device_train_batch_size=2, max_length=p_len + c_len + 8, beta=0.1)
        return trl_ext.DPOTrainer(model, args=args, train_dataset=ranked_groups(8, 4, p_len, c_len),
                                  processing_class=tokenizer, peft_config=peft_config)
    online = dict(common, num_generations=4, max_completion_length=c_len, beta=0.04, temperature=1.0,
                  log_completions=False, per_device_train_batch_size=8)
    prompts = prompt_only(8 * (max_steps + 1), p_len)
    if name == "grpo_adaptive_kl":
        args = trl_ext.GRPOConfig(**online, kl_control="adaptive", kl_target=0.5, kl_horizon=1000)
        cls = trl_ext.GRPOTrainer
    elif name == "rloo":
        args, cls = trl_ext.RLOOConfig(**online), trl_ext.RLOOTrainer
    else:  # ppo, ppo_qlora: one completion per prompt, critic = a second adapter + value head on the same base
        args = trl_ext.PPOConfig(**dict(online, num_generations=1), steps_per_generation=1, num_iterations=1)
        cls = trl_ext.PPOTrainer
    return cls(model, reward_funcs=[token_sum_reward], args=args, train_dataset=prompts, processing_class=tokenizer,
               peft_config=peft_config)


def _full_values(model) -> dict[str, Any]:
    """Trainable parameters as full CPU float tensors, gathered when ZeRO-3 or FSDP2 shards them."""
    import torch

    values = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if hasattr(param, "ds_id"):  # DeepSpeed ZeRO-3 partition
            import deepspeed

            with deepspeed.zero.GatheredParameters([param]):
                values[name] = param.detach().float().cpu().clone()
        elif hasattr(param, "full_tensor"):  # FSDP2 DTensor
            values[name] = param.full_tensor().detach().float().cpu().clone()
        else:
            values[name] = param.detach().float().cpu().clone()
    return {k: v for k, v in values.items() if v.numel() > 0 or not torch.is_tensor(v)}


def check_trainer(name: str, dry: bool, workdir: str) -> dict[str, Any]:
    """2 steps with a checkpoint at step 2, then a fresh trainer resumed from it for step 3."""
    start = time.perf_counter()
    out = os.path.join(workdir, name)
    trainer = _build(name, _shapes(dry), out, max_steps=2)
    before = _full_values(trainer.model)
    result = trainer.train()
    after = _full_values(trainer.model)
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    changed = sorted(k for k in before if k in after and not bool((before[k] == after[k]).all()))
    del trainer
    _free()
    resumed = _build(name, _shapes(dry), out, max_steps=3)
    resumed.train(resume_from_checkpoint=os.path.join(out, "checkpoint-2"))
    resumed_losses = [row["loss"] for row in resumed.state.log_history if "loss" in row]
    figures = {
        "loss": result.training_loss, "losses": losses, "params_trainable": len(before), "params_changed": len(changed),
        "resumed_step": resumed.state.global_step, "resumed_loss": resumed_losses[-1] if resumed_losses else None,
        "seconds": round(time.perf_counter() - start, 1),
    }
    del resumed
    _free()
    problems = []
    if not all(math.isfinite(x) for x in losses + resumed_losses) or not losses:
        problems.append(f"non-finite or missing loss: {losses} / {resumed_losses}")
    if not changed:
        problems.append("no trainable parameter changed in 2 optimizer steps")
    if figures["resumed_step"] != 3:
        problems.append(f"resumed run ended at step {figures['resumed_step']}, expected 3")
    return {"status": "failed" if problems else "ok", "error": "; ".join(problems) or None, **figures}


def _free() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def worker(args: argparse.Namespace) -> None:
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    results: dict[str, Any] = {}
    path = Path(args.result)
    workdir = tempfile.mkdtemp(prefix=f"gpu_check_{args.engine}_")
    for name in args.trainers.split(","):
        progress(f"matrix {args.engine} / {name}: running")
        try:
            results[name] = check_trainer(name, args.dry_run, workdir)
        except Exception as err:  # noqa: BLE001  (every failure is reported, none stops the others)
            results[name] = failure(err, traceback.format_exc())
            print(results[name]["traceback"], flush=True)  # in the engine's log too
            _free()
        progress(f"matrix {args.engine} / {name}: {results[name]['status']}"
                 + (f" ({results[name]['error']})" if results[name].get("error") else ""))
        path.write_text(json.dumps(results, indent=2))  # kept even if a later trainer kills the process


# --------------------------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------------------------


def _run(cmd: list[str], timeout: float, log: Path, echo: bool = False) -> tuple[int, str]:
    """Run `cmd` (killed after `timeout` s), keep its whole output in `log`, echo its progress lines as they come
    when `echo`; returns (return code, output)."""
    import threading

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT, env=env)
    timer = threading.Timer(max(timeout, 1), proc.kill)
    timer.start()
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if echo and line.startswith("[gpu_check") and ": running" not in line:
            print("    " + line.rstrip(), flush=True)
    code = proc.wait()
    timed_out = not timer.is_alive()
    timer.cancel()
    if timed_out:
        code = 124
        lines.append(f"\nTimeoutError: stopped after {timeout:.0f} s (time budget)\n")
    output = "".join(lines)
    log.write_text(output)
    return code, output


def harness_step(args: argparse.Namespace, out: Path, budget_left: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.run", "--out", str(out / "harness"), "--no-plots"]
    if args.dry_run:
        cmd += ["--size", "cpu-smoke", "--scenarios", *(args.scenarios or ["dpo_overhead", "dpo_qlora"])]
    else:  # 2 + 4 steps per variant: every gpu scenario within one run of <= 9 minutes on one H100/H200
        cmd += ["--size", "gpu", "--warmup", "2", "--steps", "4"] + (["--scenarios", *args.scenarios]
                                                                     if args.scenarios else [])
    progress("harness: " + " ".join(cmd[1:]))
    start = time.perf_counter()
    code, output = _run(cmd, budget_left, out / "harness.log")
    rows = []  # written by the harness as each scenario finishes: what finished before a stop is here
    for jsonl in sorted((out / "harness").glob("*.jsonl")):
        rows += [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    failed_rows = [row for row in rows if row.get("error")]
    status = "ok" if code == 0 and not failed_rows else "failed"
    error = None
    if code != 0:
        error = first_error_line(output)
    elif failed_rows:
        error = f"{len(failed_rows)} scenario(s) failed: " + ", ".join(row["scenario"] for row in failed_rows)
    result = {"status": status, "returncode": code, "seconds": round(time.perf_counter() - start, 1),
              "error": error, "traceback": traceback_tail(output) if code != 0 else None,
              "scenarios": _harness_figures(rows)}
    progress(f"harness: {status} in {result['seconds']} s ({len(rows) - len(failed_rows)} scenarios finished)"
             + (f": {error}" if error else ""))
    return result


def _harness_figures(rows: list[dict]) -> list[dict]:
    keys = ("variant", "step_time_s_median", "tokens_per_s", "peak_memory_mib", "mfu", "achieved_tflops")
    figures = []
    for row in rows:
        if row.get("error"):  # a scenario that raised: its error and traceback, no figures
            figures.append({"scenario": row["scenario"], "status": "failed", "error": row["error"],
                            "traceback": row.get("traceback")})
            continue
        cand, base = row["variants"]["candidate"], row["variants"]["baseline"]
        figures.append({"scenario": row["scenario"], "status": "ok", "ratios": row.get("ratios"),
                        "goal": row.get("goal"), "candidate": {k: cand.get(k) for k in keys},
                        "baseline": {k: base.get(k) for k in keys}})
    return figures


def matrix_step(args: argparse.Namespace, out: Path, engine: str, budget_left: float) -> dict[str, Any]:
    result_file = out / f"matrix_{engine}.json"
    result_file.unlink(missing_ok=True)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1"]
    launch += ["--cpu"] if engine == "none" else ["--config_file", str(REPO_ROOT / ENGINES[engine])]
    # `-m` from the repository root (`_run`'s cwd): the worker imports `benchmarks.*` as a package, as here
    cmd = launch + ["-m", "benchmarks.gpu_check", "--worker", "--engine", engine, "--trainers", args.trainers,
                    "--result", str(result_file)] + (["--dry-run"] if args.dry_run else [])
    progress(f"matrix {engine}: accelerate launch ({len(args.trainers.split(','))} trainers)")
    code, output = _run(cmd, budget_left, out / f"matrix_{engine}.log", echo=True)
    results = json.loads(result_file.read_text()) if result_file.exists() else {}
    # A crashed or timed-out launch: the trainer it was running failed with it (the launch's traceback), the ones
    # after it never ran.
    crashed = False
    for name in args.trainers.split(","):
        if name in results:
            continue
        if not crashed:
            tail = traceback_tail(output)
            results[name] = {"status": "failed", "error": first_error_line(tail) if code else "no result written",
                             "traceback": tail}
            crashed = True
        else:
            results[name] = {"status": "not run", "error": f"the {engine} process ended before this trainer"}
    return results


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "gpu_check.json", out / "gpu_check.md"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    harness = report["harness"]
    lines = [f"# GPU check: {report['device']}", "",
             f"{'Dry run (CPU, tiny shapes, no engine)' if report['dry_run'] else 'Device run'}; "
             f"part `{report.get('part', 'all')}`; {report['seconds']:.0f} s in all; command `{report['command']}`.",
             "", "## Harness", "", f"Status: {harness['status']}"
             + (f" ({harness['error']})" if harness.get("error") else ""), "",
             "| scenario | step time x | samples/s x | peak memory x | candidate MFU | goal met |",
             "|---|---|---|---|---|---|"]
    for row in harness.get("scenarios", []):
        if row.get("status") == "failed":
            lines.append(f"| {row['scenario']} | failed | - | - | - | - |")
            continue
        ratios, goal = row.get("ratios") or {}, row.get("goal") or {}
        mfu = row["candidate"].get("mfu")
        lines.append(f"| {row['scenario']} | {_fmt(ratios.get('step_time'))} | {_fmt(ratios.get('samples_per_s'))} | "
                     f"{_fmt(ratios.get('peak_memory'))} | {_fmt(mfu)} | {goal.get('met')} |")
    engines = list(report["matrix"])
    lines += ["", "## Engine x trainer", ""]
    if engines:
        lines += ["| trainer | " + " | ".join(engines) + " |", "|---" * (len(engines) + 1) + "|"]
        for name in report["trainers"]:
            cells = [report["matrix"][engine].get(name, {}).get("status", "-") for engine in engines]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    else:
        lines.append("Not run (`--part harness`).")
    problems = [(e, n, c) for e, cells in report["matrix"].items() for n, c in cells.items() if c.get("status") != "ok"]
    problems = [("-", f"harness / {row['scenario']}", row) for row in harness.get("scenarios", [])
                if row.get("status") == "failed"] + problems
    if harness["status"] == "failed" and harness.get("traceback"):
        problems.insert(0, ("-", "harness", harness))
    lines += ["", f"## Failures and refusals (error line, last {TRACEBACK_LINES} lines of the traceback)", ""]
    for engine, name, cell in problems:
        lines.append(f"- {engine} / {name}: {cell.get('status', 'failed')}: `{cell.get('error')}`")
        if cell.get("traceback"):
            lines += ["", "  ```text"] + [f"  {line}" for line in cell["traceback"].splitlines()] + ["  ```", ""]
    if not problems:
        lines.append("None.")
    md_path.write_text("\n".join(lines) + "\n")
    return [json_path, md_path]


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and value == value else "-"


def _environment() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    versions = {}
    import trl_ext

    versions["trl_ext"] = trl_ext.__version__  # may run from a source tree, not installed
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "deepspeed"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {"device": device, "versions": versions, "cuda": torch.version.cuda}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="Report folder (default benchmarks/results/<device>/).")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, engine 'none' (no DeepSpeed/FSDP).")
    parser.add_argument("--part", choices=PARTS, default="all",
                        help="harness: the benchmark harness only; matrix: the engine x trainer matrix only; all: both "
                             "(each part is sized for one run of <= 9 minutes on one H100/H200).")
    parser.add_argument("--engines", default=None, help=f"Comma-separated subset of {', '.join(ENGINES)}.")
    parser.add_argument("--trainers", default=",".join(TRAINERS), help="Comma-separated subset of the trainers.")
    parser.add_argument("--scenarios", nargs="*", default=None,
                        help="Harness scenarios to run (default: every scenario of size gpu; two in a dry run).")
    parser.add_argument("--skip-harness", action="store_true", help="Same as --part matrix.")
    parser.add_argument("--budget_s", type=float, default=540, help="Stop starting steps after this many seconds.")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="none", help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [t for t in args.trainers.split(",") if t not in TRAINERS]
    if unknown:
        parser.error(f"unknown trainers {unknown}; known: {', '.join(TRAINERS)}")
    if args.skip_harness:
        if args.part == "harness":
            parser.error("--skip-harness conflicts with --part harness")
        args.part = "matrix"
    if args.worker:
        worker(args)
        return {}

    import torch

    from benchmarks.measure import device_name, device_slug

    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --dry-run on a CPU machine")
    engines = ["none"] if args.dry_run else (args.engines.split(",") if args.engines else list(ENGINES))
    bad = [e for e in engines if e != "none" and e not in ENGINES]
    if bad:
        parser.error(f"unknown engines {bad}; known: {', '.join(ENGINES)}")
    out = Path(args.out) if args.out else REPO_ROOT / "benchmarks" / "results" / device_slug(device_name())
    out.mkdir(parents=True, exist_ok=True)
    report = {**_environment(), "dry_run": args.dry_run, "part": args.part, "trainers": args.trainers.split(","),
              "command": "python -m benchmarks.gpu_check " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "matrix": {}}
    progress(f"device {report['device']}; versions {report['versions']}; part {args.part}")

    def left() -> float:
        return args.budget_s - (time.perf_counter() - started)

    if args.part == "matrix":
        report["harness"] = {"status": "skipped", "error": None, "scenarios": []}
    else:
        share = 0.5 if args.part == "all" and not args.dry_run else 1.0
        report["harness"] = harness_step(args, out, left() * share)
    if args.part != "harness":
        for i, engine in enumerate(engines):
            if left() <= 0:
                report["matrix"][engine] = {name: {"status": "not run", "error": "time budget spent"}
                                            for name in report["trainers"]}
                continue
            report["matrix"][engine] = matrix_step(args, out, engine, left() / (len(engines) - i))
    report["seconds"] = round(time.perf_counter() - started, 1)
    paths = write_report(report, out)
    counts: dict[str, int] = {}
    for cells in report["matrix"].values():
        for cell in cells.values():
            counts[cell.get("status", "-")] = counts.get(cell.get("status", "-"), 0) + 1
    progress(f"report: {', '.join(str(p) for p in paths)}; matrix {counts or 'not run'}; harness "
             f"{report['harness']['status']}")
    return report


if __name__ == "__main__":
    main()
