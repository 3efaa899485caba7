"""trl_ext's DPOTrainer in grouped ranked mode on a 4-bit QLoRA policy (CPU, tiny Llama): reference = disabled adapter
(fresh LoRA) or the frozen SFT adapter; base stays 4-bit; only LoRA parameters train."""

from __future__ import annotations

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes", reason="4-bit loading needs bitsandbytes (extra `quantization`)")

from datasets import Dataset  # noqa: E402
from tests.unit.test_peft_utils import (  # noqa: E402,F401  (fixtures and helpers shared with the QLoRA module tests)
    lora_params,
    qlora_args,
    quantized_weights,
    seq_logps,
    sft_adapter_dir,
    tiny_llama_dir,
    tokenizer,
)

from trl_ext import DPOConfig, DPOTrainer, load_policy  # noqa: E402
from trl_ext.peft_utils import is_4bit  # noqa: E402
from trl_ext.peft_utils import trainable_parameter_names  # noqa: E402

RANKED = [
    {"prompt": "Q: 2+2?", "completions": [" 4.", " 5.", " five!"], "ranks": [0, 1, 2]},
    {"prompt": "Q: sky?", "completions": [" blue.", " green"], "ranks": [0, 1]},
    {"prompt": "Q: 3*3?", "completions": [" 9.", " ten", " 8.", " no"], "ranks": [0, 2, 1, 3]},
]


def _trainer(model, peft_config, tok, tmp_path):
    args = DPOConfig(output_dir=str(tmp_path), bf16=False, report_to=[], max_steps=2, per_device_train_batch_size=2,
                     learning_rate=5e-3, save_strategy="no", disable_tqdm=True, seed=0, activation_checkpointing=False)
    return DPOTrainer(model, args=args, train_dataset=Dataset.from_list(RANKED), processing_class=tok,
                      peft_config=peft_config)


def _grouped_ref_logps(trainer, batch) -> torch.Tensor:
    """Reference log-probs of every completion row, through the same call the grouped loss makes."""
    trainer.model.eval()
    rows = {k: batch[k] for k in ("input_ids", "attention_mask", "completion_mask")}
    return torch.cat(trainer.compute_ref_log_probs(trainer.model, rows)).float().cpu()


def test_grouped_qlora_dpo_fresh_adapter(tiny_llama_dir, tokenizer, tmp_path):
    model, peft_config = load_policy(qlora_args(tiny_llama_dir))
    base_model, _ = load_policy(qlora_args(tiny_llama_dir))
    trainer = _trainer(model, peft_config, tokenizer, tmp_path)
    policy = trainer.model
    assert trainer.ref_model is None and is_4bit(policy)
    assert all(".lora_" in n for n in trainable_parameter_names(policy))
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(3)]))
    assert batch["input_ids"].shape[0] == 9  # each completion once
    base = seq_logps(base_model, batch)
    torch.testing.assert_close(_grouped_ref_logps(trainer, batch), base, atol=1e-3, rtol=1e-4)
    weights, lora = quantized_weights(policy), lora_params(policy, "default")
    trainer.train()
    assert all(torch.equal(w, quantized_weights(policy)[n]) for n, w in weights.items())  # base untouched, 4-bit
    after = lora_params(policy, "default")
    assert any(not torch.equal(lora[n], after[n]) for n in lora)  # the adapter trained
    torch.testing.assert_close(_grouped_ref_logps(trainer, batch), base, atol=1e-3, rtol=1e-4)  # ref = base


def test_grouped_qlora_dpo_sft_adapter_is_reference(tiny_llama_dir, sft_adapter_dir, tokenizer, tmp_path):
    model, peft_config = load_policy(qlora_args(tiny_llama_dir), adapter_path=sft_adapter_dir)
    sft_model, _ = load_policy(qlora_args(tiny_llama_dir), adapter_path=sft_adapter_dir)
    base_model, _ = load_policy(qlora_args(tiny_llama_dir))
    trainer = _trainer(model, peft_config, tokenizer, tmp_path)
    assert set(trainer.model.peft_config) == {"default", "ref"}
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(3)]))
    sft, base = seq_logps(sft_model, batch), seq_logps(base_model, batch)
    reference = _grouped_ref_logps(trainer, batch)
    torch.testing.assert_close(reference, sft, atol=1e-3, rtol=1e-4)
    assert (reference - base).abs().min() > 0.3  # the SFT adapter, not the bare base
    trainer.train()
    torch.testing.assert_close(_grouped_ref_logps(trainer, batch), sft, atol=1e-3, rtol=1e-4)  # still frozen
