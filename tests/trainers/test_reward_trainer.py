"""RewardTrainer: grouped ranked training, pairwise compatibility, the [CLS] head, weights, metrics, bad input."""

import pytest
import torch
import trl
from datasets import Dataset

from trl_ext import BertClsRewardModel, RewardConfig, RewardTrainer

RANKED = [
    {"prompt": "how do i boil an egg", "completions": ["boil it for nine minutes", "no", "cook it", "dogs bark"],
     "ranks": [0, 3, 1, 2]},
    {"prompt": "what is two plus two", "completions": ["four", "five"], "ranks": [0, 1]},
    {"prompt": "name a colour", "completions": ["red", "blue", "seven"], "ranks": [0, 0, 1]},  # one tie
]


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), bf16=False, report_to=[], per_device_train_batch_size=8,
                per_device_eval_batch_size=8, max_steps=1, logging_steps=1, save_strategy="no",
                activation_checkpointing=False)
    base.update(kw)
    return RewardConfig(**base)


def _batch_loss_and_grads(trainer, model):
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    n_rows = batch["input_ids"].shape[0]
    model.zero_grad()
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.item(), grads, n_rows


@pytest.mark.parametrize("head", ["cls", "last_token"])
def test_grouped_loss_equals_weighted_pairwise_loss_float64(tmp_path, tiny_bert_dir, tiny_llama_seqcls_dir, head):
    from transformers import AutoModelForSequenceClassification

    if head == "cls":
        model = BertClsRewardModel.from_encoder(tiny_bert_dir, dtype=torch.float64)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(tiny_llama_seqcls_dir, dtype=torch.float64)
    dataset = Dataset.from_list(RANKED)
    grouped = RewardTrainer(model, args=_args(tmp_path / "g"), train_dataset=dataset)
    pairwise = RewardTrainer(model, args=_args(tmp_path / "p", ranked_training="pairwise"), train_dataset=dataset)
    model.eval()  # no dropout; identical forward either way
    loss_g, grads_g, rows_g = _batch_loss_and_grads(grouped, model)
    loss_p, grads_p, rows_p = _batch_loss_and_grads(pairwise, model)
    assert loss_g == pytest.approx(loss_p, abs=1e-6)
    assert grads_g.keys() == grads_p.keys() and grads_g
    for name in grads_g:
        torch.testing.assert_close(grads_g[name], grads_p[name], atol=1e-6, rtol=1e-6)
    # 9 completions forwarded once vs 2 forwards for each of the 6+1+2 = 9 untied pairs
    assert rows_g == 9 and rows_p == 18


def test_grouped_pairs_follow_pair_strategy(tmp_path, tiny_bert_dir):
    trainer = RewardTrainer(tiny_bert_dir, args=_args(tmp_path, pair_strategy="best_vs_rest"),
                            train_dataset=Dataset.from_list(RANKED[:1]))
    batch = trainer.data_collator([trainer.train_dataset[0]])
    # ranks [0, 3, 1, 2]: best (index 0) against the three others
    assert batch["pair_index"].tolist() == [[0, 2], [0, 3], [0, 1]]


def test_trl_pairwise_data_unchanged(tmp_path, tiny_llama_seqcls_dir):
    """Drop-in: on TRL-format pairwise data our trainer's loss and accuracy equal TRL's."""
    data = Dataset.from_list([
        {"prompt": "q: 1+1?", "chosen": " 2", "rejected": " 3"},
        {"prompt": "q: 2+2?", "chosen": " 4", "rejected": " 5"},
    ])
    ours = RewardTrainer(tiny_llama_seqcls_dir, args=_args(tmp_path / "a"), train_dataset=data)
    theirs = trl.RewardTrainer(tiny_llama_seqcls_dir, args=trl.RewardConfig(
        output_dir=str(tmp_path / "b"), bf16=False, report_to=[], activation_checkpointing=False), train_dataset=data)
    assert ours.reward_head == "last_token"
    assert ours.train_dataset["chosen_ids"] == theirs.train_dataset["chosen_ids"]
    batch_ours = ours.data_collator([ours.train_dataset[i] for i in range(2)])
    batch_theirs = theirs.data_collator([theirs.train_dataset[i] for i in range(2)])
    theirs.model.load_state_dict(ours.model.state_dict())
    loss_ours = ours.compute_loss(ours.model.eval(), batch_ours)
    loss_theirs = theirs.compute_loss(theirs.model.eval(), batch_theirs)
    assert loss_ours.item() == pytest.approx(loss_theirs.item(), abs=1e-6)


