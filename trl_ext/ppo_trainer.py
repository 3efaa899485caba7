# Copyright 2026 The trl_ext authors. Apache-2.0.
"""PPO with a learned critic on TRL's maintained online-RL machinery (TRL removed its PPOTrainer in 1.13).

Built on [`trl.GRPOTrainer`]: it already does everything around the PPO update that we want to keep maintained by
TRL: prompt-only datasets (standard or conversational), generation (transformers or vLLM), reward scoring with any
`reward_funcs` (rule functions, TRL reward models, our `TextRewardModel`), PEFT/QLoRA with the reference model taken
as the base with the adapter disabled, and a rollout buffer that is split into `steps_per_generation` mini-batches
and reused for `num_iterations` epochs. What PPO changes is the advantage (per token from a critic, not per group)
and the loss; the math is in `trl_ext.ppo_math`.
"""

from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import dataclass, field

import torch
import trl
from torch import nn
from trl.models.utils import disable_gradient_checkpointing

from . import ppo_math
from .kl_control import KLControlArguments, KLControlledTrainerMixin

CRITIC_FILE = "value_head.safetensors"  # value head (+ separate value model) weights in every checkpoint


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
        self._validate_kl_fields()
        # TRL's check that GRPO groups have >= 2 completions does not apply: PPO's baseline is the critic.
        single = self.num_generations == 1
        if single:
            self.num_generations = 2
        try:
            super().__post_init__()
        finally:
            if single:
                self.num_generations = 1


