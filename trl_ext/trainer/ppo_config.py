# Copyright 2026 The trl_ext authors. Apache-2.0.
"""`PPOConfig`: the options of trl_ext's PPO with a critic, on top of TRL's `GRPOConfig` (whose machinery
`PPOTrainer` reuses) and KL control."""

from __future__ import annotations

from dataclasses import dataclass, field

import trl

from .kl_control import KLControlArguments


@dataclass
class PPOConfig(KLControlArguments, trl.GRPOConfig):
    r"""[`trl.GRPOConfig`] for PPO with a critic, plus KL control.

    GRPO fields keep their meaning where PPO has the same knob: `epsilon` is the policy clip range ε,
    `num_iterations` the number of PPO epochs over each rollout, `steps_per_generation` the number of mini-batches
    (optimizer steps) per rollout epoch, `entropy_coef` the entropy bonus, `beta` the (starting) KL coefficient of
    the per-token reward r_t = −β·(log π − log π_ref) (+ score on the last token). `num_ppo_epochs` and
    `num_mini_batches` are accepted as the old TRL PPO names for the latter two.
    """

    num_generations: int | None = field(
        default=1, metadata={"help": "Completions per prompt. PPO needs no groups; 1 is the classic setting."})
    beta: float = field(default=0.05, metadata={"help": "KL coefficient (the starting β with adaptive control)."})
    num_iterations: int = field(default=4, metadata={"help": "PPO epochs over each rollout batch."})
    num_ppo_epochs: int | None = field(default=None, metadata={"help": "Alias of `num_iterations`."})
    num_mini_batches: int | None = field(default=None, metadata={"help": "Alias of `steps_per_generation`."})
    gamma: float = field(default=1.0, metadata={"help": "Discount factor γ of GAE."})
    lam: float = field(default=0.95, metadata={"help": "λ of GAE."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Value clip range ε_v around the rollout values."})
    vf_coef: float = field(default=0.1, metadata={"help": "Weight of the value loss."})
    whiten_rewards: bool = field(
        default=False, metadata={"help": "Whiten the per-token rewards (scale only) of each rollout before GAE."})
    reward_clip: float | None = field(
        default=None, metadata={"help": "Clip the sequence score to [-reward_clip, reward_clip] before adding KL."})
    missing_eos_penalty: float | None = field(
        default=None, metadata={"help": "Subtracted from the score of completions that end without an EOS token."})
    target_kl: float | None = field(
        default=None,
        metadata={"help": "Stop the remaining PPO updates of a rollout once the mini-batch approx-KL(π_old‖π) "
                  "exceeds this (averaged over processes)."})
    value_model_path: str | None = field(
        default=None,
        metadata={"help": "A separate critic backbone (same tokenizer as the policy). A sequence-classification RM "
                  "checkpoint also starts the value head from its score head (InstructGPT). Default: "
                  "a second LoRA adapter on the policy's own base (needs a PEFT policy); a full fine-tune without "
                  "this falls back to a copy of the policy's model."})
    critic_adapter_name: str = field(default="critic", metadata={"help": "Name of the critic's LoRA adapter."})
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "Must stay False: the critic runs outside the DDP-wrapped forward, and DDP's unused-"
                  "parameter search would mark the critic's parameters ready before their gradients arrive."})

    def __post_init__(self):
        if self.num_ppo_epochs is not None:
            self.num_iterations = self.num_ppo_epochs
        if self.num_mini_batches is not None:
            if self.steps_per_generation is not None and self.steps_per_generation != self.num_mini_batches:
                raise ValueError(f"num_mini_batches={self.num_mini_batches} contradicts "
                                 f"steps_per_generation={self.steps_per_generation}; set one of them.")
            self.steps_per_generation = self.num_mini_batches
        for name in ("gamma", "lam"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}.")
        for name in ("cliprange_value", "vf_coef", "reward_clip", "missing_eos_penalty", "target_kl"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}.")
        if self.num_iterations < 1:
            raise ValueError(f"num_iterations (PPO epochs) must be >= 1, got {self.num_iterations}.")
        if self.ddp_find_unused_parameters:
            raise ValueError("ddp_find_unused_parameters=True is not supported by PPOTrainer: the critic's forward "
                             "runs outside DDP's, so DDP would count its parameters as unused (and ready) early.")
        if self.use_adaptive_entropy:
            raise ValueError("use_adaptive_entropy is a GRPO option; PPOTrainer applies a fixed `entropy_coef`.")
        # TRL's check that GRPO groups have >= 2 completions does not apply: PPO's baseline is the critic.
        single = self.num_generations == 1
        if single:
            self.num_generations = 2
        try:
            super().__post_init__()
        finally:
            if single:
                self.num_generations = 1
