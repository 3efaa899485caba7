"""TextRewardModel: an RM with its own tokenizer as a text-level reward function."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trl_ext import BertClsRewardModel
from trl_ext.rewards import RunningMoments, TextRewardModel


@pytest.fixture(scope="module")
def bert_rm(tiny_bert_dir):
    torch.manual_seed(0)
    model = BertClsRewardModel.from_encoder(tiny_bert_dir)
    return TextRewardModel(model, AutoTokenizer.from_pretrained(tiny_bert_dir), max_length=24, device="cpu",
                           name="bert_rm")


def test_encoder_pair_encoding_has_cls_and_segments(bert_rm):
    tok = bert_rm.tokenizer
    (row,) = bert_rm.encode(["how are you"], ["fine thanks"])
    assert row["input_ids"][0] == tok.cls_token_id
    assert row["input_ids"].count(tok.sep_token_id) == 2
    first_sep = row["input_ids"].index(tok.sep_token_id)
    assert set(row["token_type_ids"][: first_sep + 1]) == {0}
    assert set(row["token_type_ids"][first_sep + 1:]) == {1}
    assert tok.decode(row["input_ids"], skip_special_tokens=True) == "how are you fine thanks"


def test_truncation_keeps_the_response(bert_rm):
    prompt = " ".join(["word"] * 40)
    (row,) = bert_rm.encode([prompt], ["the answer is seven"])
    assert len(row["input_ids"]) == 24
    text = bert_rm.tokenizer.decode(row["input_ids"], skip_special_tokens=True)
    assert text.endswith("the answer is seven")
    assert bert_rm.num_prompt_truncated >= 1


def test_scores_match_a_direct_forward_and_batching(bert_rm):
    prompts = ["what is two plus two", "name a colour", "hi"]
    completions = ["four", "blue", "hello there friend"]
    batched = TextRewardModel(bert_rm.model, bert_rm.tokenizer, max_length=24, batch_size=2, device="cpu")
    scores = batched(prompts, completions)
    for prompt, completion, score in zip(prompts, completions, scores):
        enc = bert_rm.tokenizer(prompt, completion, return_tensors="pt")
        with torch.no_grad():
            expected = bert_rm.model(**enc).logits[0, 0].item()
        assert score == pytest.approx(expected, abs=1e-5)
    assert bert_rm.__name__ == "bert_rm" and batched.__name__ == "reward_model"
    assert not bert_rm.model.training


def test_conversational_input_is_rendered_for_an_encoder(bert_rm):
    prompt = [{"role": "user", "content": "name a colour"}]
    completion = [{"role": "assistant", "content": "blue"}]
    conv = bert_rm([prompt], [completion])
    text = bert_rm(["user: name a colour"], ["assistant: blue"])
    assert conv == pytest.approx(text)


def test_decoder_rm_uses_its_chat_template_and_truncates_left(tiny_llama_seqcls_dir):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_llama_seqcls_dir)
    tok = AutoTokenizer.from_pretrained(tiny_llama_seqcls_dir)
    rm = TextRewardModel(model, tok, max_length=30, device="cpu")
    prompt = [{"role": "user", "content": "x" * 60}]
    completion = [{"role": "assistant", "content": "answer 42"}]
    (row,) = rm.encode([prompt], [completion])
    assert len(row["input_ids"]) == 30
    assert tok.decode(row["input_ids"]).endswith("assistant: answer 42<eos>")
    assert rm.num_prompt_truncated == 1
    scores = rm([prompt, "short prompt "], [completion, "ok"])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)


def test_dtype_casts_the_reward_model(tiny_bert_dir):
    model = BertClsRewardModel.from_encoder(tiny_bert_dir)
    rm = TextRewardModel(model, AutoTokenizer.from_pretrained(tiny_bert_dir), dtype=torch.bfloat16, device="cpu")
    assert next(rm.model.parameters()).dtype == torch.bfloat16
    (score,) = rm(["hi"], ["there"])
    assert isinstance(score, float)


def test_whitening_uses_running_statistics(bert_rm):
    rm = TextRewardModel(bert_rm.model, bert_rm.tokenizer, max_length=24, device="cpu", whiten=True)
    prompts, completions = ["a", "b", "c", "d"], ["one", "two two", "three", "four four four"]
    raw = rm.score(prompts, completions)
    white = rm(prompts, completions)
    mean, std = statistics.mean(raw), statistics.stdev(raw)
    assert white == pytest.approx([(r - mean) / (std + 1e-8) for r in raw], abs=1e-4)


def test_running_moments_match_two_pass_statistics():
    values = [0.5, -1.0, 2.0, 3.5, 0.0, 7.25, -2.5]
    moments = RunningMoments()
    moments.update(values[:3])
    moments.update(values[3:])
    moments.update([float("nan")])  # ignored
    assert moments.count == 7
    assert moments.mean == pytest.approx(statistics.mean(values))
    assert moments.std == pytest.approx(statistics.stdev(values))
    restored = RunningMoments()
    restored.load_state_dict(moments.state_dict())
    assert restored.std == pytest.approx(moments.std)


def test_bad_inputs_are_rejected(bert_rm):
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        bert_rm(["a", "b"], ["c"])
    with pytest.raises(TypeError, match="completion 0 is a int"):
        bert_rm(["a"], [3])
    with pytest.raises(ValueError, match="batch_size"):
        TextRewardModel(bert_rm.model, bert_rm.tokenizer, batch_size=0, device="cpu")
    with pytest.raises(ValueError, match="max_length must be >= 4 tokens, got 2"):
        TextRewardModel(bert_rm.model, bert_rm.tokenizer, max_length=2, device="cpu")
    with pytest.raises(TypeError, match="sequence-classification model or a path"):
        TextRewardModel(42, bert_rm.tokenizer)


def test_a_plain_encoder_or_lm_without_a_trained_head_is_refused(tiny_bert_dir, tiny_llama_causal_dir):
    for path in (tiny_bert_dir, tiny_llama_causal_dir):
        with pytest.raises(ValueError, match="has no trained reward head .*plain encoder or language model"):
            TextRewardModel(path, device="cpu")


def test_reward_model_dirs_with_their_head_load(tiny_rm_dir, tiny_llama_seqcls_dir):
    assert TextRewardModel(tiny_rm_dir, device="cpu").is_encoder
    assert not TextRewardModel(tiny_llama_seqcls_dir, device="cpu").is_encoder


def test_inputs_never_exceed_the_encoder_positions(tiny_bert_dir, tmp_path):
    # a tokenizer that knows no length limit, on a 128-position BERT: was a size-mismatch error deep in BERT
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    tok.model_max_length = int(1e30)
    model = BertClsRewardModel.from_encoder(tiny_bert_dir)
    rm = TextRewardModel(model, tok, device="cpu")
    assert rm.max_length == 128
    scores = rm(["word " * 400], ["a reply"])
    assert len(scores) == 1 and rm.num_prompt_truncated == 1
    with pytest.warns(UserWarning, match="max_length=1000 exceeds the encoder's 128 positions"):
        assert TextRewardModel(model, tok, max_length=1000, device="cpu").max_length == 128


def test_inputs_never_exceed_a_decoder_rms_positions():
    # a GPT-2 reward model has a learned position table (n_positions): a longer input was an IndexError in it
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from tests.helpers import build_char_tokenizer

    torch.manual_seed(0)
    tok = build_char_tokenizer()
    tok.chat_template = None
    assert tok.model_max_length > 10**6  # knows no limit: the default budget would be 512 tokens
    config = GPT2Config(vocab_size=len(tok), n_positions=40, n_embd=16, n_layer=1, n_head=2, num_labels=1,
                        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                        bos_token_id=tok.bos_token_id)
    model = GPT2ForSequenceClassification(config)
    rm = TextRewardModel(model, tok, device="cpu")
    assert rm.max_length == 40
    scores = rm(["x" * 300], [" the answer"])
    assert len(scores) == 1 and math.isfinite(scores[0]) and rm.num_prompt_truncated == 1
    with pytest.warns(UserWarning, match="max_length=100 exceeds the reward model's 40 positions"):
        assert TextRewardModel(model, tok, max_length=100, device="cpu").max_length == 40
