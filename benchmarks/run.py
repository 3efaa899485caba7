# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Benchmark harness: plain TRL vs trl_ext on identical scenarios; throughput, peak memory and MFU.

    python -m benchmarks.run --cpu-smoke                 # every CPU scenario, tiny shapes, < 3 min on 2 CPU cores
    python -m benchmarks.run --size small                # ~100M-parameter shapes (CPU)
    python -m benchmarks.run --size gpu                  # Qwen2.5-0.5B / Llama-3.2-1B / -3B / BERT-base shapes, bf16
    python -m benchmarks.run --size gpu --scenarios dpo_overhead dpo_qlora --steps 20 --report_to wandb

Each scenario runs a baseline (plain TRL, or bf16 LoRA / rule reward only) and a candidate (trl_ext, or QLoRA /
+ BERT-CLS RM) on the same saved random-weight model and synthetic data, in this process, one after the other.
Results: `benchmarks/results/<device>/<size>.jsonl` (one JSON line per scenario, rewritten as each scenario finishes;
a scenario that raised is a line with its error and the last 40 lines of its traceback), `<size>.md` (table) and
`<size>_throughput.png` / `<size>_memory.png`. Weights are random (architectures from public configs).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import platform
import shlex
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers.trainer_callback import PrinterCallback  # noqa: E402

from .measure import (  # noqa: E402
    PeakMemory,
    StepTimer,
    datasheet_bf16_tflops,
    device_name,
    device_slug,
    measure_matmul_peak_tflops,
    summarize,
)
from .report import first_error_line, traceback_tail, write_reports  # noqa: E402
from .scenarios import SIZES, Scenario, Size, Variant, all_scenarios, default_scenarios  # noqa: E402
from .shapes import SHAPE_SOURCES  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFINITIONS = {
    "weights": "random (architectures copied from public configs; speed and memory do not depend on weight values)",
    "step_time": "wall-clock between consecutive optimizer-step ends (collation, generation, forward, backward, "
                 "optimizer all inside); median of the measured steps after warm-up",
    "samples": "preference pairs per step (RM/DPO; grouped: groups x C(K,2)), completions per step (GRPO)",
    "tokens_per_s": "non-padding tokens of gradient-enabled forwards (prompt + completion tokens trained on) per second",
    "all_tokens_per_s": "tokens_per_s plus forward-only tokens (reference model, generation decode steps, reward model)",
    "flops": "6*N*train_tokens + 2*N*forward_only_tokens per model (N = its parameters, embeddings included, tied once, "
             "4-bit counted unquantised; LoRA adapters excluded)",
    "mfu": "achieved FLOP/s / measured bf16 matmul peak (8192^3 matmul in this run); mfu_datasheet uses the "
           "datasheet's dense bf16 peak",
    "peak_memory": "GPU: torch.cuda.max_memory_allocated over model load + training (reserved also given); CPU: "
                   "process peak RSS sampled every 20 ms (later variants in one process can inherit allocator state)",
    "forward_ratio": "all tokens through the models per sample, baseline / candidate (= the forward-count ratio when "
                     "sequences have equal lengths)",
}


