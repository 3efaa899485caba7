"""Every GRPOConfig field PPOConfig inherits is honoured, refused by name, or irrelevant (GRPO_FIELDS, documented in
docs/ppo_config.md); the cheap ones PPO users expect reach the PPO loss."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import transformers
import trl
from datasets import Dataset
from peft import LoraConfig

import trl_ext
from tests.helpers import REPO_ROOT, reward_varied
from trl_ext.trainer.ppo_config import GRPO_FIELDS, ppo_fields_markdown


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, max_completion_length=6, max_steps=1,
                learning_rate=1e-2, num_iterations=1, bf16=False, report_to=[], save_strategy="no", logging_steps=1,
                seed=0, disable_tqdm=True, activation_checkpointing=False)
    base.update(kw)
    return trl_ext.PPOConfig(**base)


def test_every_inherited_grpo_field_is_in_the_table_and_the_docs():
    trainer_fields = {f.name for f in dataclasses.fields(transformers.TrainingArguments)}
    grpo_own = {f.name for f in dataclasses.fields(trl.GRPOConfig)} - trainer_fields
    assert grpo_own == set(GRPO_FIELDS)
    assert {status for status, _, _ in GRPO_FIELDS.values()} == {"honoured", "refused", "irrelevant"}
    assert ppo_fields_markdown() in (REPO_ROOT / "docs" / "ppo_config.md").read_text()


@pytest.mark.parametrize("field,value", [
    ("delta", 2.0), ("scale_rewards", "none"), ("top_entropy_quantile", 0.5), ("off_policy_mask_threshold", 0.5),
    ("use_adaptive_entropy", True), ("loss_type", "dr_grpo"), ("loss_type", "cispo"),
    ("importance_sampling_level", "sequence"), ("multi_objective_aggregation", "normalize_then_sum"),
])
def test_an_unimplemented_grpo_option_is_refused_by_name(tmp_path, field, value):
    with pytest.raises(ValueError, match=rf"PPOConfig\.{field}={value!r} is not supported by PPOTrainer"):
        _args(tmp_path, **{field: value})


def test_one_completion_per_prompt_with_an_odd_batch(tmp_path):
    args = _args(tmp_path, per_device_train_batch_size=3)
    assert (args.num_generations, args.generation_batch_size, args.num_generations_eval) == (1, 3, None)
    with pytest.raises(ValueError, match="at least 2 completions per rollout and process"):
        _args(tmp_path, per_device_train_batch_size=1)


def _trainer(tmp_path, model_dir, **kw):
    prompts = Dataset.from_list([{"prompt": f"say {w} please"} for w in ["abc", "dog", "cat", "zoo"] * 4])
    return trl_ext.PPOTrainer(model_dir, reward_funcs=reward_varied, train_dataset=prompts, args=_args(tmp_path, **kw),
                              peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))


@pytest.mark.parametrize("overrides,expected", [
    ({}, {"clip_eps_high": None, "level": "token"}),
    ({"epsilon_high": 0.28}, {"clip_eps_high": 0.28, "level": "token"}),
    ({"loss_type": "grpo"}, {"clip_eps_high": None, "level": "sequence"}),
])
def test_epsilon_high_and_loss_aggregation_reach_the_policy_loss(tmp_path, tiny_llama_causal_dir, monkeypatch,
                                                                  overrides, expected):
    from trl_ext import ppo_math

    seen = []
    original = ppo_math.policy_loss
    monkeypatch.setattr(ppo_math, "policy_loss", lambda *a, **k: seen.append(k) or original(*a, **k))
    trainer = _trainer(tmp_path, tiny_llama_causal_dir, **overrides)
    trainer.train()
    assert seen and all(k["level"] == expected["level"] for k in seen)
    assert all(k["clip_eps_high"] == expected["clip_eps_high"] for k in seen)
    assert not any("frac_reward_zero_std" in row for row in trainer.state.log_history)  # no constant metric


def test_vllm_importance_sampling_ratio_weighs_the_policy_loss(tmp_path, tiny_llama_causal_dir):
    trainer = _trainer(tmp_path, tiny_llama_causal_dir)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this test does not run
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    losses = {}
    for name, use_vllm, ratio in (("plain", False, None), ("weighted", True, 3.0)):
        trainer.use_vllm = use_vllm  # the rollout came from the model; only the loss's use of the ratio is checked
        batch = dict(inputs, advantages=torch.ones_like(inputs["advantages"]))  # loss = -mean(ratio x weight)
        if ratio is not None:
            batch["importance_sampling_ratio"] = torch.full_like(batch["advantages"], ratio)
        trainer._compute_loss(trainer.model, batch)
        losses[name] = trl_ext._trl_compat.metrics(trainer, "train")["ppo/policy_loss"][-1]
    assert losses["weighted"] == pytest.approx(3.0 * losses["plain"], rel=1e-5)
