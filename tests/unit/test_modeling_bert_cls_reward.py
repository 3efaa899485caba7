import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import trl_ext  # noqa: F401  (registers the Auto classes)
from trl_ext.modeling_bert_cls_reward import BertClsRewardModel, encode_prompt_response, render_messages


@pytest.fixture(scope="module")
def tok(tiny_bert_dir):
    return AutoTokenizer.from_pretrained(tiny_bert_dir)


def test_logits_shape_and_cls_token(tiny_bert_dir, tok):
    model = BertClsRewardModel.from_encoder(tiny_bert_dir)
    batch = tok(["what is 2+2?", "hi"], ["four", "hello there"], padding=True, return_tensors="pt")
    out = model(**batch)
    assert out.logits.shape == (2, 1)
    assert (batch["input_ids"][:, 0] == tok.cls_token_id).all()
    assert model.config.num_labels == 1


def test_pair_encoding_token_type_ids(tok):
    enc = encode_prompt_response(tok, "what is the capital of france", "paris", max_length=64)
    assert enc.input_ids[0] == tok.cls_token_id and enc.input_ids[-1] == tok.sep_token_id
    sep = enc.input_ids.index(tok.sep_token_id)
    assert enc.token_type_ids[: sep + 1] == [0] * (sep + 1)  # [CLS] prompt [SEP]
    assert enc.token_type_ids[sep + 1 :] == [1] * (len(enc.input_ids) - sep - 1)  # response [SEP]
    assert tok.decode(enc.input_ids[sep + 1 : -1]) == "paris"
    assert not enc.response_truncated and enc.prompt_tokens_dropped == 0


def test_truncation_drops_prompt_start_and_keeps_response(tok):
    prompt = " ".join(f"word{i}" for i in range(200))
    response = "the answer is forty two"
    enc = encode_prompt_response(tok, prompt, response, max_length=32)
    assert len(enc.input_ids) == 32
    sep = enc.input_ids.index(tok.sep_token_id)
    assert tok.decode(enc.input_ids[sep + 1 : -1]) == response  # response intact
    kept_prompt = tok.decode(enc.input_ids[1:sep])
    assert "word199" in kept_prompt and "word0 " not in kept_prompt  # the prompt lost its *start*
    assert enc.prompt_tokens_dropped > 0 and not enc.response_truncated


def test_only_an_overlong_response_is_cut_and_reported(tok):
    response = " ".join(["token"] * 100)
    enc = encode_prompt_response(tok, "short prompt", response, max_length=20)
    assert len(enc.input_ids) == 20 and enc.response_truncated
    assert enc.token_type_ids.count(0) == 2  # [CLS] [SEP]: the prompt is gone entirely
    with pytest.raises(ValueError, match="max_length=2"):
        encode_prompt_response(tok, "a", "b", max_length=2)


def test_frozen_encoder_gets_no_gradient(tiny_bert_dir, tok):
    model = BertClsRewardModel.from_encoder(tiny_bert_dir, freeze_encoder=True).train()
    batch = tok(["a question"], ["an answer"], return_tensors="pt")
    model(**batch).logits.sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.score.weight.grad is not None and model.score.weight.grad.abs().sum() > 0
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"score.weight", "score.bias"}


def test_unfrozen_encoder_gets_gradient(tiny_bert_dir, tok):
    model = BertClsRewardModel.from_encoder(tiny_bert_dir).train()
    batch = tok(["a question"], ["an answer"], return_tensors="pt")
    model(**batch).logits.sum().backward()
    assert model.encoder.embeddings.word_embeddings.weight.grad is not None


def test_token_type_ids_change_the_reward(tiny_bert_dir, tok):
    model = BertClsRewardModel.from_encoder(tiny_bert_dir)
    batch = tok(["a question"], ["an answer"], return_tensors="pt")
    with_types = model(**batch).logits
    zeros = dict(batch, token_type_ids=torch.zeros_like(batch["token_type_ids"]))
    assert not torch.allclose(with_types, model(**zeros).logits)


def test_save_and_auto_reload_round_trip(tiny_bert_dir, tok, tmp_path):
    model = BertClsRewardModel.from_encoder(tiny_bert_dir, freeze_encoder=True)
    torch.nn.init.normal_(model.score.weight)  # make the head non-trivial
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert isinstance(reloaded, BertClsRewardModel) and reloaded.config.freeze_encoder
    batch = tok(["q one", "q two longer"], ["r", "r two"], padding=True, return_tensors="pt")
    saved, loaded = model.state_dict(), reloaded.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    # Same weights; outputs agree to float32 rounding (GEMM kernels may pick another path for a new allocation).
    torch.testing.assert_close(model.eval()(**batch).logits, reloaded.eval()(**batch).logits, rtol=1e-6, atol=1e-6)


def test_from_encoder_rejects_decoders(tiny_llama_seqcls_dir):
    with pytest.raises(ValueError, match="not a BERT-family encoder"):
        BertClsRewardModel.from_encoder(tiny_llama_seqcls_dir)


def test_render_messages_without_chat_template(tok):
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert render_messages(msgs, tok) == "user: hi\nassistant: hello"
    assert render_messages("plain", tok) == "plain"


def test_saved_config_says_what_to_import(tiny_bert_dir, tmp_path):
    import json

    BertClsRewardModel.from_encoder(tiny_bert_dir).save_pretrained(tmp_path)
    hint = json.loads((tmp_path / "config.json").read_text())["loading_hint"]
    assert "pip install trl-ext" in hint and "`import trl_ext`" in hint and "trust_remote_code=True" in hint
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"] == {
        "AutoConfig": "trl_ext_bert_cls_reward.BertClsRewardConfig",
        "AutoModelForSequenceClassification": "trl_ext_bert_cls_reward.BertClsRewardModel"}


def test_max_input_tokens_follows_the_position_embeddings():
    from transformers import BertConfig, DebertaV2Config, RobertaConfig

    from trl_ext.modeling_bert_cls_reward import BertClsRewardConfig, max_input_tokens

    assert max_input_tokens(BertConfig(max_position_embeddings=128)) == 128
    assert max_input_tokens(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert max_input_tokens(DebertaV2Config(position_biased_input=False)) is None
    assert max_input_tokens(BertClsRewardConfig(encoder_config=BertConfig(max_position_embeddings=64))) == 64


def test_mean_pooling_reads_every_token_and_is_saved(tiny_bert_dir, tok, tmp_path):
    torch.manual_seed(0)
    model = BertClsRewardModel.from_encoder(tiny_bert_dir, pooling="mean").eval()
    enc = tok(["a short one", "a much longer sentence here"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model.encoder(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        expected = model.score((hidden * mask).sum(1) / mask.sum(1))
        torch.testing.assert_close(model(**enc).logits, expected)
        # padding does not change a row's reward
        alone = model(**tok(["a short one"], return_tensors="pt")).logits
        torch.testing.assert_close(alone[0], expected[0], atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path)
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path).config.pooling == "mean"
    with pytest.raises(ValueError, match="pooling='max' is not one of"):
        BertClsRewardModel.from_encoder(tiny_bert_dir, pooling="max")
