# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Reward functions for GRPO / RLOO / PPO `reward_funcs`: a text-level reward model with its own tokenizer
(`TextRewardModel`), and rule-based maths rewards (`final_number_reward`, `format_reward`)."""

from .maths import (
    EQUATION_FORMAT,
    completion_text,
    final_number_reward,
    format_reward,
    last_number,
    make_format_reward,
)
from .text_reward_model import RunningMoments, TextRewardModel
