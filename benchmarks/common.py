# Copyright 2026 The trl_ext authors. Apache-2.0.
"""What the benchmark scripts share: the repository root, the recipes' helpers (`model_assets` for the real models)
on `sys.path`, the shared real-data folder and the local tokenizers of the test helpers."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_CPU = REPO_ROOT / "benchmarks" / "results" / "cpu"
for _path in (REPO_ROOT, REPO_ROOT / "recipes"):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))

from tests.helpers import build_char_tokenizer, build_wordpiece_tokenizer, shared_data_dir  # noqa: E402,F401


def environment(command: str) -> dict:
    """Device, library versions and the command line, stored with every benchmark result."""
    import os
    import platform
    from importlib.metadata import version

    import torch

    import trl_ext

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    versions = {name: version(name) for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets")}
    return {"device": device, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "command": command,
            "versions": {**versions, "trl_ext": trl_ext.__version__}}  # trl_ext may run from a source tree


def bar_plot(path: Path, title: str, groups: list[str], series: dict[str, list[float]], ylabel: str,
             hline: tuple[float, str] | None = None) -> None:
    """Grouped bars: one group per x label, one bar per series; optional horizontal reference line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(groups) + 2), 3.6))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(groups))]
        bars = ax.bar(xs, values, width, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    if hline is not None:
        ax.axhline(hline[0], color="grey", linestyle="--", linewidth=1, label=hline[1])
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
