# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Test helpers: paths, rule rewards for tiny-model runs, an independent KL probe, a reader for offline W&B runs, and a
subprocess runner. The local tokenizers and the shared data folder come from the benchmarks' helpers
(`benchmarks.common`), which the benchmarks use too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks.common import (  # noqa: F401  (re-exported for the tests)
    CHARS,
    build_char_tokenizer,
    build_wordpiece_tokenizer,
    shared_data_dir,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES_DIR = REPO_ROOT / "recipes"


def run_script(cmd: list[str], cwd, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    """Run a recipe or worker in a subprocess; with `check`, fail with the end of its output when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=dict(os.environ))
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:] + "\n" + proc.stderr[-4000:]
    return proc


def python_script(path) -> list[str]:
    """`[python, path]` for a recipe or worker script."""
    return [sys.executable, str(path)]


def reward_a(completions: list, **kwargs) -> list[float]:
    """A learnable rule reward for tests: the fraction of 'a' characters in each (text) completion."""
    return [c.count("a") / max(len(c), 1) for c in completions]


def reward_varied(completions: list, **kwargs) -> list[float]:
    """A reward that differs between (almost) any two completions, so advantages and returns are non-zero at once."""
    return [(sum(map(ord, c)) % 13) / 13 for c in completions]


def record_exact_rollout_kl(trainer) -> list[float]:
    """Test helper: wraps `trainer._generate_and_score_completions` so that, for every training rollout, the exact
    per-completion KL(π‖π_ref) is computed independently (full logits, float64, positions sliced by hand, the reference
    from `trainer.ref_model` or the policy with its adapter disabled) before the policy is updated on it.
    Returns the list the values are appended to."""
    import torch

    values: list[float] = []
    inner = trainer._generate_and_score_completions

    def logps(model, ids, mask, n):
        return model(input_ids=ids, attention_mask=mask).logits[:, -n - 1:-1].double().log_softmax(-1)

    def wrapped(inputs):
        output = inner(inputs)
        if trainer.model.training:
            ids = torch.cat([output["prompt_ids"], output["completion_ids"]], 1)
            mask = torch.cat([output["prompt_mask"], output["completion_mask"]], 1)
            n = output["completion_ids"].size(1)
            with torch.no_grad():
                policy = logps(trainer.model, ids, mask, n)
                if trainer.ref_model is not None:
                    ref = logps(trainer.ref_model, ids, mask, n)
                else:
                    with trainer.model.disable_adapter():
                        ref = logps(trainer.model, ids, mask, n)
            per_token = (policy.exp() * (policy - ref)).sum(-1) * output["completion_mask"]
            values.append(per_token.sum().item() / ids.size(0))
        return output

    trainer._generate_and_score_completions = wrapped
    return values


def wandb_history(path) -> list[dict]:
    """History rows of an offline W&B run file. wandb 0.31 has no Python reader for its LevelDB-style log (32 KiB
    blocks of chunks with a 7-byte header: crc32, length, type FULL/FIRST/MIDDLE/LAST) after a 7-byte file header."""
    import json
    import struct

    from wandb.proto import wandb_internal_pb2

    raw, offset, block, records, pending = path.read_bytes(), 7, 32768, [], b""
    assert raw[:4] == b":W&B", raw[:8]
    while offset + 7 <= len(raw):
        if block - offset % block < 7:  # block trailer too small for a header: skip to the next block
            offset += block - offset % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[offset : offset + 7])
        payload, offset = raw[offset + 7 : offset + 7 + length], offset + 7 + length
        if kind in (1, 2):
            pending = payload
        elif kind in (3, 4):
            pending += payload
        if kind in (1, 4):
            records.append(pending)
    rows = []
    for data in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def hub_cache(hf_home: str | os.PathLike, repos: dict[str, str | os.PathLike]) -> Path:
    """Write local model directories into the Hugging Face cache layout under `hf_home`, so that
    `from_pretrained("org/name")` resolves them with `HF_HUB_OFFLINE=1` (the files are symlinked, not copied)."""
    import hashlib

    hub = Path(hf_home) / "hub"
    for repo_id, local in repos.items():
        repo = hub / f"models--{repo_id.replace('/', '--')}"
        revision = hashlib.sha1(repo_id.encode()).hexdigest()
        snapshot = repo / "snapshots" / revision
        snapshot.mkdir(parents=True, exist_ok=True)
        for source in Path(local).rglob("*"):
            target = snapshot / source.relative_to(local)
            if source.is_dir():
                target.mkdir(exist_ok=True)
            elif not target.exists():
                target.symlink_to(source.resolve())
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(revision)
    return hub