def test_weight_and_margin_columns(tmp_path, tiny_bert_dir):
    data = Dataset.from_list([
        {"prompt": "p one", "chosen": "good answer", "rejected": "bad", "weight": 3.0, "margin": 0.5},
        {"prompt": "p two", "chosen": "fine", "rejected": "worse answer", "weight": 1.0, "margin": 0.0},
    ])
    trainer = RewardTrainer(tiny_bert_dir, args=_args(tmp_path), train_dataset=data)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert batch["pair_weight"].tolist() == [3.0, 1.0] and "token_type_ids" in batch
    model = trainer.model.eval()
    with torch.no_grad():
        rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        token_type_ids=batch["token_type_ids"]).logits.squeeze(-1)
        loss = trainer.compute_loss(model, dict(batch))
    diff = rewards[:2] - rewards[2:] - torch.tensor([0.5, 0.0])
    expected = (3 * -torch.nn.functional.logsigmoid(diff[0]) + -torch.nn.functional.logsigmoid(diff[1])) / 4
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_tied_rewards_accuracy_as_trl_and_auc_counts_half(tmp_path, tiny_bert_dir):
    # `accuracy` is TRL's metric with TRL's value (a tie is not a win); rm/auc counts a tie as half a win
    data = Dataset.from_list([{"prompt": "same", "chosen": "identical text", "rejected": "identical text"}] * 2)
    trainer = RewardTrainer(tiny_bert_dir, args=_args(tmp_path), train_dataset=data, eval_dataset=data)
    metrics = trainer.evaluate()
    assert metrics["eval_accuracy"] == pytest.approx(0.0)
    assert metrics["eval_rm/auc"] == pytest.approx(0.5)


def test_ranked_eval_metrics(tmp_path, tiny_bert_dir):
    from trl_ext.metrics import group_ranking_metrics

    data = Dataset.from_list(RANKED)
    trainer = RewardTrainer(tiny_bert_dir, args=_args(tmp_path), train_dataset=data, eval_dataset=data)
    metrics = trainer.evaluate()
    # Recompute per group from the model's own rewards: the logged values are means over groups.
    model, expected = trainer.model.eval(), {"kendall_tau": [], "spearman": [], "top1_accuracy": [], "ndcg": [],
                                             "ndcg@3": []}
    batch = trainer.data_collator([trainer.eval_dataset[i] for i in range(len(trainer.eval_dataset))])
    with torch.no_grad():
        rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        token_type_ids=batch["token_type_ids"]).logits.squeeze(-1).tolist()
    for g in range(3):
        rows = (batch["completion_group"] == g).nonzero().flatten().tolist()
        for k, v in group_ranking_metrics([rewards[i] for i in rows], [batch["ranks"][i].item() for i in rows],
                                          k=3).items():
            if v == v:  # undefined (NaN) values are left out of the logged means
                expected[k].append(v)
    for key, values in expected.items():
        assert metrics[f"eval_rm/{key}"] == pytest.approx(sum(values) / len(values), abs=1e-5)


def test_encoder_without_eos_trains_and_truncates_instead_of_dropping(tmp_path, tiny_bert_dir):
    long_prompt = " ".join(["context"] * 300)
    data = Dataset.from_list([{"prompt": long_prompt, "chosen": "the right answer", "rejected": "wrong"}] * 4)
    trainer = RewardTrainer(tiny_bert_dir, args=_args(tmp_path, max_length=64, max_steps=2), train_dataset=data)
    assert trainer.processing_class.eos_token is None
    assert len(trainer.train_dataset) == 4  # TRL would have dropped every pair
    assert all(len(ids) == 64 for ids in trainer.train_dataset["chosen_ids"])
    assert trainer.ranking_stats["train"]["truncated_responses"] == 0
    trainer.train()


