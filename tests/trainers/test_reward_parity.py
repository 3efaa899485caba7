"""RewardTrainer against `trl.RewardTrainer`: plain pairs are TRL's path untouched; K=2 ranked groups give TRL's loss,
metrics and gradients on the same pairs, over-long inputs included (left out in both); grouped equals weighted
pairwise with truncation too."""

from __future__ import annotations

import pytest
import torch
import trl
from datasets import Dataset
from transformers import AutoModelForSequenceClassification

from trl_ext import RewardConfig, RewardTrainer, ranked_to_pairs
from trl_ext import _trl_compat as compat

LONG = " and so on" * 12  # pushes a completion past max_length=48
GROUPS = [
    {"prompt": "2+2=", "completions": [" 4", " 5"], "ranks": [0, 1]},
    {"prompt": "3+1=", "completions": [" 31" + LONG, " 4"], "ranks": [1, 0]},  # too long: TRL drops the pair
    {"prompt": "1+1=", "completions": [" 2, sure", " 3"], "ranks": [0, 1]},
]


def _model(path):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float64)


def _args(cls, out, **kw):
    return cls(output_dir=str(out), bf16=False, report_to=[], per_device_train_batch_size=8, max_length=48,
               activation_checkpointing=False, center_rewards_coefficient=0.01, **kw)


def _run(trainer):
    trainer.model.train()  # metrics go to the "train" buffer (no dropout in the tiny models)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.item(), {k: v[-1] for k, v in compat.metrics(trainer, "train").items()}, grads


def _close(ours, theirs):
    (loss_o, metrics_o, grads_o), (loss_t, metrics_t, grads_t) = ours, theirs
    assert loss_o == pytest.approx(loss_t, rel=1e-9)
    assert {"accuracy", "margin", "mean_reward", "num_tokens"} <= metrics_t.keys() <= metrics_o.keys()
    assert all(name.startswith("rm/") for name in metrics_o.keys() - metrics_t.keys())  # ranking metrics on top
    for name, value in metrics_t.items():
        assert metrics_o[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert grads_o.keys() == grads_t.keys() and grads_o
    for name, grad in grads_t.items():
        torch.testing.assert_close(grads_o[name], grad, rtol=1e-6, atol=1e-7)  # padding differs: float rounding


def test_k2_groups_with_an_overlong_pair_give_trls_loss_metrics_and_gradients(tiny_llama_seqcls_dir, tmp_path):
    pairs = ranked_to_pairs(Dataset.from_list(GROUPS))[0].select_columns(["prompt", "chosen", "rejected"])
    theirs = trl.RewardTrainer(_model(tiny_llama_seqcls_dir), args=_args(trl.RewardConfig, tmp_path / "t"),
                               train_dataset=pairs)
    ours = RewardTrainer(_model(tiny_llama_seqcls_dir), args=_args(RewardConfig, tmp_path / "o"),
                         train_dataset=Dataset.from_list(GROUPS))
    assert len(theirs.train_dataset) == len(ours.train_dataset) == 2  # the over-long pair is left out by both
    assert ours.ranking_stats["train"]["dropped_too_long_completions"] == 1
    _close(_run(ours), _run(theirs))


def test_plain_pairs_are_trls_path_unchanged(tiny_llama_seqcls_dir, tmp_path):
    pairs = Dataset.from_list([{"prompt": "2+2=", "chosen": " 4", "rejected": " 5", "margin": 0.5},
                               {"prompt": "3+3=", "chosen": " 6", "rejected": " 6", "margin": 0.0},  # a tie
                               {"prompt": "1+1=", "chosen": " 2" + LONG, "rejected": " 3", "margin": 1.0}])
    theirs = trl.RewardTrainer(_model(tiny_llama_seqcls_dir), args=_args(trl.RewardConfig, tmp_path / "t"),
                               train_dataset=pairs)
    ours = RewardTrainer(_model(tiny_llama_seqcls_dir), args=_args(RewardConfig, tmp_path / "o"), train_dataset=pairs)
    _close(_run(ours), _run(theirs))


def test_grouped_equals_weighted_pairwise_with_overlong_completions(tiny_llama_seqcls_dir, tmp_path):
    groups = [{"prompt": "2+2=", "completions": [" 4", " 5" + LONG, " 22", " four"], "ranks": [0, 2, 3, 1]},
              {"prompt": "3+1=", "completions": [" 4", " 31"], "ranks": [0, 1]}]
    results = {}
    for mode in ("grouped", "pairwise"):
        trainer = RewardTrainer(_model(tiny_llama_seqcls_dir), args=_args(RewardConfig, tmp_path / mode,
                                                                         ranked_training=mode),
                                train_dataset=Dataset.from_list(groups))
        results[mode] = _run(trainer)
    (loss_g, metrics_g, grads_g), (loss_p, metrics_p, grads_p) = results["grouped"], results["pairwise"]
    assert loss_g == pytest.approx(loss_p, rel=1e-9)
    for name in ("accuracy", "margin"):
        assert metrics_g[name] == pytest.approx(metrics_p[name], rel=1e-9)
    for name, grad in grads_p.items():
        torch.testing.assert_close(grads_g[name], grad, rtol=1e-6, atol=1e-7)


def test_legacy_tokenized_columns_take_trls_path(tiny_llama_seqcls_dir, tmp_path):
    """TRL accepts `chosen_input_ids`/`rejected_input_ids` with a FutureWarning and renames them; so do we."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_seqcls_dir)
    data = Dataset.from_dict({"chosen_input_ids": [tok("2+2= 4").input_ids] * 2,
                              "rejected_input_ids": [tok("2+2= 5").input_ids] * 2})
    with pytest.warns(FutureWarning, match="chosen_ids"):
        trainer = RewardTrainer(_model(tiny_llama_seqcls_dir), args=_args(RewardConfig, tmp_path), train_dataset=data)
    assert {"chosen_ids", "rejected_ids"} <= set(trainer.train_dataset.column_names)
