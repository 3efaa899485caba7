"""DPOTrainer: grouped ranked DPO equals weighted pairwise DPO; drop-in for TRL; weights; bad input."""

import pytest
import torch
import trl
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM

from trl_ext import DPOConfig, DPOTrainer
from trl_ext.losses import dpo_pair_losses

RANKED = [
    {"prompt": "2+2=", "completions": [" 4", " 5", " 22", " four"], "ranks": [0, 2, 3, 1]},
    {"prompt": "3+1=", "completions": [" 4", " 31"], "ranks": [0, 1]},
    {"prompt": "1+1=", "completions": [" 2", " two", " 3"], "ranks": [0, 0, 1]},  # one tie
]


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), bf16=False, report_to=[], per_device_train_batch_size=16,
                per_device_eval_batch_size=16, max_steps=1, logging_steps=1, save_strategy="no",
                activation_checkpointing=False, beta=0.5)
    base.update(kw)
    return DPOConfig(**base)


def _loss_and_grads(trainer):
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    rows = batch["input_ids"].shape[0]
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.item(), grads, rows


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
def test_grouped_dpo_equals_weighted_pairwise_dpo_with_lora(tmp_path, tiny_llama_causal_dir, loss_type):
    losses, grads, rows = {}, {}, {}
    for mode in ("grouped", "pairwise"):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_llama_causal_dir, dtype=torch.float64)
        peft = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)  # non-zero adapter
        trainer = DPOTrainer(model, args=_args(tmp_path / mode, ranked_training=mode, loss_type=[loss_type]),
                             train_dataset=Dataset.from_list(RANKED), peft_config=peft)
        trainer.model.eval()
        losses[mode], grads[mode], rows[mode] = _loss_and_grads(trainer)
    assert losses["grouped"] == pytest.approx(losses["pairwise"], abs=1e-6)
    assert grads["grouped"].keys() == grads["pairwise"].keys() and grads["grouped"]
    for name, grad in grads["grouped"].items():
        torch.testing.assert_close(grad, grads["pairwise"][name], atol=1e-6, rtol=1e-6)
    assert rows["grouped"] == 9 and rows["pairwise"] == 2 * (6 + 1 + 2)