def test_ranked_bad_input_names_row_and_field(tmp_path, tiny_bert_dir):
    bad = RANKED[:2] + [{"prompt": "x", "completions": ["a", "b"], "ranks": [0, 1.5]}]
    with pytest.raises(ValueError, match=r"row 2.*ranks"):
        RewardTrainer(tiny_bert_dir, args=_args(tmp_path), train_dataset=Dataset.from_list(bad))
    trainer = RewardTrainer(tiny_bert_dir, args=_args(tmp_path, on_invalid_rows="skip"),
                            train_dataset=Dataset.from_list(bad))
    assert len(trainer.train_dataset) == 2 and trainer.ranking_stats["train"]["invalid"] == 1


def test_small_and_tied_groups_are_skipped_and_counted(tmp_path, tiny_bert_dir):
    rows = RANKED + [{"prompt": "solo", "completions": ["only"], "ranks": [0]},
                     {"prompt": "tie", "completions": ["a", "b"], "ranks": [1, 1]}]
    trainer = RewardTrainer(tiny_bert_dir, args=_args(tmp_path), train_dataset=Dataset.from_list(rows))
    stats = trainer.ranking_stats["train"]
    assert (stats["ok"], stats["skipped_small_group"], stats["skipped_all_tied"]) == (3, 1, 1)
    assert len(trainer.train_dataset) == 3


def test_plain_trl_config_is_accepted(tmp_path, tiny_bert_dir):
    args = trl.RewardConfig(output_dir=str(tmp_path), bf16=False, report_to=[], max_steps=1, learning_rate=3e-4)
    trainer = RewardTrainer(tiny_bert_dir, args=args, train_dataset=Dataset.from_list(RANKED))
    assert isinstance(trainer.args, RewardConfig) and trainer.args.learning_rate == 3e-4
    assert trainer.args.ranked_training == "grouped" and trainer.reward_head == "cls"


def test_config_validation_and_head_errors(tmp_path, tiny_llama_seqcls_dir):
    with pytest.raises(ValueError, match="pair_strategy='best'"):
        _args(tmp_path, pair_strategy="best")
    data = Dataset.from_list(RANKED)
    with pytest.raises(ValueError, match="needs a BERT-family encoder"):
        RewardTrainer(tiny_llama_seqcls_dir, args=_args(tmp_path, reward_head="cls"), train_dataset=data)
    with pytest.raises(ValueError, match="freeze_encoder=True needs reward_head='cls'"):
        RewardTrainer(tiny_llama_seqcls_dir, args=_args(tmp_path, freeze_encoder=True), train_dataset=data)


def test_frozen_encoder_trains_only_the_head(tmp_path, tiny_bert_dir):
    trainer = RewardTrainer(tiny_bert_dir, args=_args(tmp_path, freeze_encoder=True, max_steps=2),
                            train_dataset=Dataset.from_list(RANKED))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"score.weight", "score.bias"}


def test_cls_inputs_never_exceed_the_encoder_positions(tmp_path, tiny_bert_dir):
    # RewardConfig's default max_length (1024) and a tokenizer without a limit, on a 128-position BERT
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    tok.model_max_length = int(1e30)
    long = [{"prompt": "word " * 300, "completions": ["yes indeed", "no"], "ranks": [0, 1]}] * 2
    trainer = RewardTrainer(tiny_bert_dir, args=_args(tmp_path), train_dataset=Dataset.from_list(long),
                            processing_class=tok)
    assert max(len(ids) for ex in trainer.train_dataset for ids in ex["completion_ids"]) == 128
    trainer.train()
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_the_cls_head_built_from_an_encoder_path_is_seeded(tmp_path, tiny_bert_dir):
    """TRL seeds before its head is created; the BERT-CLS head is built before TRL's `__init__`, so it seeds too:
    the same `seed` gives the same head whatever the random state before."""
    heads = []
    for _ in range(2):
        torch.rand(7)  # move the global RNG: without the seed each trainer would draw another head
        trainer = RewardTrainer(tiny_bert_dir, args=_args(tmp_path, seed=3),
                                train_dataset=Dataset.from_list(RANKED))
        heads.append(torch.cat([p.detach().flatten() for n, p in trainer.model.named_parameters() if "score" in n]))
    assert heads[0].numel() > 0 and torch.equal(heads[0], heads[1])
