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
import logging
import os
from collections.abc import Callable

import torch
import trl
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict
from peft import PeftConfig, PeftModel
from torch import nn
from transformers import (
    BitsAndBytesConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    ProcessorMixin,
    TrainerCallback,
)

from .. import _trl_compat as compat
from .. import ppo_math
from ..modeling_value_head import ValueHead, backbone
from .online_rl import OnlineRLTrainerMixin
from .ppo_config import PPOConfig

RewardFunc, RolloutFunc, EnvironmentFactory = compat.online_init_types()  # TRL's parameter types

logger = logging.getLogger(__name__)

_SEQUENCE_LEVEL = ("grpo",)  # loss_type values that average each completion first (see GRPO_FIELDS)
CRITIC_FILE = "value_head.safetensors"  # value head (+ separate value model) weights in every checkpoint
ROLLOUT_FILE = "rollout_state_rank{rank}.pt"  # a checkpoint saved inside a rollout: the buffer and its position


class PPOTrainer(OnlineRLTrainerMixin, trl.GRPOTrainer):
    """PPO with a critic, GAE and KL-in-reward, as a subclass of [`trl.GRPOTrainer`] (see the module docstring for why).

    The critic is, by default, a second LoRA adapter (`critic_adapter_name`) on the policy's own base plus a
    [`ValueHead`]: a QLoRA run keeps one 4-bit copy of the base for the policy (adapter "default"), the reference
    (adapters disabled) and the critic. With `value_model_path` (or a non-PEFT policy) the critic is a separate
    backbone that must share the policy's tokenizer. The value head (and a separate value model) are registered as
    submodules of the policy model, so the Trainer's optimizer, DDP wrapping and gradient clipping cover them; when
    that model is an object the user passed in, a warning names what was added to it.

    Overrides, each extending TRL's method:

    * `__init__` (the signature of TRL's `GRPOTrainer.__init__`, `args` a [`PPOConfig`]): the online trainers'
      sequence ([`OnlineRLTrainerMixin`]: checks, TRL's `__init__`, the KL controller), then the critic.
    * `_calculate_rewards`: TRL's, keeping the per-function rewards (TRL turns them into group advantages, PPO needs
      the scores).
    * `_generate_and_score_completions`: TRL's rollout (generation, old and reference log-probs, rewards), then the
      critic's values, per-token rewards, GAE and whitened per-token advantages.
    * `_compute_loss`: replaced by PPO's clipped policy loss + vf_coef·clipped value loss − entropy bonus.
    * `training_step`: TRL's, skipped for the rest of a rollout once `target_kl` is exceeded.
    * `_save` / `_load_from_checkpoint`: also write/read the value head (TRL/PEFT save the critic adapter).
    * `_save_checkpoint`: inside a rollout, also the rollout buffer and position, so that a resumed run is exact.
    """

    def __init__(
        self,
        model: str | PreTrainedModel | PeftModel,
        reward_funcs: RewardFunc | list[RewardFunc] | None = None,
        args: PPOConfig | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset
        | IterableDataset
        | DatasetDict
        | IterableDatasetDict
        | dict[str, Dataset | IterableDataset]
        | None = None,
        processing_class: PreTrainedTokenizerBase | ProcessorMixin | None = None,
        reward_processing_classes: PreTrainedTokenizerBase | list[PreTrainedTokenizerBase] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        quantization_config: BitsAndBytesConfig | None = None,
        peft_config: PeftConfig | None = None,
        tools: list[Callable] | None = None,
        rollout_func: RolloutFunc | None = None,
        environment_factory: EnvironmentFactory | dict[str, EnvironmentFactory] | None = None,
    ):
        self._init_online_trainer(
            PPOConfig, "PPO", model, args, require_config=True,
            reward_funcs=reward_funcs, train_dataset=train_dataset, eval_dataset=eval_dataset,
            processing_class=processing_class, reward_processing_classes=reward_processing_classes, callbacks=callbacks,
            optimizers=optimizers, quantization_config=quantization_config, peft_config=peft_config,
            tools=tools, rollout_func=rollout_func, environment_factory=environment_factory,
        )
        self._setup_critic()
        if not isinstance(model, str):  # the user's own model object now holds the critic: say so
            added = ([f"adapter {self.args.critic_adapter_name!r}"] if self._critic_mode == "adapter"
                     else ["module 'value_model'"]) + ["module 'value_head'"]
            logger.warning(
                "PPOTrainer adds its critic to the policy model passed in: %s (checkpoints keep the critic apart from "
                "the policy: %s%s). To use the model without them afterwards: %s.",
                " and ".join(added), CRITIC_FILE,
                ", and PEFT's folder of the adapter" if self._critic_mode == "adapter" else "",
                (f"model.delete_adapter({self.args.critic_adapter_name!r}); del model.value_head"
                 if self._critic_mode == "adapter" else "del model.value_model, model.value_head"))
        self._rollout_rewards_per_func = None
        self._ppo_stopped = False

    # ----------------------------------------------------------------------------------------------------- critic
    def _setup_critic(self) -> None:
        from peft import PeftModel

        policy = self.model
        device = next(p for p in policy.parameters()).device
        policy_dtypes = {p.dtype for p in policy.parameters() if p.requires_grad}
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
        critic = [p for n, p in policy.named_parameters() if n.startswith(("value_head.", "value_model."))]
        if self._critic_mode == "adapter":
            critic += [p for n, p in policy.named_parameters() if f".{self.args.critic_adapter_name}." in n]
        if (self._zero3() or self.is_fsdp_enabled) and len(policy_dtypes) == 1:
            # ZeRO-3 keeps the trainable parameters of a group in one flat buffer of one dtype (DeepSpeed's
            # `zero.utils.defragment` asserts it), and FSDP2 wants one dtype among a unit's trainable parameters.
            # DeepSpeed casts every parameter to bf16 itself only when the base was not created under `zero.Init`; a
            # base loaded while a ZeRO-3 TrainingArguments exists was, keeps its bf16, and TRL gives its adapter that
            # dtype (as it casts a quantised base's adapter to bf16), while peft's critic adapter and our head are
            # fp32: the critic takes the policy adapter's dtype.
            (dtype,) = policy_dtypes
            for p in critic:
                p.data = p.data.to(dtype)
        self._trainable = [p for p in policy.parameters() if p.requires_grad]
        if self._critic_mode == "adapter":
            self._trainable += [p for n, p in policy.named_parameters() if f".{self.args.critic_adapter_name}." in n]
        for p in self._trainable:
            p.requires_grad_(True)

    def _zero3(self) -> bool:
        """Whether DeepSpeed ZeRO-3 partitions the parameters of this run."""
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None) if self.is_deepspeed_enabled else None
        return plugin is not None and plugin.zero_stage == 3

    def _load_value_model(self, policy: nn.Module) -> tuple[nn.Module, nn.Linear | None]:
        """The separate critic's body, and the scalar head of a sequence-classification checkpoint (a reward model) to
        start the value head from (None for a plain LM / backbone)."""
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

        self._critic_mode = "model"
        path = self.args.value_model_path or policy.config.name_or_path
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
            return backbone(rm), (heads[-1] if heads else None)
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
            with self._critic_active(policy), compat.checkpointing_disabled(
                    policy, self.args.activation_checkpointing_kwargs):
                hidden = backbone(policy.get_base_model())(input_ids=input_ids, attention_mask=attention_mask)
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
        if self.args.reward_clip_range is not None:
            scores = scores.clamp(*self.args.reward_clip_range)
        if self.args.missing_eos_penalty is not None:  # after clipping, so the penalty is never clipped away
            # "ended" as TRL counts it (completions/clipped_ratio): an EOS, or a pad token, was generated
            ends = [t for t in (*self.eos_token_ids, compat.online_tokenizer(self).pad_token_id) if t is not None]
            has_eos = torch.isin(completion_ids, torch.tensor(ends, device=completion_ids.device)).any(1)
            scores = torch.where(has_eos, scores, scores - self.args.missing_eos_penalty)
        return scores

    def _gather_mean(self, total: torch.Tensor, count: torch.Tensor) -> float:
        both = self.accelerator.reduce(torch.stack([total.float(), count.float()]), reduction="sum")
        return (both[0] / both[1].clamp(min=1)).item()

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        metrics = compat.metrics(self, mode)
        if self.num_generations == 1 and "frac_reward_zero_std" in metrics:
            del metrics["frac_reward_zero_std"]  # a group of one has zero spread by definition: a constant 1.0
        prompt_ids, completion_ids = output["prompt_ids"], output["completion_ids"]
        mask = output["completion_mask"].float()
        if "tool_mask" in output:
            mask = mask * output["tool_mask"]
        # As TRL's GRPO: a completion that no reward function scored (all None/NaN) carries no learning signal; it
        # is left out of the losses, the advantages' statistics and the KL measurement.
        start = self.accelerator.process_index * mask.size(0)
        unscored = torch.isnan(self._rollout_rewards_per_func[start:start + mask.size(0)]).all(dim=1)
        mask = mask * (~unscored).to(mask.device, mask.dtype).unsqueeze(1)
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        logits_to_keep = completion_ids.size(1)
        chunk = self.args.per_device_train_batch_size
        with torch.no_grad():
            if output.get("old_per_token_logps") is None:  # TRL skips it when one update follows each rollout
                output["old_per_token_logps"], _, _ = compat.per_token_logps_and_entropies(
                    self, self.model, input_ids, attention_mask, logits_to_keep, batch_size=chunk)
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

        scored = (~unscored).to(scores.device, scores.dtype)
        n = scored.sum()
        tokens = mask.sum()
        seq_kl = kl.sum(1)
        metrics["objective/scores"].append(self._gather_mean((scores * scored).sum(), n))
        metrics["objective/kl"].append(self._gather_mean(seq_kl.sum(), n))
        metrics["objective/non_score_reward"].append(self._gather_mean(-self.beta * seq_kl.sum(), n))
        metrics["objective/rlhf_reward"].append(self._gather_mean(((scores - self.beta * seq_kl) * scored).sum(), n))
        metrics["ppo/returns_mean"].append(self._gather_mean((returns * mask).sum(), tokens))
        metrics["ppo/values_mean"].append(self._gather_mean((values * mask).sum(), tokens))
        metrics["ppo/unscored"].append(self.accelerator.reduce(unscored.sum().float(), reduction="sum").item())
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
        if mode == "train" and self._ppo_stopped:  # past target_kl earlier in this rollout: no forward, no update
            return torch.zeros((), device=self.accelerator.device, requires_grad=True)
        completion_ids = inputs["completion_ids"]
        input_ids = torch.cat([inputs["prompt_ids"], completion_ids], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        logits_to_keep = completion_ids.size(1)
        mask = inputs["ppo_mask"]
        logps, entropies, aux_loss = compat.per_token_logps_and_entropies(
            self, model, input_ids, attention_mask, logits_to_keep, compute_entropy=True,
            compute_aux_loss=self.aux_loss_enabled)
        values = self._values(model, input_ids, attention_mask, logits_to_keep)
        level = "sequence" if self.args.loss_type in _SEQUENCE_LEVEL else "token"
        # vLLM rollouts: weigh each token by TRL's sampler/trainer importance-sampling ratio, as GRPO does
        is_ratio = inputs.get("importance_sampling_ratio") if (
            self.use_vllm and self.args.vllm_importance_sampling_correction) else None
        pg_loss, pg_stats = ppo_math.policy_loss(
            logps, inputs["old_per_token_logps"], inputs["advantages"], mask, self.args.epsilon,
            clip_eps_high=self.args.epsilon_high, token_weight=is_ratio, level=level)
        vf_loss, vf_stats = ppo_math.value_loss(
            values.float(), inputs["values"], inputs["returns"], mask, self.args.cliprange_value, level=level)
        entropy = ppo_math.aggregate(entropies, mask, level)
        loss = pg_loss + self.args.vf_coef * vf_loss - self.args.entropy_coef * entropy
        if mode == "train":
            loss = loss / self.current_gradient_accumulation_steps

        metrics = compat.metrics(self, mode)
        if self.aux_loss_enabled:  # MoE router load balancing, scaled for accumulation as GRPO scales it
            loss = loss + self.router_aux_loss_coef * aux_loss / (
                self.current_gradient_accumulation_steps if mode == "train" else 1.0)
            metrics["aux_loss"].append(self.accelerator.gather_for_metrics(aux_loss.detach()).mean().item())
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
        its rollout's mini-batch steps change nothing (their gradients are dropped, or never computed: `_compute_loss`
        skips the forward; the optimizer skips parameters without a gradient), as in Spinning Up's PPO. The next
        rollout (TRL decides when) starts fresh."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self._ppo_stopped:
            for group in self.optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
            compat.metrics(self, "train")["ppo/skipped_updates"].append(1.0)
        return loss

    # --------------------------------------------------------------------------------------------- checkpointing
    def _critic_state(self, state_dict: dict | None = None) -> dict[str, torch.Tensor]:
        """The value head (and separate value model) weights: from `state_dict` when the Trainer gathered one (under
        ZeRO-3 the module's own state dict holds empty partitions), else from the module."""
        if state_dict is None:
            state_dict = self.accelerator.unwrap_model(self.model).state_dict()
        return {k: v.detach().cpu().contiguous() for k, v in state_dict.items()
                if k.startswith(("value_head.", "value_model."))}

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Trainer's save (PEFT writes the policy and critic adapters), minus our critic modules, which go to
        `value_head.safetensors` so the saved policy loads as a plain model/adapter."""
        from safetensors.torch import save_file

        output_dir = output_dir if output_dir is not None else self.args.output_dir
        critic = self._critic_state(state_dict) if state_dict is not None else None
        if state_dict is not None:
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith(("value_head.", "value_model."))}
        elif self._critic_mode == "model":
            policy = self.accelerator.unwrap_model(self.model)
            state_dict = {k: v for k, v in policy.state_dict().items()
                          if not k.startswith(("value_head.", "value_model."))}
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            save_file(critic if critic else self._critic_state(), os.path.join(output_dir, CRITIC_FILE))

    def _rollout_file(self, directory: str) -> str:
        return os.path.join(directory, ROLLOUT_FILE.format(rank=self.accelerator.process_index))

    def _save_checkpoint(self, model, trial):
        """TRL's checkpoint, plus (inside a rollout) this process's rollout buffer and position: a run resumed from
        it finishes the rollout's remaining mini-batch updates on the same completions, exactly as without the
        interruption, instead of generating a new rollout at once."""
        super()._save_checkpoint(model, trial)
        buffer = compat.rollout_buffer(self)
        if buffer is None:
            return
        step = compat.micro_step(self)  # at a rollout boundary TRL generates anew whatever the buffer holds
        cpu = [{k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in part.items()} for part in buffer]
        torch.save({"step": step, "buffer": cpu, "stopped": self._ppo_stopped},
                   self._rollout_file(compat.checkpoint_dir(self, trial)))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Trainer's load (which reloads the critic adapter as frozen), then the value head and trainable flags, and
        the rollout buffer of a checkpoint saved inside a rollout."""
        from safetensors.torch import load_file

        super()._load_from_checkpoint(resume_from_checkpoint, model)
        rollout = self._rollout_file(resume_from_checkpoint)
        if os.path.isfile(rollout):
            state = torch.load(rollout, weights_only=False)
            device = self.accelerator.device
            compat.set_rollout_buffer(self, [{k: v.to(device) if isinstance(v, torch.Tensor) else v
                                              for k, v in part.items()} for part in state["buffer"]])
            compat.set_micro_step(self, state["step"])
            self._ppo_stopped = state["stopped"]
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
