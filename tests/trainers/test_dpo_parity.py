"""Grouped ranked DPO against `trl.DPOTrainer`: for every loss type (and combination) TRL 1.16 accepts, K=2 ranked
groups give TRL's loss and every metric TRL logs, on the same pairs, with a policy and a different reference model."""

from __future__ import annotations

import pytest
import torch
import trl
from datasets import Dataset
from transformers import AutoModelForCausalLM

from trl_ext import DPOConfig, DPOTrainer, ranked_to_pairs
from trl_ext import _trl_compat as compat
from trl_ext.losses import GROUPED_DPO_LOSS_TYPES

GROUPS = [
    {"prompt": "2+2=", "completions": [" 4", " 5 or so"], "ranks": [0, 1]},
    {"prompt": "3+1=", "completions": [" 31", " 4"], "ranks": [1, 0]},
    {"prompt": "1+1=", "completions": [" 2, sure", " 3"], "ranks": [0, 1]},
]
LOSSES = [["sigmoid"], ["hinge"], ["ipo"], ["exo_pair"], ["nca_pair"], ["robust"], ["bco_pair"], ["sppo_hard"],
          ["aot"], ["aot_unpaired"], ["apo_zero"], ["apo_down"], ["discopop"], ["sft"], ["sigmoid_norm"],
          ["sigmoid", "sft"], ["aot", "hinge", "sft"]]


def _trl_loss_types() -> dict[str, set[str]]:
    """TRL's DPO loss types, read from TRL itself two ways: the `loss_type == "..."` branches of
    `DPOTrainer._compute_loss` (what TRL computes) and the values DPOConfig's `loss_type` help lists (what it offers)."""
    import ast
    import dataclasses
    import inspect
    import re
    import textwrap

    source = textwrap.dedent(inspect.getsource(trl.trainer.dpo_trainer.DPOTrainer._compute_loss))
    branches = {comparator.value for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == "loss_type"
                and all(isinstance(op, ast.Eq) for op in node.ops)
                for comparator in node.comparators if isinstance(comparator, ast.Constant)}
    help_text = next(f for f in dataclasses.fields(trl.trainer.dpo_config.DPOConfig) if f.name == "loss_type")
    offered = set(re.findall(r"`'([a-z_]+)'`", help_text.metadata["help"]))
    return {"_compute_loss branches": branches, "DPOConfig.loss_type help": offered}


@pytest.mark.parametrize("where", ["_compute_loss branches", "DPOConfig.loss_type help"])
def test_every_trl_loss_type_is_mirrored_and_parity_tested(where):
    """A loss type TRL adds fails here until `dpo_pair_losses` mirrors it and LOSSES compares it with TRL."""
    trl_types = _trl_loss_types()[where]
    assert len(trl_types) >= 15, trl_types  # the reading found TRL's list (15 in TRL 1.16)
    assert trl_types == set(GROUPED_DPO_LOSS_TYPES)
    assert trl_types <= {loss_type[0] for loss_type in LOSSES if len(loss_type) == 1}


def _models(path):
    # float64 weights; TRL's fused LM head returns float32 log-probs, so values agree to float32 rounding (rel 1e-6)
    torch.manual_seed(0)
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64)
    reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64)
    with torch.no_grad():  # policy != reference, so every log-ratio is non-zero
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return policy, reference


def _args(cls, out, loss_type):
    weights = [1.0, 0.5, 0.25][: len(loss_type)] if len(loss_type) > 1 else None
    smoothing = 0.1 if {"exo_pair", "robust", "aot", "aot_unpaired"} & set(loss_type) else 0.0
    return cls(output_dir=str(out), bf16=False, report_to=[], per_device_train_batch_size=8, beta=0.3,
               loss_type=loss_type, loss_weights=weights, label_smoothing=smoothing, activation_checkpointing=False)


def _loss_metrics_grads(trainer):
    trainer.model.train()  # metrics go to the "train" buffer (no dropout in the tiny models)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    metrics = {name: values[-1] for name, values in compat.metrics(trainer, "train").items()}
    return loss.item(), metrics, grads


@pytest.mark.parametrize("loss_type", LOSSES, ids=["+".join(t) for t in LOSSES])
def test_k2_groups_give_trls_loss_metrics_and_gradients(loss_type, tiny_llama_causal_dir, tmp_path):
    pairs, _ = ranked_to_pairs(Dataset.from_list(GROUPS))
    pairs = pairs.select_columns(["prompt", "chosen", "rejected"])
    results = {}
    for name, cls, config_cls, data in (("trl", trl.DPOTrainer, trl.DPOConfig, pairs),
                                        ("ext", DPOTrainer, DPOConfig, Dataset.from_list(GROUPS))):
        policy, reference = _models(tiny_llama_causal_dir)
        trainer = cls(policy, ref_model=reference, args=_args(config_cls, tmp_path / name, loss_type),
                      train_dataset=data)
        results[name] = _loss_metrics_grads(trainer)
    (loss_trl, metrics_trl, grads_trl), (loss_ext, metrics_ext, grads_ext) = results["trl"], results["ext"]
    assert loss_ext == pytest.approx(loss_trl, rel=1e-6, abs=1e-9)
    assert metrics_trl.keys() <= metrics_ext.keys()
    assert all(name.startswith("rm/") for name in metrics_ext.keys() - metrics_trl.keys())  # ranking metrics on top
    assert {"rewards/margins", "logits/chosen", "mean_token_accuracy", "entropy", "logps/rejected"} <= metrics_trl.keys()
    for name, value in metrics_trl.items():
        assert metrics_ext[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert grads_ext.keys() == grads_trl.keys() and grads_ext
    for name, grad in grads_trl.items():
        torch.testing.assert_close(grads_ext[name], grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("loss_type", [["sigmoid"], ["ipo"], ["sft"], ["sigmoid", "sft"], ["aot"], ["discopop"]],
                         ids=["sigmoid", "ipo", "sft", "sigmoid+sft", "aot", "discopop"])
def test_larger_groups_equal_their_weighted_pairs(loss_type, tiny_llama_causal_dir, tmp_path):
    """K > 2: the grouped loss and metrics equal trl_ext's weighted pairwise path on the expanded pairs
    (weights 1/C(K,2) per group), each completion forwarded once instead of once per pair."""
    groups = [{"prompt": "2+2=", "completions": [" 4", " 5", " 22", " four"], "ranks": [0, 2, 3, 1]},
              {"prompt": "3+1=", "completions": [" 4", " 31"], "ranks": [0, 1]}]
    results = {}
    for mode in ("grouped", "pairwise"):
        policy, reference = _models(tiny_llama_causal_dir)
        args = _args(DPOConfig, tmp_path / mode, loss_type)
        args.ranked_training = mode
        trainer = DPOTrainer(policy, ref_model=reference, args=args, train_dataset=Dataset.from_list(groups))
        results[mode] = _loss_metrics_grads(trainer)
    (loss_g, metrics_g, grads_g), (loss_p, metrics_p, grads_p) = results["grouped"], results["pairwise"]
    assert loss_g == pytest.approx(loss_p, rel=1e-6)
    for name, value in metrics_p.items():
        if name != "num_tokens":  # grouped forwards 6 rows, pairwise 14
            assert metrics_g[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    for name, grad in grads_p.items():
        torch.testing.assert_close(grads_g[name], grad, rtol=1e-5, atol=1e-7)
