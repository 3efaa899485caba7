# Copyright 2026 The trl_ext authors. Apache-2.0.
"""`PPOConfig`: the options of trl_ext's PPO with a critic, on top of TRL's `GRPOConfig` (whose machinery
`PPOTrainer` reuses) and KL control."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import math
from typing import Any

import trl

from .config_utils import warn_renamed_option
from .kl_control import KLControlArguments


_GENERATION = "TRL's generation and rollout machinery, which PPOTrainer reuses unchanged"
_VLLM = "vLLM generation, TRL's (rollouts come from GRPOTrainer's generation)"
_LOGGING = "TRL's completion logging"
_TOKEN, _SEQUENCE = ("dapo", "bnpo"), ("grpo",)

#: How PPO treats every field it inherits from `trl.GRPOConfig`: (status, what it does or why, allowed values).
#: "honoured": it works as documented by TRL (or as the PPO knob of the same name); "refused": a value other than
#: TRL's default is an error naming the field (the PPO loss has no such term); "irrelevant": accepted, and without
#: effect on PPO, for the reason given. `allowed` restricts an honoured field to the values PPO implements.
GRPO_FIELDS: dict[str, tuple[str, str, tuple | None]] = {
    "model_init_kwargs": ("honoured", "how TRL loads the policy from a name", None),
    "trust_remote_code": ("honoured", "how TRL loads the policy from a name", None),
    "router_aux_loss_coef": ("honoured", "MoE router load-balancing loss added to the PPO loss, as GRPO adds it", None),
    "disable_dropout": ("honoured", "TRL turns dropout off in the policy and reference", None),
    "cast_lm_head_to_fp32": ("honoured", "TRL's LM-head cast (the value head is fp32 anyway)", None),
    "num_generations": ("honoured", "completions per prompt; 1 (the default) is classic PPO, the critic is the "
                        "baseline", None),
    "num_generations_eval": ("honoured", "completions per prompt in evaluation", None),
    "max_completion_length": ("honoured", _GENERATION, None),
    "ds3_gather_for_generation": ("honoured", _GENERATION, None),
    "shuffle_dataset": ("honoured", _GENERATION, None),
    "pad_to_multiple_of": ("honoured", _GENERATION, None),
    "generation_batch_size": ("honoured", "completions per rollout", None),
    "steps_per_generation": ("honoured", "mini-batches (optimizer steps) per PPO epoch; deprecated alias "
                             "num_mini_batches", None),
    "temperature": ("honoured", _GENERATION + "; log-probs are taken at the same temperature", None),
    "top_p": ("honoured", _GENERATION, None),
    "top_k": ("honoured", _GENERATION, None),
    "min_p": ("honoured", _GENERATION, None),
    "generation_kwargs": ("honoured", _GENERATION, None),
    "chat_template_kwargs": ("honoured", _GENERATION, None),
    "repetition_penalty": ("honoured", _GENERATION, None),
    "cache_implementation": ("honoured", _GENERATION, None),
    "use_vllm": ("honoured", _VLLM, None),
    "vllm_mode": ("honoured", _VLLM, None),
    "vllm_model_impl": ("honoured", _VLLM, None),
    "vllm_enable_sleep_mode": ("honoured", _VLLM, None),
    "vllm_structured_outputs_regex": ("honoured", _VLLM, None),
    "vllm_server_base_url": ("honoured", _VLLM, None),
    "vllm_server_host": ("honoured", _VLLM, None),
    "vllm_server_port": ("honoured", _VLLM, None),
    "vllm_server_timeout": ("honoured", _VLLM, None),
    "vllm_group_port": ("honoured", _VLLM, None),
    "vllm_gpu_memory_utilization": ("honoured", _VLLM, None),
    "vllm_max_model_length": ("honoured", _VLLM, None),
    "vllm_tensor_parallel_size": ("honoured", _VLLM, None),
    "vllm_importance_sampling_correction": ("honoured", "the per-token policy loss is multiplied by TRL's "
                                            "sampler/trainer importance-sampling ratio, as in GRPO", None),
    "vllm_importance_sampling_mode": ("honoured", "how TRL computes that ratio", None),
    "vllm_importance_sampling_clip_max": ("honoured", "how TRL computes that ratio", None),
    "vllm_importance_sampling_clip_min": ("honoured", "how TRL computes that ratio", None),
    "vllm_importance_sampling_cap": ("honoured", "deprecated alias TRL maps to vllm_importance_sampling_clip_max", None),
    "beta": ("honoured", "the (starting) KL coefficient of the per-token reward r_t = -beta (log pi - log pi_ref)", None),
    "num_iterations": ("honoured", "PPO epochs over each rollout; deprecated alias num_ppo_epochs", None),
    "epsilon": ("honoured", "the policy clip range: ratio clipped to [1 - epsilon, 1 + epsilon]", None),
    "epsilon_high": ("honoured", "asymmetric clipping: the upper bound 1 + epsilon_high (default epsilon)", None),
    "delta": ("refused", "GRPO's two-sided clipping of negative advantages; PPO clips with epsilon / epsilon_high", None),
    "sapo_temperature_neg": ("irrelevant", "used only by loss_type='sapo', which PPO refuses", None),
    "sapo_temperature_pos": ("irrelevant", "used only by loss_type='sapo', which PPO refuses", None),
    "vespo_k_pos": ("irrelevant", "used only by loss_type='vespo', which PPO refuses", None),
    "vespo_lambda_pos": ("irrelevant", "used only by loss_type='vespo', which PPO refuses", None),
    "vespo_k_neg": ("irrelevant", "used only by loss_type='vespo', which PPO refuses", None),
    "vespo_lambda_neg": ("irrelevant", "used only by loss_type='vespo', which PPO refuses", None),
    "importance_sampling_level": ("honoured", "'token': PPO's per-token ratios (GSPO's sequence level is not "
                                  "implemented)", ("token",)),
    "reward_weights": ("honoured", "the sequence score is the weighted sum of the reward functions", None),
    "multi_objective_aggregation": ("honoured", "'sum_then_normalize': the score is the weighted sum (PPO normalises "
                                    "advantages, not rewards)", ("sum_then_normalize",)),
    "scale_rewards": ("refused", "GRPO's group normalisation of rewards; PPO's advantages come from GAE and are "
                      "whitened per rollout", None),
    "loss_type": ("honoured", "aggregation over a mini-batch: 'dapo' / 'bnpo' average over all completion tokens, "
                  "'grpo' averages each completion over its tokens, then over completions", _TOKEN + _SEQUENCE),
    "mask_truncated_completions": ("honoured", "TRL masks truncated completions out of the completion mask, so out "
                                   "of every PPO loss", None),
    "sync_ref_model": ("honoured", "TRL's reference-sync callback", None),
    "ref_model_mixup_alpha": ("honoured", "TRL's reference-sync callback", None),
    "ref_model_sync_steps": ("honoured", "TRL's reference-sync callback", None),
    "top_entropy_quantile": ("refused", "GRPO's high-entropy token mask; PPO trains on every completion token", None),
    "entropy_coef": ("honoured", "the entropy bonus: loss - entropy_coef x entropy", None),
    "use_adaptive_entropy": ("refused", "GRPO's adaptive entropy controller; PPO applies a fixed entropy_coef", None),
    "entropy_coef_min": ("irrelevant", "used only with use_adaptive_entropy, which PPO refuses", None),
    "entropy_coef_max": ("irrelevant", "used only with use_adaptive_entropy, which PPO refuses", None),
    "entropy_coef_delta": ("irrelevant", "used only with use_adaptive_entropy, which PPO refuses", None),
    "entropy_target": ("irrelevant", "used only with use_adaptive_entropy, which PPO refuses", None),
    "max_tool_calling_iterations": ("honoured", _GENERATION + "; tool-output tokens are masked out of the losses", None),
    "off_policy_mask_threshold": ("refused", "GRPO's off-policy sequence mask; PPO's clipping bounds the update", None),
    "use_bias_correction_kl": ("irrelevant", "corrects GRPO's KL loss term; PPO's KL is in the reward, measured on the "
                               "rollout's own tokens", None),
    "log_completions": ("honoured", _LOGGING, None),
    "log_multimodal": ("honoured", _LOGGING, None),
    "num_completions_to_print": ("honoured", _LOGGING, None),
    "log_unique_prompts": ("honoured", _LOGGING, None),
    "log_completions_hub_repo": ("honoured", _LOGGING, None),
    "use_transformers_continuous_batching": ("honoured", _GENERATION, None),
    "transformers_continuous_batching_config": ("honoured", _GENERATION, None),
    "use_transformers_paged": ("honoured", "deprecated alias TRL maps to use_transformers_continuous_batching", None),
}


def _grpo_default(name: str) -> Any:
    spec = next(f for f in dataclasses.fields(trl.GRPOConfig) if f.name == name)
    return spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()


def ppo_fields_markdown() -> str:
    """The field table as the Markdown of docs/ppo_config.md."""
    rows = ["| field | status | what it does in PPO, or why not |", "|---|---|---|"]
    for name, (status, note, allowed) in GRPO_FIELDS.items():
        values = f" (values: {', '.join(repr(v) for v in allowed)})" if allowed else ""
        rows.append(f"| `{name}` | {status} | {note}{values} |")
    return "\n".join(rows)


@dataclass
class PPOConfig(KLControlArguments, trl.GRPOConfig):
    r"""[`trl.GRPOConfig`] for PPO with a critic, plus KL control.

    GRPO fields keep their meaning where PPO has the same knob: `epsilon` is the policy clip range ε,
    `num_iterations` the number of PPO epochs over each rollout, `steps_per_generation` the number of mini-batches
    (optimizer steps) per rollout epoch, `entropy_coef` the entropy bonus, `beta` the (starting) KL coefficient of
    the per-token reward r_t = −β·(log π − log π_ref) (+ score on the last token). `num_ppo_epochs` and
    `num_mini_batches` (the old TRL PPO names of the latter two) and `reward_clip` (c, now `reward_clip_range=(-c, c)`,
    TRL RLOOConfig's name) are deprecated aliases that warn once. Every inherited GRPO field is
    honoured, refused by name, or irrelevant: see `GRPO_FIELDS` (docs/ppo_config.md).
    """

    num_generations: int | None = field(
        default=1, metadata={"help": "Completions per prompt. PPO needs no groups; 1 is the classic setting."})
    beta: float = field(default=0.05, metadata={"help": "KL coefficient (the starting β with adaptive control)."})
    num_iterations: int = field(default=4, metadata={"help": "PPO epochs over each rollout batch."})
    num_ppo_epochs: int | None = field(
        default=None, metadata={"help": "Deprecated alias of `num_iterations` (warns once); set num_iterations."})
    num_mini_batches: int | None = field(
        default=None,
        metadata={"help": "Deprecated alias of `steps_per_generation` (warns once); set steps_per_generation."})
    gamma: float = field(default=1.0, metadata={"help": "Discount factor γ of GAE."})
    lam: float = field(default=0.95, metadata={"help": "λ of GAE."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Value clip range ε_v around the rollout values."})
    vf_coef: float = field(default=0.1, metadata={"help": "Weight of the value loss."})
    whiten_rewards: bool = field(
        default=False, metadata={"help": "Whiten the per-token rewards (scale only) of each rollout before GAE."})
    reward_clip_range: tuple[float, float] | None = field(
        default=None,
        metadata={"help": "Clip range (min, max) of the sequence score, applied before the KL and the missing-EOS "
                  "penalty are added; None: no clipping (TRL RLOOConfig's option of the same name)."})
    reward_clip: float | None = field(
        default=None,
        metadata={"help": "Deprecated alias (warns once): c means reward_clip_range=(-c, c); set reward_clip_range."})
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
            warn_renamed_option("PPOConfig", "num_ppo_epochs", "num_iterations")
            self.num_iterations = self.num_ppo_epochs
        if self.num_mini_batches is not None:
            warn_renamed_option("PPOConfig", "num_mini_batches", "steps_per_generation")
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
        self._resolve_reward_clip_range()
        if self.num_iterations < 1:
            raise ValueError(f"num_iterations (PPO epochs) must be >= 1, got {self.num_iterations}.")
        if self.ddp_find_unused_parameters:
            raise ValueError("ddp_find_unused_parameters=True is not supported by PPOTrainer: the critic's forward "
                             "runs outside DDP's, so DDP would count its parameters as unused (and ready) early.")
        self._check_grpo_fields()
        single = self.num_generations == 1
        if single:  # TRL requires groups of >= 2 completions, which PPO does not need (its baseline is the critic)
            self.num_generations = self._group_stand_in()
            eval_generations, self.num_generations_eval = self.num_generations_eval, self.num_generations_eval or 1
        try:
            super().__post_init__()
        finally:
            if single:
                self.num_generations, self.num_generations_eval = 1, eval_generations

    def _resolve_reward_clip_range(self) -> None:
        """`reward_clip_range` as a (min, max) tuple of finite numbers, min <= max; the deprecated `reward_clip=c`
        becomes (-c, c)."""
        if self.reward_clip is not None:
            warn_renamed_option("PPOConfig", "reward_clip", "reward_clip_range", stacklevel=5)
            from_alias = (-float(self.reward_clip), float(self.reward_clip))
            if self.reward_clip_range is not None and tuple(self.reward_clip_range) != from_alias:
                raise ValueError(f"reward_clip={self.reward_clip} contradicts reward_clip_range="
                                 f"{self.reward_clip_range}; set reward_clip_range only.")
            self.reward_clip_range = from_alias
        if self.reward_clip_range is None:
            return
        bounds = self.reward_clip_range
        if (isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__") or len(bounds) != 2
                or any(isinstance(b, bool) or not isinstance(b, (int, float)) or math.isnan(b) for b in bounds)
                or bounds[0] > bounds[1]):
            raise ValueError(f"reward_clip_range={bounds!r} must be (min, max): two numbers with min <= max, "
                             "or None for no clipping.")
        self.reward_clip_range = (float(bounds[0]), float(bounds[1]))

    def _check_grpo_fields(self) -> None:
        """Refuse, by name, an inherited GRPO option that PPO does not implement (see `GRPO_FIELDS`)."""
        for name, (status, note, allowed) in GRPO_FIELDS.items():
            value = getattr(self, name)
            if status == "refused" and value != _grpo_default(name):
                raise ValueError(f"PPOConfig.{name}={value!r} is not supported by PPOTrainer: {note}.")
            if allowed is not None and value not in allowed:
                raise ValueError(f"PPOConfig.{name}={value!r} is not supported by PPOTrainer; use one of "
                                 f"{list(allowed)} ({note}).")

    def _group_stand_in(self) -> int:
        """A group size TRL's validation accepts for any number of processes when PPO draws one completion per
        prompt: the completions one process draws per rollout (a divisor of the rollout size)."""
        if self.generation_batch_size is not None and self.steps_per_generation is None:
            per_rollout = self.generation_batch_size  # TRL checks divisibility by the global batch itself
        else:
            per_rollout = self.per_device_train_batch_size * (self.steps_per_generation
                                                              or self.gradient_accumulation_steps)
        if per_rollout < 2:
            raise ValueError(
                f"PPOTrainer needs at least 2 completions per rollout and process; per_device_train_batch_size="
                f"{self.per_device_train_batch_size} x steps_per_generation={self.steps_per_generation or 1} gives "
                f"{per_rollout}. Raise either.")
        return per_rollout
