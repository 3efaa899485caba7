"""ranked_loss='plackett_luce' in RewardTrainer and DPOTrainer: the listwise loss of the model's scores, equal to
Bradley-Terry / DPO-sigmoid on K=2 groups; ranking metrics (NDCG included) for both trainers."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from trl_ext import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer, plackett_luce_loss

RANKED = [{"prompt": "2+2=", "completions": [" 4", " 5", " 22", " four"], "ranks": [0, 2, 3, 1]},
          {"prompt": "3+1=", "completions": [" 4", " 31", " 5"], "ranks": [0, 1, 1]}]  # a tie
K2 = [{"prompt": "2+2=", "completions": [" 4", " 5"], "ranks": [0, 1]},
      {"prompt": "3+1=", "completions": [" 31", " 4"], "ranks": [1, 0]}]


def _common(out, **kw):
    return dict(output_dir=str(out), bf16=False, report_to=[], per_device_train_batch_size=8, max_steps=1,
                activation_checkpointing=False, **kw)


def _batch_loss(trainer):
    trainer.model.train()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    return batch, trainer.compute_loss(trainer.model, dict(batch))


def test_reward_plackett_luce_is_the_listwise_loss_of_the_rewards(tiny_llama_seqcls_dir, tmp_path):
    trainer = RewardTrainer(tiny_llama_seqcls_dir, train_dataset=Dataset.from_list(RANKED),
                            args=RewardConfig(**_common(tmp_path, ranked_loss="plackett_luce", ranked_loss_top_k=2)))
    batch, loss = _batch_loss(trainer)
    with torch.no_grad():
        rewards = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]
    expected = plackett_luce_loss(rewards, batch["ranks"], batch["completion_group"], top_k=2)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    trainer.log({})  # ranking metrics are computed once per logging step, from the rewards kept since the last log
    assert {"rm/ndcg", "rm/ndcg@3", "rm/kendall_tau"} <= trainer.state.log_history[-1].keys()


@pytest.mark.parametrize("trainer_cls,config_cls,fixture", [
    (RewardTrainer, RewardConfig, "tiny_llama_seqcls_dir"), (DPOTrainer, DPOConfig, "tiny_llama_causal_dir")])
def test_k2_plackett_luce_equals_the_pairwise_loss(trainer_cls, config_cls, fixture, request, tmp_path):
    model = request.getfixturevalue(fixture)
    losses = {}
    for loss in ("bradley_terry", "plackett_luce"):
        torch.manual_seed(0)
        trainer = trainer_cls(model, train_dataset=Dataset.from_list(K2),
                              args=config_cls(**_common(tmp_path / loss, ranked_loss=loss)))
        with torch.no_grad():  # move the policy away from the reference so DPO's log-ratios are non-zero
            for p in trainer.model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        losses[loss] = _batch_loss(trainer)[1].item()
    assert losses["plackett_luce"] == pytest.approx(losses["bradley_terry"], rel=1e-6)


def test_dpo_plackett_luce_uses_the_implicit_reward_and_logs_ranking_metrics(tiny_llama_causal_dir, tmp_path):
    trainer = DPOTrainer(tiny_llama_causal_dir, train_dataset=Dataset.from_list(RANKED),
                         eval_dataset=Dataset.from_list(RANKED),
                         args=DPOConfig(**_common(tmp_path, ranked_loss="plackett_luce", beta=0.5)))
    assert trainer.ref_model is not None
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch, loss = _batch_loss(trainer)

    def logps(model):
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        logp = torch.log_softmax(logits.double(), -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
        return (logp * batch["completion_mask"][:, 1:]).sum(1)

    scores = 0.5 * (logps(trainer.model) - logps(trainer.ref_model))
    expected = plackett_luce_loss(scores, batch["ranks"].double(), batch["completion_group"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    metrics = trainer.evaluate()
    assert {"eval_rm/ndcg", "eval_rm/kendall_tau", "eval_rm/top1_accuracy", "eval_rewards/accuracies"} <= metrics.keys()


def test_plackett_luce_options_are_checked(tiny_llama_causal_dir, tmp_path):
    with pytest.raises(ValueError, match="needs ranked_training='grouped'"):
        DPOConfig(**_common(tmp_path, ranked_loss="plackett_luce", ranked_training="pairwise"))
    with pytest.raises(ValueError, match="ranked_loss_top_k applies to ranked_loss='plackett_luce' only"):
        RewardConfig(**_common(tmp_path, ranked_loss_top_k=2))
    with pytest.raises(ValueError, match=r"ranked_loss is not one of|ranked_loss='listnet' is not one of"):
        RewardConfig(**_common(tmp_path, ranked_loss="listnet"))
    with pytest.raises(ValueError, match=r"loss_type=\['hinge'\] with ranked_loss='plackett_luce'"):
        DPOTrainer(tiny_llama_causal_dir, train_dataset=Dataset.from_list(RANKED),
                   args=DPOConfig(**_common(tmp_path, ranked_loss="plackett_luce", loss_type=["hinge"])))
