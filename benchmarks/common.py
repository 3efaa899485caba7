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