class ValueHead(nn.Module):
    """One scalar per position from the last hidden state (kept in float32 whatever the backbone's dtype)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.summary.weight)  # start from V = 0: the critic learns the scale from the returns
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


def _backbone(model: nn.Module) -> nn.Module:
    """The transformer body of a causal LM / sequence classifier (e.g. `LlamaForCausalLM.model`), or the model itself."""
    prefix = getattr(model, "base_model_prefix", "")
    return getattr(model, prefix, model) if prefix else model


class PPOTrainer(KLControlledTrainerMixin, trl.GRPOTrainer):
    """PPO with a critic, GAE and KL-in-reward, as a subclass of [`trl.GRPOTrainer`] (see the module docstring for why).

    The critic is, by default, a second LoRA adapter (`critic_adapter_name`) on the policy's own base plus a
    [`ValueHead`]: a QLoRA run keeps one 4-bit copy of the base for the policy (adapter "default"), the reference
    (adapters disabled) and the critic. With `value_model_path` (or a non-PEFT policy) the critic is a separate
    backbone that must share the policy's tokenizer. The value head (and a separate value model) are registered as
    submodules of the policy model, so the Trainer's optimizer, DDP wrapping and gradient clipping cover them.

    Overrides, each extending TRL's method:

    * `__init__`: TRL's, then the critic and the KL controller.
    * `_calculate_rewards`: TRL's, keeping the per-function rewards (TRL turns them into group advantages, PPO needs
      the scores).
    * `_generate_and_score_completions`: TRL's rollout (generation, old and reference log-probs, rewards), then the
      critic's values, per-token rewards, GAE and whitened per-token advantages.
    * `_compute_loss`: replaced by PPO's clipped policy loss + vf_coef·clipped value loss − entropy bonus.
    * `training_step`: TRL's, skipped for the rest of a rollout once `target_kl` is exceeded.
    * `_save` / `_load_from_checkpoint`: also write/read the value head (TRL/PEFT save the critic adapter).
    """

    def __init__(self, model, reward_funcs=None, args=None, *more, **kwargs):
        args = self._kl_config(model, args, PPOConfig, "PPO")
        if not isinstance(args, PPOConfig):
            raise TypeError(f"PPOTrainer needs a trl_ext.PPOConfig, got {type(args).__name__}.")
        super().__init__(model, reward_funcs, args, *more, **kwargs)
        self._setup_kl_control()
        self._setup_critic()
        self._rollout_rewards_per_func = None
        self._ppo_stopped = False

    # ----------------------------------------------------------------------------------------------------- critic
    def _setup_critic(self) -> None:
        from peft import PeftModel

        policy = self.model
        device = next(p for p in policy.parameters()).device
        self._policy_adapter = None
        score_head = None
        if self.args.value_model_path is None and isinstance(policy, PeftModel):
            self._critic_mode = "adapter"
            self._policy_adapter = policy.active_adapter
            name = self.args.critic_adapter_name
            if name in policy.peft_config:
                raise ValueError(f"The policy already has an adapter named {name!r}; set critic_adapter_name.")
            policy.add_adapter(name, copy.deepcopy(policy.peft_config[self._policy_adapter]))
            policy.set_adapter(self._policy_adapter)
            hidden = policy.get_base_model().config.get_text_config().hidden_size
        else:
            value_model, score_head = self._load_value_model(policy)
            policy.add_module("value_model", value_model.to(device))
            hidden = value_model.config.get_text_config().hidden_size
        head = ValueHead(hidden)
        if score_head is not None:  # InstructGPT: the critic starts as the RM
            with torch.no_grad():
                head.summary.weight.copy_(score_head.weight.float())
                if score_head.bias is not None:
                    head.summary.bias.copy_(score_head.bias.float())
        policy.add_module("value_head", head.to(device))
        self._trainable = [p for p in policy.parameters() if p.requires_grad]
        if self._critic_mode == "adapter":
            self._trainable += [p for n, p in policy.named_parameters() if f".{self.args.critic_adapter_name}." in n]
        for p in self._trainable:
            p.requires_grad_(True)

    def _load_value_model(self, policy: nn.Module) -> tuple[nn.Module, nn.Linear | None]:
        """The separate critic's body, and the scalar head of a sequence-classification checkpoint (a reward model) to
        start the value head from (None for a plain LM / backbone)."""
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

        self._critic_mode = "model"
        path = self.args.value_model_path or policy.config._name_or_path
        config = AutoConfig.from_pretrained(path)
        vocab, policy_vocab = config.get_text_config().vocab_size, policy.config.get_text_config().vocab_size
        if vocab != policy_vocab:
            raise ValueError(
                f"value model {path!r} has vocab_size {vocab} but the policy has {policy_vocab}: the critic scores the "
                "policy's tokens, so it must share the policy's tokenizer (an encoder RM with its own tokenizer can "
                "be the reward through trl_ext.TextRewardModel, not the critic).")
        if any(a.endswith("ForSequenceClassification") for a in config.architectures or []) and config.num_labels == 1:
            rm = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32)
            heads = [m for m in rm.children() if isinstance(m, nn.Linear) and m.out_features == 1]
            return _backbone(rm), (heads[-1] if heads else None)
        return AutoModel.from_pretrained(path, dtype=torch.float32), None

    @contextlib.contextmanager
    def _critic_active(self, policy: nn.Module):
        """Run with the critic adapter active. PEFT's `set_adapter` freezes the inactive adapter: undo that after."""
        policy.set_adapter(self.args.critic_adapter_name)
        try:
            yield
        finally:
            policy.set_adapter(self._policy_adapter)
            for p in self._trainable:
                p.requires_grad_(True)

    def _values(self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                logits_to_keep: int) -> torch.Tensor:
        """V(s_t) for each completion token a_t: the head on the hidden state that predicts a_t ([B, logits_to_keep]).

        Runs without gradient checkpointing: a checkpointed segment is recomputed in backward under whichever adapter
        is active then (the policy's), which would be wrong for the critic.
        """
        policy = self.accelerator.unwrap_model(model)
        if self._critic_mode == "adapter":
            with self._critic_active(policy), disable_gradient_checkpointing(
                    policy, self.args.gradient_checkpointing_kwargs):
                hidden = _backbone(policy.get_base_model())(input_ids=input_ids, attention_mask=attention_mask)
        else:
            hidden = policy.value_model(input_ids=input_ids, attention_mask=attention_mask)
        hidden = hidden.last_hidden_state
        return policy.value_head(hidden[:, -logits_to_keep - 1:-1])

    # ---------------------------------------------------------------------------------------------------- rollout
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._rollout_rewards_per_func = rewards_per_func
        return rewards_per_func

    def _scores(self, completion_ids: torch.Tensor, n_local: int) -> torch.Tensor:
        """This process's sequence scores: weighted sum of the reward functions, clipping, missing-EOS penalty."""
        per_func = self._rollout_rewards_per_func
        weights = self.reward_weights.to(per_func.device)
        scores = (per_func * weights.unsqueeze(0)).nansum(dim=1)
        start = self.accelerator.process_index * n_local
        scores = scores[start:start + n_local].to(completion_ids.device).float()
        if self.args.reward_clip is not None:
            scores = scores.clamp(-self.args.reward_clip, self.args.reward_clip)
        if self.args.missing_eos_penalty is not None:  # after clipping, so the penalty is never clipped away
            # "ended" as TRL counts it (completions/clipped_ratio): an EOS, or a pad token, was generated
            ends = [t for t in (*self.eos_token_ids, self._tokenizer.pad_token_id) if t is not None]
            has_eos = torch.isin(completion_ids, torch.tensor(ends, device=completion_ids.device)).any(1)
            scores = torch.where(has_eos, scores, scores - self.args.missing_eos_penalty)
        return scores

    def _gather_mean(self, total: torch.Tensor, count: torch.Tensor) -> float:
        both = self.accelerator.reduce(torch.stack([total.float(), count.float()]), reduction="sum")
        return (both[0] / both[1].clamp(min=1)).item()

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        prompt_ids, completion_ids = output["prompt_ids"], output["completion_ids"]
        mask = output["completion_mask"].float()
        if "tool_mask" in output:
            mask = mask * output["tool_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        logits_to_keep = completion_ids.size(1)
        chunk = self.args.per_device_train_batch_size
        with torch.no_grad():
            if output.get("old_per_token_logps") is None:  # TRL skips it when one update follows each rollout
                output["old_per_token_logps"], _, _ = self._get_per_token_logps_and_entropies(
                    self.model, input_ids, attention_mask, logits_to_keep, batch_size=chunk)
            values = torch.cat([self._values(self.model, input_ids[i:i + chunk], attention_mask[i:i + chunk],
                                             logits_to_keep) for i in range(0, input_ids.size(0), chunk)])
        old_logps = output["old_per_token_logps"]
        ref_logps = output.get("ref_per_token_logps")
        scores = self._scores(completion_ids, input_ids.size(0))
        rewards, kl = ppo_math.per_token_rewards(
            scores, old_logps, ref_logps if ref_logps is not None else old_logps, mask, self.beta)
        if self.args.whiten_rewards:
            rewards = ppo_math.masked_whiten(rewards, mask, shift_mean=False)
        advantages, returns = ppo_math.gae(rewards.float(), values.float(), mask, self.args.gamma, self.args.lam)
        advantages = ppo_math.masked_whiten(advantages, mask)
        output.update(advantages=advantages, returns=returns, values=values.float(), ppo_mask=mask)

        metrics = self._metrics[mode]
        n = torch.tensor(float(mask.size(0)), device=mask.device)
        tokens = mask.sum()
        seq_kl = kl.sum(1)
        metrics["objective/scores"].append(self._gather_mean(scores.sum(), n))
        metrics["objective/kl"].append(self._gather_mean(seq_kl.sum(), n))
        metrics["objective/non_score_reward"].append(self._gather_mean(-self.beta * seq_kl.sum(), n))
        metrics["objective/rlhf_reward"].append(self._gather_mean((scores - self.beta * seq_kl).sum(), n))
        metrics["ppo/returns_mean"].append(self._gather_mean((returns * mask).sum(), tokens))
        metrics["ppo/values_mean"].append(self._gather_mean((values * mask).sum(), tokens))
        metrics["ppo/explained_variance"].append(
            ppo_math.explained_variance(values.float(), returns, mask).item())
        if mode == "train":
            self._ppo_stopped = False
            if ref_logps is not None and self._kl_estimator == "full":
                self._record_full_kl(output)
            elif ref_logps is not None:
                self._record_kl(self._gather_mean(kl.sum(), tokens), mask)
        return output

    # ------------------------------------------------------------------------------------------------------- loss
    def _compute_loss(self, model, inputs):
        mode = "train" if self.model.training else "eval"
        completion_ids = inputs["completion_ids"]
        input_ids = torch.cat([inputs["prompt_ids"], completion_ids], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        logits_to_keep = completion_ids.size(1)
        mask = inputs["ppo_mask"]
        logps, entropies, _ = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, compute_entropy=True)
        values = self._values(model, input_ids, attention_mask, logits_to_keep)
        pg_loss, pg_stats = ppo_math.policy_loss(
            logps, inputs["old_per_token_logps"], inputs["advantages"], mask, self.args.epsilon)
        vf_loss, vf_stats = ppo_math.value_loss(
            values.float(), inputs["values"], inputs["returns"], mask, self.args.cliprange_value)
        entropy = ppo_math.masked_mean(entropies, mask)
        loss = pg_loss + self.args.vf_coef * vf_loss - self.args.entropy_coef * entropy
        if mode == "train":
            loss = loss / self.current_gradient_accumulation_steps

        metrics = self._metrics[mode]
        stats = torch.stack([pg_loss.detach(), vf_loss.detach(), pg_stats["clipfrac"], vf_stats["value_clipfrac"],
                             pg_stats["approx_kl"], entropy.detach(), pg_stats["ratio"]])
        stats = self.accelerator.reduce(stats, reduction="mean").tolist()
        for name, value in zip(("ppo/policy_loss", "ppo/value_loss", "ppo/clipfrac", "ppo/value_clipfrac",
                                "ppo/approx_kl", "objective/entropy", "ppo/ratio"), stats):
            metrics[name].append(value)
        if mode == "train" and self.args.target_kl is not None and stats[4] > self.args.target_kl:
            self._ppo_stopped = True  # same decision on every rank: approx_kl was averaged over processes
        return loss

    def training_step(self, model, inputs, num_items_in_batch):
        """TRL's step, with early stopping: the mini-batch whose approx-KL(π_old‖π) exceeds `target_kl` and the rest of
        its rollout's mini-batch steps change nothing (their gradients are dropped or never computed; the optimizer
        skips parameters without a gradient), as in Spinning Up's PPO."""
        generate_every = self.args.steps_per_generation * self.num_iterations
        stopped = self._ppo_stopped
        if stopped and self._step % generate_every != 0:
            self._step += 1
            self._metrics["train"]["ppo/skipped_updates"].append(1.0)
            return torch.zeros((), device=self.accelerator.device)
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self._ppo_stopped and not stopped:  # this mini-batch went past target_kl: drop its update as well
            for group in self.optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
            self._metrics["train"]["ppo/skipped_updates"].append(1.0)
        return loss

    # --------------------------------------------------------------------------------------------- checkpointing
    def _critic_state(self) -> dict[str, torch.Tensor]:
        policy = self.accelerator.unwrap_model(self.model)
        return {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()
                if k.startswith(("value_head.", "value_model."))}

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Trainer's save (PEFT writes the policy and critic adapters), minus our critic modules, which go to
        `value_head.safetensors` so the saved policy loads as a plain model/adapter."""
        from safetensors.torch import save_file

        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if state_dict is not None:
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith(("value_head.", "value_model."))}
        elif self._critic_mode == "model":
            policy = self.accelerator.unwrap_model(self.model)
            state_dict = {k: v for k, v in policy.state_dict().items()
                          if not k.startswith(("value_head.", "value_model."))}
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            save_file(self._critic_state(), os.path.join(output_dir, CRITIC_FILE))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Trainer's load (which reloads the critic adapter as frozen), then the value head and trainable flags."""
        from safetensors.torch import load_file

        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, CRITIC_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing: the checkpoint has no critic (value head) to resume from.")
        policy = self.accelerator.unwrap_model(model if model is not None else self.model)
        missing = policy.load_state_dict(load_file(path), strict=False)
        if missing.unexpected_keys:
            raise ValueError(f"{path} holds weights this critic does not have: {missing.unexpected_keys[:5]}")
        if self._critic_mode == "adapter":
            policy.set_adapter(self._policy_adapter)
        for p in self._trainable:
            p.requires_grad_(True)
