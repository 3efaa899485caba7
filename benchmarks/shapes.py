# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Model shapes for the harness: public architecture configs, built with random weights (no hub is reachable).

Each shape copies the published architecture hyper-parameters of a real checkpoint (hidden size, layers, heads, vocab,
...), so parameter counts, FLOPs and memory match it; the weights are random, which changes nothing about speed or
memory. Tokenizers are local character-level ones (`benchmarks.common`): one token per character, so sequence lengths are
exact. Models are saved once per shape to a cache folder (TRL and 4-bit loading read them back by path).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import build_char_tokenizer, build_wordpiece_tokenizer

# name -> (kind, config kwargs). Decoder shapes are LlamaConfig/Qwen2Config kwargs; encoder shapes BertConfig kwargs.
SHAPES: dict[str, dict[str, Any]] = {
    # published architecture hyper-parameters of the named checkpoints
    "qwen2.5-0.5b": {"arch": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                     "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
                     "tie_word_embeddings": True, "rope_theta": 1_000_000.0, "max_position_embeddings": 32768},
    "qwen2.5-1.5b": {"arch": "qwen2", "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                     "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
                     "tie_word_embeddings": True, "rope_theta": 1_000_000.0, "max_position_embeddings": 32768},
    "llama-3.2-1b": {"arch": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256,
                     "tie_word_embeddings": True, "rope_theta": 500_000.0, "max_position_embeddings": 131072},
    "llama-3.2-3b": {"arch": "llama", "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
                     "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256,
                     "tie_word_embeddings": True, "rope_theta": 500_000.0, "max_position_embeddings": 131072},
    # Llama-3.2-1B with hidden size, intermediate size and vocabulary divided by 4 (16 layers kept): with 4x fewer
    # tokens, weights, activations and logits all shrink 16x, so their shares of a step's memory are the 1B shape's.
    "llama-3.2-1b-quarter": {"arch": "llama", "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 16,
                             "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 32064,
                             "tie_word_embeddings": True, "rope_theta": 500_000.0, "max_position_embeddings": 131072},
    "smollm2-135m": {"arch": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                     "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
                     "tie_word_embeddings": True, "rope_theta": 100_000.0, "max_position_embeddings": 8192},
    "bert-base": {"arch": "bert", "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                  "num_attention_heads": 12, "vocab_size": 30522, "max_position_embeddings": 512},
    "minilm-l6": {"arch": "bert", "hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6,
                  "num_attention_heads": 12, "vocab_size": 30522, "max_position_embeddings": 512},
    # tiny shapes for the CPU smoke size
    "tiny-llama": {"arch": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 128,
                   "tie_word_embeddings": False, "max_position_embeddings": 512},
    "tiny-bert": {"arch": "bert", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                  "num_attention_heads": 2, "vocab_size": 200, "max_position_embeddings": 512},
}

# Which public checkpoint each shape copies (reported with the results).
SHAPE_SOURCES = {
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B config", "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B config",
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B config", "llama-3.2-3b": "meta-llama/Llama-3.2-3B config",
    "llama-3.2-1b-quarter": "meta-llama/Llama-3.2-1B config, hidden/intermediate/vocabulary divided by 4",
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M config",
    "bert-base": "google-bert/bert-base-uncased config", "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2 config",
    "tiny-llama": "tiny Llama (harness smoke shape)", "tiny-bert": "tiny BERT (harness smoke shape)",
}


@dataclass(frozen=True)
class BuiltModel:
    path: str
    shape: str
    head: str  # "causal_lm" | "seq_cls" | "bert_cls_reward"
    n_params: int


def _config(shape: str, head: str, tokenizer) -> Any:
    from transformers import BertConfig, LlamaConfig, Qwen2Config

    spec = dict(SHAPES[shape])
    arch = spec.pop("arch")
    if arch == "bert":
        return BertConfig(**spec, pad_token_id=tokenizer.pad_token_id)
    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch]
    extra = {"num_labels": 1} if head == "seq_cls" else {}
    return cls(**spec, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
               bos_token_id=tokenizer.bos_token_id, **extra)


def cache_root() -> Path:
    return Path(os.environ.get("TRL_EXT_BENCH_CACHE", Path.home() / ".cache" / "trl_ext" / "bench_models"))


def build_model(shape: str, head: str, dtype: torch.dtype = torch.float32, seed: int = 0) -> BuiltModel:
    """Save a random-weight model of `shape` with `head` (and its tokenizer) once; return where it lives."""
    if shape not in SHAPES:
        raise ValueError(f"Unknown shape {shape!r}; known: {sorted(SHAPES)}")
    if head not in ("causal_lm", "seq_cls", "bert_cls_reward"):
        raise ValueError(f"Unknown head {head!r}")
    key = hashlib.sha1(json.dumps([shape, head, str(dtype), seed, SHAPES[shape]]).encode()).hexdigest()[:10]
    path = cache_root() / f"{shape}-{head}-{str(dtype).split('.')[-1]}-{key}"
    marker = path / "harness_model.json"
    if marker.exists():
        return BuiltModel(**json.loads(marker.read_text()))
    path.mkdir(parents=True, exist_ok=True)
    is_bert = SHAPES[shape]["arch"] == "bert"
    tokenizer = build_wordpiece_tokenizer(path) if is_bert else build_char_tokenizer()
    config = _config(shape, head, tokenizer)
    torch.manual_seed(seed)
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    # Random initialisation on the GPU when there is one: a 3B model initialises in seconds there, minutes on a CPU.
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        if head == "bert_cls_reward":
            from trl_ext import BertClsRewardConfig, BertClsRewardModel

            model = BertClsRewardModel(BertClsRewardConfig(encoder_config=config))
        elif head == "seq_cls":
            model = AutoModelForSequenceClassification.from_config(config)
        else:
            model = AutoModelForCausalLM.from_config(config)
    model.to(dtype)
    from .measure import parameter_count

    n_params = parameter_count(model)
    model.save_pretrained(path)
    del model
    if torch.cuda.is_available():
        # Building is not part of what the harness measures (a variant's model load + training): the first variant
        # of a scenario builds the model inside its measurement, so the build's GPU memory is released and the peak
        # counter restarted here.
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    if not is_bert:
        tokenizer.save_pretrained(path)
    built = BuiltModel(path=str(path), shape=shape, head=head, n_params=n_params)
    marker.write_text(json.dumps(built.__dict__))
    return built
