# Copyright 2026 The trl_ext authors. Apache-2.0.
"""What the benchmark scripts share: the repository root, the shared real-data folder, tokenizers built locally (no
hub; one token per character, so a text of n characters is n tokens and benchmark sequence lengths are exact), the
environment record stored with every result, and a bar plot. Run the scripts as modules from the repository root:
`python -m benchmarks.<name>`."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_CPU = REPO_ROOT / "benchmarks" / "results" / "cpu"


def shared_data_dir() -> Path:
    """Directory with the real shared data sets: `TRL_EXT_SHARED_DATA`, else `../shared/data` beside the repository
    (where CI puts it). It may not exist (a user's clone has none): callers skip with a clear reason."""
    env = os.environ.get("TRL_EXT_SHARED_DATA")
    return Path(env) if env else (REPO_ROOT / ".." / "shared" / "data").resolve()


#: Characters both tokenizers know (one token each).
CHARS = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!?:;'\"-+=*/()\n")

_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def build_char_tokenizer() -> PreTrainedTokenizerBase:
    """A character-level fast tokenizer for decoders: `<pad>`=0, `<eos>`=1, `<bos>`=2, `<unk>`=3, a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
    for ch in CHARS:
        vocab.setdefault(ch, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    backend.decoder = decoders.Fuse()  # decode "a b c" back to "abc"
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )
    tok.chat_template = _CHAT_TEMPLATE
    return tok


def build_wordpiece_tokenizer(save_dir: str | os.PathLike, model_max_length: int = 512) -> PreTrainedTokenizerBase:
    """A BERT-style WordPiece tokenizer ([CLS] a [SEP] b [SEP], token_type_ids) whose pieces are single characters.

    Saved to `save_dir` (so a model directory built beside it loads with `AutoTokenizer`).
    """
    from transformers import BertTokenizerFast

    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    for ch in CHARS:
        if ch.strip():
            pieces += [ch, f"##{ch}"]
    tok = BertTokenizerFast(vocab={p: i for i, p in enumerate(pieces)}, do_lower_case=False,
                            model_max_length=model_max_length)
    tok.save_pretrained(save_dir)
    return tok


def load_recipe(name: str) -> ModuleType:
    """`recipes/<name>.py` as a module (the recipes are scripts, not a package): its `main`, script arguments and
    `DEFAULT_CONFIG`. Loaded by path, so nothing is added to `sys.path`."""
    import importlib.util
    import sys

    module_name = f"recipes_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, REPO_ROOT / "recipes" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses look the module up while the recipe's classes are built
        spec.loader.exec_module(module)
    return sys.modules[module_name]


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
