"""Bad preference data in RewardTrainer and DPOTrainer: a clear error naming the row, field and value, or a counted
skip that is printed; never a NaN or a silently reversed or dropped weight."""

from __future__ import annotations

import logging

import pytest
import torch
from datasets import Dataset

from trl_ext import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

PAIRS = [{"prompt": "2+2=", "chosen": " 4", "rejected": " 5"}, {"prompt": "3+3=", "chosen": " 6", "rejected": " 7"},
         {"prompt": "1+1=", "chosen": " 2", "rejected": " 3"}]
RANKED = [{"prompt": "2+2=", "completions": [" 4", " 5", " 22"], "ranks": [0, 1, 2]},
          {"prompt": "3+1=", "completions": [" 4", " 31"], "ranks": [0, 1]}]


def _common(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), bf16=False, report_to=[], per_device_train_batch_size=8, max_steps=1,
                logging_steps=1, save_strategy="no", activation_checkpointing=False, learning_rate=1e-2)
    base.update(kw)
    return base


def _reward(tmp_path, data, model, **kw):
    return RewardTrainer(model, args=RewardConfig(**_common(tmp_path, **kw)), train_dataset=Dataset.from_list(data))


def _dpo(tmp_path, data, model, **kw):
    return DPOTrainer(model, args=DPOConfig(**_common(tmp_path, beta=0.5, **kw)), train_dataset=Dataset.from_list(data))


TRAINERS = {"reward": ("tiny_bert_dir", _reward), "dpo": ("tiny_llama_causal_dir", _dpo)}


@pytest.fixture(params=list(TRAINERS))
def make(request):
    fixture, build = TRAINERS[request.param]
    model = request.getfixturevalue(fixture)
    return lambda tmp_path, data, **kw: build(tmp_path, data, model, **kw)


def _weighted(weights):
    return [dict(row, weight=w) for row, w in zip(PAIRS, weights)]


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), None])
def test_a_bad_pair_weight_is_refused_with_its_row(make, tmp_path, bad):
    with pytest.raises(ValueError, match=r"row 1, field 'weight': weight is .*finite numbers >= 0"):
        make(tmp_path, _weighted([1.0, bad, 2.0]))


def test_a_bad_pair_weight_is_skipped_and_counted(make, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        trainer = make(tmp_path, _weighted([1.0, -1.0, 2.0]), on_invalid_rows="skip")
    assert len(trainer.train_dataset) == 2 and trainer.ranking_stats["train"]["invalid_weight"] == 1
    assert "skipped 1 pairs with an invalid weight" in caplog.text


def test_a_batch_of_zero_weights_changes_nothing_and_never_turns_nan(make, tmp_path):
    trainer = make(tmp_path, _weighted([0.0, 0.0, 0.0]))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    for name, param in trainer.model.named_parameters():
        assert torch.isfinite(param).all(), name
        assert torch.equal(param, before[name]), name
    assert all(row["loss"] == 0.0 for row in trainer.state.log_history if "loss" in row)


def test_a_zero_weight_group_in_grouped_mode_contributes_nothing(make, tmp_path):
    both = make(tmp_path / "both", [dict(RANKED[0], weight=1.0), dict(RANKED[1], weight=0.0)])
    first = make(tmp_path / "first", [dict(RANKED[0], weight=1.0)])
    for trainer in (both, first):
        trainer.model.eval()
    first.model.load_state_dict(both.model.state_dict())
    batch = both.data_collator([both.train_dataset[i] for i in range(2)])
    assert batch["group_weight"].tolist() == [1.0, 0.0]
    with torch.no_grad():
        loss_both = both.compute_loss(both.model, dict(batch)).item()
        single = first.data_collator([first.train_dataset[0]])
        loss_first = first.compute_loss(first.model, dict(single)).item()
    assert loss_both == pytest.approx(loss_first, abs=1e-6)


def test_margin_on_ranked_data_is_refused(make, tmp_path):
    with pytest.raises(ValueError, match="'margin' is not supported on ranked data"):
        make(tmp_path, [dict(row, margin=1.0) for row in RANKED])


@pytest.mark.parametrize("mode", ["grouped", "pairwise"])
def test_no_trainable_group_is_a_clear_error(make, tmp_path, mode):
    rows = [{"prompt": "p", "completions": [" a"], "ranks": [0]},
            {"prompt": "q", "completions": [" b", " c"], "ranks": [1, 1]}]
    with pytest.raises(ValueError, match="train dataset has no trainable ranked group: .*K<2.*all-tied"):
        make(tmp_path, rows, ranked_training=mode)


def test_a_misspelled_ranks_column_names_the_columns(make, tmp_path):
    with pytest.raises(ValueError, match=r"missing required column\(s\) \[\"'ranks' or 'scores'\"\]; found columns: "
                                         r"\['prompt', 'completions', 'rank'\]"):
        make(tmp_path, [{"prompt": "p", "completions": [" a", " b"], "rank": [0, 1]}])
    with pytest.raises(ValueError, match=r"neither pairwise columns .* found columns: \['prompt', 'answer'\]"):
        make(tmp_path, [{"prompt": "p", "answer": " a"}])


def test_skips_are_printed_once_per_dataset(make, tmp_path, caplog):
    rows = RANKED + [{"prompt": "p", "completions": [" a"], "ranks": [0]},
                     {"prompt": "q", "completions": [" b", " c"], "ranks": [0, -1]}]
    with caplog.at_level(logging.WARNING):
        trainer = make(tmp_path, rows, on_invalid_rows="skip")
    lines = [r.getMessage() for r in caplog.records if "ranked groups kept" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("train dataset: 2 ranked groups kept; 1 invalid rows, 1 groups with K<2")
    assert "first invalid: row 3, field 'ranks'" in lines[0]
    assert trainer.ranking_stats["train"]["invalid"] == 1


def test_grouped_dpo_leaves_out_pairs_identical_after_truncation(tmp_path, tiny_llama_causal_dir, caplog):
    # " 4 is it" and " 4 is not" share their first 5 characters: cut at max_length they are the same tokens.
    rows = [{"prompt": "2+2=", "completions": [" 4 is it", " 4 is not", " 5"], "ranks": [0, 1, 2]},
            {"prompt": "1+1=", "completions": [" 2 ok!", " 2 ok?"], "ranks": [0, 1]}]
    with caplog.at_level(logging.WARNING):
        trainer = _dpo(tmp_path, rows, tiny_llama_causal_dir, max_length=9)
    stats = trainer.ranking_stats["train"]
    assert stats["identical_pairs_after_truncation"] == 1  # (" 4 is it", " 4 is not")
    assert stats["skipped_identical_after_truncation"] == 1  # the second group has no pair left
    assert "pairs left out as identical after truncation" in caplog.text
    batch = trainer.data_collator([trainer.train_dataset[0]])
    assert batch["pair_index"].tolist() == [[0, 2], [1, 2]]
    assert batch["pair_weight"].tolist() == [0.5, 0.5]
