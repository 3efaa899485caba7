# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Harness output: JSON lines, a Markdown table, PNG bar plots, and an optional W&B table."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TABLE_COLUMNS = [
    "scenario", "variant", "step_s", "samples/s", "tokens/s", "peak MiB", "MFU", "ratio step time",
    "ratio samples/s", "ratio peak mem", "goal", "met",
]


TRACEBACK_LINES = 40  # kept per failure in the JSON and the Markdown
# Lines the c10d watchdog threads print while a process group is torn down; they can bury the Python traceback.
_NOISE_PREFIXES = ("frame #", "Exception raised from", "[rank0]:[W", "[rank1]:[W")


def traceback_tail(text: str, n: int = TRACEBACK_LINES) -> str:
    """The last `n` lines of the last Python traceback in `text` (from its "Traceback (most recent call last):"), or
    of the whole text when it holds none; c10d watchdog noise lines left out."""
    lines = [line.rstrip() for line in text.splitlines() if not line.lstrip().startswith(_NOISE_PREFIXES)]
    starts = [i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line]
    if starts:
        lines = lines[starts[-1]:]
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines[-n:])


def first_error_line(text: str) -> str:
    """The line that says what went wrong: the last `...Error: ...` line of a traceback, else the last line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if ("Error" in line.split(":")[0] or "Exception" in line.split(":")[0])
              and (":" in line or line.isidentifier())]  # a bare `AssertionError` line too
    return (errors[-1] if errors else lines[-1] if lines else "no output")[:400]


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One table row per (scenario, variant); the ratios and goal on the candidate's row."""
    out = []
    for row in rows:
        if row.get("error"):  # a scenario that raised: listed under the table, no figures
            continue
        for role in ("baseline", "candidate"):
            f = row["variants"][role]
            is_cand = role == "candidate"
            mfu = f.get("mfu")
            goal = row["goal"]
            extra = ""
            if "speedup_over_forward_ratio" in goal:
                extra = f" (speed-up/forward ratio {goal['speedup_over_forward_ratio']:.2f})"
            elif goal.get("reward_model_share") is not None:
                extra = f" (RM share {goal['reward_model_share']:.1%})"
            elif goal.get("mfu") is not None:
                extra = f" (MFU {goal['mfu']:.1%})"
            out.append([
                row["scenario"] if not is_cand else "", f["variant"], _fmt(f["step_time_s_median"]),
                _fmt(f["samples_per_s"]), _fmt(f["tokens_per_s"]), _fmt(f["peak_memory_mib"]),
                f"{mfu:.1%}" if mfu is not None else "-",
                _fmt(row["ratios"]["step_time"]) if is_cand else "", _fmt(row["ratios"]["samples_per_s"]) if is_cand else "",
                _fmt(row["ratios"]["peak_memory"]) if is_cand else "", (goal["text"] + extra) if is_cand else "",
                _fmt(goal.get("met")) if is_cand else "",
            ])
    return out


def markdown(rows: list[dict[str, Any]], size: str) -> str:
    meta = rows[0]
    lines = [
        f"# Benchmark `{size}`: size `{meta['size']}` on {meta['device_name']}",
        "",
        f"Command: `{meta['command']}`  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + "  ",
        "Weights are **random** (architectures from public configs: "
        + ", ".join(f"{k} = {v}" for k, v in meta["shapes"].items()) + ").  ",
        f"Warm-up {meta['size_config']['warmup']} + measured {meta['size_config']['steps']} optimizer steps per variant"
        + (f", {meta['repeats']} repeats in alternating order" if meta.get("repeats", 1) > 1 else "")
        + (f"; bf16 matmul peak measured {meta['matmul_peak_bf16_tflops']:.0f} TFLOP/s, datasheet "
           f"{meta['datasheet_bf16_tflops']} TFLOP/s." if meta.get("matmul_peak_bf16_tflops") else "; CPU: no MFU."),
        "",
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + "---|" * len(TABLE_COLUMNS),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(rows)]
    failed = [row for row in rows if row.get("error")]
    if failed:
        lines += ["", f"Failed scenarios (error line, last {TRACEBACK_LINES} lines of the traceback):", ""]
        for row in failed:
            lines += [f"- {row['scenario']}: `{row['error']}`", "", "  ```text"]
            lines += [f"  {line}" for line in (row.get("traceback") or "").splitlines()] + ["  ```", ""]
    lines += ["", "Ratios are candidate / baseline. Definitions:", ""]
    lines += [f"* **{k}**: {v}" for k, v in meta["definitions"].items()]
    return "\n".join(lines) + "\n"


def make_plots(rows: list[dict[str, Any]], out_dir: Path, size: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    rows = [r for r in rows if not r.get("error")]
    if not rows:
        return paths
    names = [r["scenario"] for r in rows]
    for metric, label, fname in (("samples_per_s", "samples / s", "throughput"),
                                 ("peak_memory_mib", "peak memory (MiB)", "memory")):
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows)), 4))
        width = 0.38
        xs = range(len(rows))
        base = [r["variants"]["baseline"][metric] for r in rows]
        cand = [r["variants"]["candidate"][metric] for r in rows]
        ax.bar([x - width / 2 for x in xs], base, width, label="baseline (plain TRL / LoRA / rule reward)")
        ax.bar([x + width / 2 for x in xs], cand, width, label="candidate (trl_ext / QLoRA / + BERT RM)")
        for x, b, c in zip(xs, base, cand):
            ax.annotate(f"x{c / b:.2f}", (x + width / 2, c), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, rotation=25, ha="right", fontsize=8)
        ax.set_ylabel(label)
        ax.set_title(f"{label}, {size}, {rows[0]['device_name']} (random weights)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{size}_{fname}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def write_reports(rows: list[dict[str, Any]], out_dir: str | os.PathLike, size: str, plots: bool = True) -> list[Path]:
    """Write `<size>.jsonl`, `<size>.md` and (unless disabled) the PNG plots; return the paths.

    `size` is the file stem: the size name, or the run's `--name`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = out_dir / f"{size}.jsonl"
    jsonl.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
    paths = [jsonl]
    if rows:
        md = out_dir / f"{size}.md"
        md.write_text(markdown(rows, size))
        paths.append(md)
    if plots and rows:
        paths += make_plots(rows, out_dir, size)
    return paths


def log_wandb(rows: list[dict[str, Any]], paths: list[Path], meta: dict[str, Any]) -> None:
    """Log the table (and plots) to a W&B run (honours WANDB_MODE=offline, WANDB_PROJECT)."""
    import wandb

    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "trl_ext-benchmarks"),
                     name=f"bench-{meta['size']}-{meta['device']}", config={k: v for k, v in meta.items()
                                                                           if k != "definitions"}, job_type="benchmark")
    payload: dict[str, Any] = {"benchmark/table": wandb.Table(columns=TABLE_COLUMNS, data=table_rows(rows))}
    for path in paths:
        if path.suffix == ".png":
            payload[f"benchmark/{path.stem}"] = wandb.Image(str(path))
    for row in rows:
        for key, value in (row.get("ratios") or {}).items():
            payload[f"benchmark/{row['scenario']}/ratio_{key}"] = value
    run.log(payload)
    run.finish()