def test_grouped_loss_matches_hand_computed_from_logps(tmp_path, tiny_llama_causal_dir):
    """Full fine-tuning with a separate reference model: the grouped loss is the group mean of per-pair DPO losses."""
    trainer = DPOTrainer(tiny_llama_causal_dir, args=_args(tmp_path, model_init_kwargs={"dtype": torch.float64}),
                         train_dataset=Dataset.from_list(RANKED[:2]))
    assert trainer.ref_model is not None
    with torch.no_grad():  # perturb the policy so policy != reference
        for p in trainer.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch)).item()

        def seq_logps(model):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
            logp = torch.log_softmax(logits.double(), -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
            return (logp * batch["completion_mask"][:, 1:]).sum(1)

        ratios = seq_logps(trainer.model) - seq_logps(trainer.ref_model)
    pairs = batch["pair_index"]
    per_pair = -torch.nn.functional.logsigmoid(0.5 * (ratios[pairs[:, 0]] - ratios[pairs[:, 1]]))
    g0 = per_pair[batch["pair_group"] == 0].mean()
    g1 = per_pair[batch["pair_group"] == 1].mean()
    assert loss == pytest.approx(((g0 + g1) / 2).item(), abs=1e-6)


def test_unweighted_pairwise_data_uses_trl_loss_unchanged(tmp_path, tiny_llama_causal_dir):
    data = Dataset.from_list([{"prompt": "2+2=", "chosen": " 4", "rejected": " 5"},
                              {"prompt": "3+3=", "chosen": " 6", "rejected": " 7"}])
    ours = DPOTrainer(tiny_llama_causal_dir, args=_args(tmp_path / "a"), train_dataset=data)
    theirs = trl.DPOTrainer(tiny_llama_causal_dir, args=trl.DPOConfig(
        output_dir=str(tmp_path / "b"), bf16=False, report_to=[], beta=0.5, activation_checkpointing=False),
        train_dataset=data)
    theirs.model.load_state_dict(ours.model.state_dict())
    batch = ours.data_collator([ours.train_dataset[i] for i in range(2)])
    assert "pair_index" not in batch
    assert ours.compute_loss(ours.model, dict(batch)).item() == pytest.approx(
        theirs.compute_loss(theirs.model, dict(batch)).item(), abs=1e-6)


def test_weight_column_gives_weighted_mean(tmp_path, tiny_llama_causal_dir):
    data = Dataset.from_list([{"prompt": "2+2=", "chosen": " 4", "rejected": " 5", "weight": 3.0},
                              {"prompt": "3+3=", "chosen": " 6", "rejected": " 9", "weight": 1.0}])
    trainer = DPOTrainer(tiny_llama_causal_dir, args=_args(tmp_path, model_init_kwargs={"dtype": torch.float64}),
                         train_dataset=data)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert batch["pair_weight"].tolist() == [3.0, 1.0]
    with torch.no_grad():
        weighted = trainer.compute_loss(trainer.model, dict(batch)).item()
        unweighted = dict(batch)
        del unweighted["pair_index"], unweighted["pair_weight"]
        per_pair = []
        for i in range(2):  # TRL's loss on each pair alone
            single = {k: (v[[i, 2 + i]] if k in ("input_ids", "attention_mask", "completion_mask") else v)
                      for k, v in unweighted.items()}
            per_pair.append(trl.DPOTrainer.compute_loss(trainer, trainer.model, single).item())
    assert weighted == pytest.approx((3 * per_pair[0] + per_pair[1]) / 4, abs=1e-6)


def test_ranked_training_end_to_end_with_eval(tmp_path, tiny_llama_causal_dir):
    args = _args(tmp_path, max_steps=3, per_device_train_batch_size=2, learning_rate=1e-2, eval_strategy="no")
    trainer = DPOTrainer(tiny_llama_causal_dir, args=args, train_dataset=Dataset.from_list(RANKED * 4),
                         eval_dataset=Dataset.from_list(RANKED), peft_config=LoraConfig(r=4, target_modules="all-linear"))
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    assert trainer.ranking_stats["train"]["ok"] == 12
    assert after["eval_loss"] < before["eval_loss"]
    assert {"eval_rewards/accuracies", "eval_rewards/margins", "eval_logps/chosen"} <= after.keys()


def test_grouped_rejects_unsupported_options(tmp_path, tiny_llama_causal_dir):
    with pytest.raises(ValueError, match=r"does not support f_divergence_type='forward_kl'"):
        DPOTrainer(tiny_llama_causal_dir, args=_args(tmp_path, f_divergence_type="forward_kl"),
                   train_dataset=Dataset.from_list(RANKED))
    with pytest.raises(ValueError, match=r"does not support use_weighting=True"):  # pairwise expansion is ours too
        DPOTrainer(tiny_llama_causal_dir, args=_args(tmp_path, use_weighting=True, ranked_training="pairwise"),
                   train_dataset=Dataset.from_list(RANKED))
    # TRL pairwise data without weights keeps every TRL loss type (TRL's own loss path)
    pairs = Dataset.from_list([{"prompt": "2+2=", "chosen": " 4", "rejected": " 5"}] * 2)
    trainer = DPOTrainer(tiny_llama_causal_dir, args=_args(tmp_path, loss_type=["aot"]), train_dataset=pairs)
    assert trainer.train().training_loss >= 0


def test_ranked_bad_row_names_row_and_field(tmp_path, tiny_llama_causal_dir):
    bad = RANKED + [{"prompt": "x", "completions": [" a", " b"], "ranks": [0]}]
    with pytest.raises(ValueError, match=r"row 3, field 'ranks'"):
        DPOTrainer(tiny_llama_causal_dir, args=_args(tmp_path), train_dataset=Dataset.from_list(bad))


def test_dpo_pair_losses_hand_values():
    c = torch.tensor([1.0, -0.5], dtype=torch.float64)
    r = torch.tensor([0.0, 0.5], dtype=torch.float64)
    beta = 0.5
    sig = dpo_pair_losses(c, r, beta, "sigmoid")
    torch.testing.assert_close(sig, -torch.nn.functional.logsigmoid(beta * (c - r)))
    hinge = dpo_pair_losses(c, r, beta, "hinge")
    torch.testing.assert_close(hinge, torch.tensor([0.5, 1.5], dtype=torch.float64))
    ipo = dpo_pair_losses(c, r, beta, "ipo", chosen_lengths=torch.tensor([2, 1]), rejected_lengths=torch.tensor([1, 1]))
    torch.testing.assert_close(ipo, torch.tensor([(0.5 - 1.0) ** 2, (-1.0 - 1.0) ** 2], dtype=torch.float64))
    with pytest.raises(ValueError, match="needs chosen_lengths"):
        dpo_pair_losses(c, r, beta, "ipo")
    with pytest.raises(ValueError, match="'aot' needs chosen_logps"):
        dpo_pair_losses(c, r, beta, "aot")
    with pytest.raises(ValueError, match="'kto'"):
        dpo_pair_losses(c, r, beta, "kto")


def test_preference_accuracy_counts_every_pair(tmp_path, tiny_llama_causal_dir):
    trainer = DPOTrainer(tiny_llama_causal_dir, args=_args(tmp_path), train_dataset=Dataset.from_list(RANKED),
                         eval_dataset=Dataset.from_list(RANKED), peft_config=LoraConfig(r=4, target_modules="all-linear"))
    result = trainer.preference_accuracy()
    assert result["pairs"] == 9
    # fresh adapter: policy == reference, every pair ties, and a tie is not a win (TRL's `rewards/accuracies`)
    assert result["reward_accuracy"] == 0.0 and result["reward_ties"] == 1.0
    batch = trainer.data_collator([trainer.eval_dataset[i] for i in range(3)])
    with torch.no_grad():
        out = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        logp = torch.log_softmax(out.logits[:, :-1].double(), -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
        seq = (logp * batch["completion_mask"][:, 1:]).sum(1)
    b, w = batch["pair_index"][:, 0], batch["pair_index"][:, 1]
    assert result["logp_accuracy"] == pytest.approx((seq[b] > seq[w]).double().sum().item() / 9)
    assert result["logp_ties"] == pytest.approx((seq[b] == seq[w]).double().sum().item() / 9)
    assert set(result) == {"reward_accuracy", "logp_accuracy", "reward_ties", "logp_ties", "pairs"}


def test_preference_accuracy_forwards_each_row_once_per_call(tmp_path, tiny_llama_causal_dir):
    """Before training a fresh adapter computes the reference: one forward (the reference's) per batch. After
    training the reference's log-probs are reused: one forward (the policy's). The figures are those of the
    full computation (policy and reference forwarded every time)."""
    trainer = DPOTrainer(tiny_llama_causal_dir, args=_args(tmp_path, per_device_eval_batch_size=2, max_steps=3,
                                                           learning_rate=5e-2),
                         train_dataset=Dataset.from_list(RANKED), eval_dataset=Dataset.from_list(RANKED),
                         peft_config=LoraConfig(r=4, target_modules="all-linear"))
    backbone = trainer.model.get_base_model().model
    calls = []
    handle = backbone.register_forward_pre_hook(lambda module, args: calls.append(1))
    batches = len(trainer.get_eval_dataloader())
    assert trainer._policy_is_reference()
    before = trainer.preference_accuracy()
    assert len(calls) == batches  # the reference only: the fresh adapter adds nothing to the base
    assert before["reward_accuracy"] == 0.0 and before["reward_ties"] == 1.0 and before["pairs"] == 9
    handle.remove()
    trainer.train()
    assert not trainer._policy_is_reference()
    calls.clear()
    handle = backbone.register_forward_pre_hook(lambda module, args: calls.append(1))
    after = trainer.preference_accuracy()
    assert len(calls) == batches  # the policy only: the reference's log-probs were kept
    handle.remove()
    trainer._ref_logps_cache = (None, None)  # the full computation: reference and policy forwarded again
    full = trainer.preference_accuracy()
    assert after == full
    assert after["reward_ties"] < 1.0  # trained: the implicit reward no longer ties every pair


def test_policy_is_reference_with_an_sft_adapter_and_its_ref_copy(tmp_path, tiny_llama_causal_dir):
    from peft import get_peft_model

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_causal_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    with torch.no_grad():  # an "SFT" adapter: non-zero B, so the base alone is not the policy
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
    trainer = DPOTrainer(peft_model, args=_args(tmp_path), train_dataset=Dataset.from_list(RANKED),
                         eval_dataset=Dataset.from_list(RANKED))
    assert "ref" in trainer.model.peft_config  # TRL's frozen copy of the SFT adapter is the reference
    assert trainer._policy_is_reference()
    assert trainer.preference_accuracy()["reward_ties"] == 1.0
    with torch.no_grad():
        next(p for n, p in trainer.model.named_parameters() if "lora_B.default" in n).add_(0.01)
    assert not trainer._policy_is_reference()