def _versions() -> dict[str, str]:
    import accelerate
    import peft
    import transformers
    import trl

    import trl_ext

    out = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "trl": trl.__version__, "peft": peft.__version__, "accelerate": accelerate.__version__,
           "trl_ext": trl_ext.__version__}
    try:
        import bitsandbytes

        out["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        out["bitsandbytes"] = None
    return out


@dataclasses.dataclass
class VariantRun:
    """One build-and-train of a variant: its measured step records and what the figures need."""

    records: list[Any]
    counters: list[Any]
    samples_per_step: float
    memory: dict[str, Any]
    setup_s: float
    trainer: str
    notes: dict[str, Any]


def run_variant(variant: Variant, size: Size) -> VariantRun:
    """Build the variant's trainer, train warm-up + measured steps; keep the measured steps' records."""
    with PeakMemory() as memory:
        start = time.perf_counter()
        built = variant.build(size)
        setup_s = time.perf_counter() - start
        timer = StepTimer(built.counters, built.timers)
        built.trainer.add_callback(timer)
        built.trainer.remove_callback(PrinterCallback)  # the harness prints its own summary
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built.trainer.train()
    if len(timer.records) <= size.warmup:
        raise RuntimeError(f"{variant.name}: {len(timer.records)} steps ran, {size.warmup} were warm-up.")
    for counter in built.counters:
        counter.remove()
    run = VariantRun(timer.records[size.warmup:], built.counters, built.samples_per_step, memory.figures, setup_s,
                     f"{type(built.trainer).__module__}.{type(built.trainer).__name__}", dict(built.notes))
    del built, timer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return run


def variant_figures(runs: list[VariantRun], peak_tflops: float | None, datasheet: float | None) -> dict[str, Any]:
    """Figures over the measured steps of every repeat of one variant; peak memory is the highest of the repeats."""
    records = [record for run in runs for record in run.records]
    figures = summarize(records, 0, runs[0].counters, runs[0].samples_per_step, peak_tflops)
    figures["mfu_datasheet"] = (figures["achieved_tflops"] / datasheet) if datasheet else None
    peak_run = max(runs, key=lambda r: r.memory["peak_memory_mib"])
    figures.update(peak_run.memory)
    figures["peak_memory_mib_per_repeat"] = [r.memory["peak_memory_mib"] for r in runs]
    figures["repeats"] = len(runs)
    figures["setup_s"] = statistics.median(r.setup_s for r in runs)
    figures["trainer"] = runs[0].trainer
    figures.update(runs[0].notes)
    return figures


def compare(scenario: Scenario, base: dict[str, Any], cand: dict[str, Any], on_gpu: bool) -> dict[str, Any]:
    """Ratios candidate / baseline and whether the scenario's goal is met (None where it does not apply)."""
    ratios = {
        "step_time": cand["step_time_s_median"] / base["step_time_s_median"],
        "samples_per_s": cand["samples_per_s"] / base["samples_per_s"],
        "peak_memory": cand["peak_memory_mib"] / base["peak_memory_mib"],
    }
    per_sample = lambda f: (f["train_tokens_per_step"] + f["forward_only_tokens_per_step"]) / f["samples_per_step"]  # noqa: E731
    ratios["forward_ratio"] = per_sample(base) / per_sample(cand)
    goal: dict[str, Any] = {"text": scenario.goal}
    if scenario.kind == "overhead":
        goal["met"] = ratios["step_time"] <= 1.02
        if scenario.name == "dpo_overhead":
            goal["mfu"] = cand.get("mfu")
            goal["mfu_met"] = (cand["mfu"] >= 0.40) if on_gpu and cand.get("mfu") is not None else None
    elif scenario.kind == "speedup":
        goal["speedup_over_forward_ratio"] = ratios["samples_per_s"] / ratios["forward_ratio"]
        goal["met"] = goal["speedup_over_forward_ratio"] >= 0.8
    elif scenario.kind == "memory":
        big = max(base["params"].values()) >= 1e9
        goal["applies"] = big and on_gpu
        goal["max_peak_memory_ratio"] = scenario.max_memory_ratio
        goal["met"] = (ratios["peak_memory"] <= scenario.max_memory_ratio) if goal["applies"] else None
    elif scenario.kind == "throughput_memory":
        goal["met"] = ratios["samples_per_s"] >= 0.8 and ratios["peak_memory"] <= 1.25
    elif scenario.kind == "share":
        goal["reward_model_share"] = cand.get("reward_model_share_of_step")
        goal["met"] = goal["reward_model_share"] <= 0.05 if goal["reward_model_share"] is not None else None
    return {"ratios": ratios, "goal": goal}


def run_scenario(scenario: Scenario, size: Size, repeats: int, meta: dict[str, Any], peak: float | None,
                 datasheet: float | None, on_gpu: bool, bar: Any = None) -> dict[str, Any]:
    """Both variants of one scenario (`repeats` times, alternating the order): its JSON row."""
    runs: dict[str, list[VariantRun]] = {"baseline": [], "candidate": []}
    pair = [("baseline", scenario.baseline), ("candidate", scenario.candidate)]
    for repeat in range(repeats):
        # Alternate the order on repeats so neither variant always runs on a warmer (or more fragmented) process.
        for role, variant in (pair if repeat % 2 == 0 else pair[::-1]):
            if bar is not None:
                bar.set_postfix_str(f"{scenario.name}: {variant.name}")
            runs[role].append(run_variant(variant, size))
            if bar is not None:
                bar.update(1)
    figures = {role: {**variant_figures(runs[role], peak, datasheet), "variant": variant.name}
               for role, variant in pair}
    return {"scenario": scenario.name, "description": scenario.description, "kind": scenario.kind, **meta,
            "variants": figures, **compare(scenario, figures["baseline"], figures["candidate"], on_gpu)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default=None,
                        help="Shapes and batch sizes (default: gpu on a GPU, small on CPU).")
    parser.add_argument("--cpu-smoke", action="store_true", help="Same as --size cpu-smoke.")
    parser.add_argument("--scenarios", nargs="*", default=None,
                        help=f"Subset of: {', '.join(all_scenarios())} (default: every scenario of the size; "
                             "gpu-only ones, e.g. dpo_qlora_3b, only at --size gpu)")
    parser.add_argument("--warmup", type=int, default=None, help="Warm-up optimizer steps (default: per size).")
    parser.add_argument("--steps", type=int, default=None, help="Measured optimizer steps (default: per size).")
    parser.add_argument("--repeats", type=int, default=1,
                        help="Build and run each variant this many times, alternating the order; figures pool the "
                             "measured steps of all repeats (use >= 2 for overhead ratios on a noisy machine).")
    parser.add_argument("--name", default=None,
                        help="Stem of the output files (default: the size), e.g. small-overhead -> small-overhead.jsonl")
    parser.add_argument("--out", default=None, help="Results folder (default benchmarks/results/<device>/).")
    parser.add_argument("--report_to", choices=["none", "wandb"], default="none")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        if args.size not in (None, "cpu-smoke"):
            parser.error("--cpu-smoke conflicts with --size " + args.size)
        args.size = "cpu-smoke"
    if args.size is None:
        args.size = "gpu" if torch.cuda.is_available() else "small"
    if args.size == "gpu" and not torch.cuda.is_available():
        parser.error("--size gpu needs a CUDA device; use --size small or --cpu-smoke on CPU.")
    known = all_scenarios()
    for name in args.scenarios or []:
        if name not in known:
            parser.error(f"unknown scenario {name!r}; known: {', '.join(known)}")
        if known[name].sizes is not None and args.size not in known[name].sizes:
            parser.error(f"scenario {name!r} runs at size {', '.join(known[name].sizes)} only, not {args.size}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    for flag in ("warmup", "steps"):
        value = getattr(args, flag)
        if value is not None and value < (0 if flag == "warmup" else 1):
            parser.error(f"--{flag} must be >= {0 if flag == 'warmup' else 1}, got {value}")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    import datasets
    import transformers
    from tqdm.auto import tqdm

    # One progress bar (the harness's) instead of hundreds of loading/tokenizing bars and per-trainer logs.
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")

    size = SIZES[args.size]
    if args.warmup is not None or args.steps is not None:
        size = dataclasses.replace(size, warmup=size.warmup if args.warmup is None else args.warmup,
                                   steps=size.steps if args.steps is None else args.steps)
    scenarios = ([s for name, s in all_scenarios().items() if name in args.scenarios] if args.scenarios
                 else list(default_scenarios(size.name).values()))
    on_gpu = torch.cuda.is_available()
    name = device_name()
    peak = measure_matmul_peak_tflops() if on_gpu else None
    datasheet = datasheet_bf16_tflops(name) if on_gpu else None
    out_dir = Path(args.out) if args.out else REPO_ROOT / "benchmarks" / "results" / device_slug(name)
    command = "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    meta = {
        "device": device_slug(name), "device_name": name, "cpu_threads": torch.get_num_threads(),
        "platform": platform.platform(), "versions": _versions(), "command": command.strip(), "size": size.name,
        "size_config": dataclasses.asdict(size), "repeats": args.repeats, "matmul_peak_bf16_tflops": peak, "datasheet_bf16_tflops": datasheet,
        "shapes": {key: SHAPE_SOURCES[getattr(size, key)] for key in ("decoder", "qlora_decoder", "encoder")},
        "definitions": DEFINITIONS, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"trl_ext benchmark harness: size={size.name} on {name}; weights are RANDOM (public architecture configs).")
    if on_gpu:
        print(f"bf16 matmul peak measured: {peak:.0f} TFLOP/s (datasheet: {datasheet or 'unknown'} TFLOP/s)")
    rows: list[dict[str, Any]] = []
    stem = args.name or size.name
    bar = tqdm(total=2 * len(scenarios) * args.repeats, desc="benchmark", unit="run", file=sys.stdout)
    for scenario in scenarios:
        try:
            row = run_scenario(scenario, size, args.repeats, meta, peak, datasheet, on_gpu, bar)
            tqdm.write(f"{scenario.name}: step time x{row['ratios']['step_time']:.3f}, samples/s "
                       f"x{row['ratios']['samples_per_s']:.3f}, peak memory x{row['ratios']['peak_memory']:.3f}"
                       f" -> goal met: {row['goal'].get('met')}", file=sys.stdout)
        except Exception:  # noqa: BLE001  (one scenario's failure, e.g. out of memory, does not stop the others)
            tail = traceback_tail(traceback.format_exc())
            row = {"scenario": scenario.name, "description": scenario.description, "kind": scenario.kind, **meta,
                   "error": first_error_line(tail), "traceback": tail}
            tqdm.write(f"{scenario.name}: FAILED: {row['error']}", file=sys.stdout)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        rows.append(row)
        # Written as each scenario finishes, so a run stopped at a time limit keeps every finished scenario.
        write_reports(rows, out_dir, stem, plots=False)
    bar.close()
    paths = write_reports(rows, out_dir, stem, plots=not args.no_plots)
    print("wrote " + ", ".join(str(p) for p in paths))
    if args.report_to == "wandb":
        from .report import log_wandb

        log_wandb(rows, paths, meta)
    return rows


if __name__ == "__main__":
    main()
