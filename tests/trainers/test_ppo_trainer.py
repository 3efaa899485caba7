"""PPOTrainer (critic, GAE, KL-in-reward) on tiny random Llamas (CPU)."""

from __future__ import annotations

import json
import math
import os
import subprocess

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig

import trl_ext
from tests.helpers import REPO_ROOT, record_exact_rollout_kl, reward_a, reward_varied

PPO_METRICS = ("objective/scores", "objective/kl", "objective/entropy", "ppo/policy_loss", "ppo/value_loss",
               "ppo/clipfrac", "ppo/value_clipfrac", "ppo/approx_kl", "ppo/explained_variance", "ppo/returns_mean",
               "kl_ctl/beta", "kl_ctl/kl")


def _prompts(n=64):
    return Dataset.from_list([{"prompt": f"say {w} please"} for w in ["abc", "dog", "cat", "zoo"] * (n // 4)])


def _args(out, **overrides):
    base = dict(output_dir=str(out), per_device_train_batch_size=8, max_completion_length=6, max_steps=4,
                learning_rate=1e-2, beta=0.05, num_iterations=2, steps_per_generation=2, bf16=False, report_to=[],
                save_strategy="no", logging_steps=1, seed=0, disable_tqdm=True, activation_checkpointing=False)
    base.update(overrides)
    return trl_ext.PPOConfig(**base)


def _lora(r=4):
    return LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear", task_type="CAUSAL_LM")


def _rows(trainer, key):
    return [row for row in trainer.state.log_history if key in row]


# ------------------------------------------------------------------------------------------------------------ config
def test_config_defaults_and_aliases(tmp_path, monkeypatch):
    from trl_ext.trainer import config_utils

    monkeypatch.setattr(config_utils, "_WARNED_ALIASES", set())
    with pytest.warns(FutureWarning) as caught:
        args = trl_ext.PPOConfig(output_dir=str(tmp_path), bf16=False, num_ppo_epochs=3, num_mini_batches=2,
                                 reward_clip=1.5)
        trl_ext.PPOConfig(output_dir=str(tmp_path), bf16=False, num_ppo_epochs=3, num_mini_batches=2, reward_clip=1.5)
    alias_warnings = [str(w.message) for w in caught if "deprecated alias" in str(w.message)]
    assert sorted(alias_warnings) == sorted([  # once each, naming the new option
        f"PPOConfig.{old} is a deprecated alias of PPOConfig.{new}; set {new} instead (the old name will be removed)."
        for old, new in [("num_ppo_epochs", "num_iterations"), ("num_mini_batches", "steps_per_generation"),
                         ("reward_clip", "reward_clip_range")]])
    assert args.num_generations == 1  # no groups needed: the critic is the baseline
    assert args.num_iterations == 3 and args.steps_per_generation == 2
    assert args.reward_clip_range == (-1.5, 1.5)  # TRL RLOOConfig's option, with its meaning
    assert args.beta == 0.05 and args.kl_target == 6.0 and args.kl_target_unit == "sequence"


@pytest.mark.parametrize("bounds", [(1.0, -1.0), (0.0,), "ab", (0.0, float("nan")), (True, 2.0)])
def test_reward_clip_range_refuses_what_is_not_min_max(tmp_path, bounds):
    with pytest.raises(ValueError, match=r"reward_clip_range=.* must be \(min, max\)"):
        trl_ext.PPOConfig(output_dir=str(tmp_path), bf16=False, reward_clip_range=bounds)


def test_reward_clip_alias_contradicting_the_range_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"reward_clip=1.0 contradicts reward_clip_range=\(0.0, 2.0\)"):
        trl_ext.PPOConfig(output_dir=str(tmp_path), bf16=False, reward_clip=1.0, reward_clip_range=(0.0, 2.0))


@pytest.mark.parametrize("overrides, match", [
    ({"gamma": 1.5}, "gamma must be in"),
    ({"lam": -0.1}, "lam must be in"),
    ({"vf_coef": -1.0}, "vf_coef must be >= 0"),
    ({"target_kl": -0.1}, "target_kl must be >= 0"),
    ({"num_ppo_epochs": 0}, "PPO epochs"),
    ({"num_mini_batches": 2, "steps_per_generation": 4}, "num_mini_batches=2 contradicts"),
    ({"use_adaptive_entropy": True}, "use_adaptive_entropy"),
    ({"ddp_find_unused_parameters": True}, "ddp_find_unused_parameters=True is not supported"),
    ({"kl_control": "adaptive", "beta": 0.0}, "beta > 0"),
])
def test_config_rejects_bad_values(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        trl_ext.PPOConfig(output_dir=str(tmp_path), bf16=False, **overrides)


def test_value_model_with_another_tokenizer_is_rejected(tiny_llama_causal_dir, tiny_bert_dir, tmp_path):
    with pytest.raises(ValueError, match="must share the policy's tokenizer"):
        trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=reward_a, train_dataset=_prompts(),
                           args=_args(tmp_path, value_model_path=tiny_bert_dir))


def test_value_model_initialised_from_a_decoder_reward_model(tiny_llama_causal_dir, tiny_llama_seqcls_dir, tmp_path):
    """InstructGPT's critic: a separate model started from the RM (same tokenizer), value head = the RM's score head."""
    from transformers import AutoModelForSequenceClassification

    trainer = trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=reward_varied, train_dataset=_prompts(),
                                 peft_config=_lora(), args=_args(tmp_path, value_model_path=tiny_llama_seqcls_dir,
                                                                 max_steps=2))
    policy = trainer.model
    assert trainer._critic_mode == "model" and "critic" not in policy.peft_config
    rm = AutoModelForSequenceClassification.from_pretrained(tiny_llama_seqcls_dir)
    assert torch.equal(policy.value_head.summary.weight, rm.score.weight)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    values = trainer._values(policy, ids, torch.ones_like(ids), logits_to_keep=3)
    with torch.no_grad():
        rm_scores = rm.score(rm.model(input_ids=ids).last_hidden_state)[0, :, 0]
    assert torch.allclose(values[0], rm_scores[2:5], atol=1e-5)  # V(s_t) = the RM's score of the prefix before a_t
    trainer.train()
    assert not torch.equal(policy.value_head.summary.weight, rm.score.weight)
    assert all(p.requires_grad for p in policy.value_model.parameters())


# ---------------------------------------------------------------------------------------------------------- learning
def test_reward_rises_on_a_learnable_rule_reward(tiny_llama_causal_dir, tmp_path):
    """Full fine-tune with a separate critic (a copy of the policy's model): reward for emitting 'a' goes up."""
    torch.manual_seed(0)
    args = _args(tmp_path, per_device_train_batch_size=16, max_completion_length=8, max_steps=80, beta=0.01,
                 lr_scheduler_type="constant", logging_steps=4)
    trainer = trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=reward_a, args=args,
                                 train_dataset=_prompts(256))
    assert trainer._critic_mode == "model" and hasattr(trainer.model, "value_model")
    trainer.train()
    scores = [row["objective/scores"] for row in _rows(trainer, "objective/scores")]
    assert len(scores) == 20
    first, last = sum(scores[:3]) / 3, sum(scores[-3:]) / 3
    assert first < 0.1 and last > 0.5, scores  # 1/|vocab| ~ 0.01 at random init
    last_row = trainer.state.log_history[-2]
    for name in PPO_METRICS:
        assert name in last_row and math.isfinite(last_row[name]), name
    assert last_row["ppo/explained_variance"] > 0  # the critic predicts the returns better than a constant


# ------------------------------------------------------------------------------------------------ shared-base critic
def test_shared_base_critic_trains_adapters_and_head_only(tiny_llama_causal_dir, tmp_path):
    trainer = trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=reward_varied, args=_args(tmp_path),
                                 train_dataset=_prompts(), peft_config=_lora())
    policy = trainer.model
    assert trainer._critic_mode == "adapter" and trainer.ref_model is None
    assert set(policy.peft_config) == {"default", "critic"} and not hasattr(policy, "value_model")
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or n.startswith("value_head.") for n in trainable)
    assert any(".critic." in n for n in trainable) and any(".default." in n for n in trainable)
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    trainer.train()
    after = dict(policy.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed <= trainable
    assert any("lora_B.default" in n for n in changed) and any("lora_B.critic" in n for n in changed)
    assert {"value_head.summary.weight", "value_head.summary.bias"} <= changed
    assert policy.active_adapter == "default"
    assert all(p.requires_grad for n, p in policy.named_parameters() if n in trainable)  # flags restored

    # the critic adapter never leaks into the policy: logits with it deleted are unchanged; reference = base
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        policy_logits = policy(input_ids=ids).logits
        with policy.disable_adapter():
            ref_logits = policy(input_ids=ids).logits
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_causal_dir)
    with torch.no_grad():
        assert torch.allclose(ref_logits, base(input_ids=ids).logits, atol=1e-5)
    policy.delete_adapter("critic")
    with torch.no_grad():
        assert torch.allclose(policy(input_ids=ids).logits, policy_logits, atol=1e-6)


def test_critic_runs_without_activation_checkpointing_and_it_is_restored(tiny_llama_causal_dir, tmp_path):
    # A checkpointed segment is recomputed in backward under the adapter active then (the policy's), so the critic's
    # forward turns checkpointing off, and the policy's forward keeps it.
    trainer = trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=reward_varied, train_dataset=_prompts(),
                                 args=_args(tmp_path, max_steps=2, activation_checkpointing=True,
                                            activation_checkpointing_kwargs={"use_reentrant": False}),
                                 peft_config=_lora())
    policy = trainer.model
    seen = []
    original = trainer._values

    def values(*args, **kwargs):
        seen.append(policy.is_activation_checkpointing)  # before the critic's forward: on
        return original(*args, **kwargs)

    trainer._values = values
    before = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_B.critic" in n}
    trainer.train()
    assert seen and all(seen) and policy.is_activation_checkpointing
    assert any(not torch.equal(before[n], p) for n, p in policy.named_parameters() if n in before)


def test_qlora_ppo_one_4bit_base(tiny_llama_causal_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    from transformers import AutoTokenizer
    from trl import ModelConfig

    from trl_ext import load_policy
    from trl_ext.peft_utils import is_4bit

    model, peft_config = load_policy(ModelConfig(model_name_or_path=tiny_llama_causal_dir, load_in_4bit=True,
                                                 use_peft=True, lora_r=4, lora_alpha=8,
                                                 lora_target_modules=["all-linear"], dtype="float32"))
    trainer = trl_ext.PPOTrainer(model, reward_funcs=reward_varied, args=_args(tmp_path, max_steps=3),
                                 train_dataset=_prompts(), peft_config=peft_config,
                                 processing_class=AutoTokenizer.from_pretrained(tiny_llama_causal_dir))
    policy = trainer.model
    assert is_4bit(policy) and trainer.ref_model is None and not hasattr(policy, "value_model")
    # the 4-bit weights as raw bytes (load_policy stores them in the compute dtype; as floats some read as NaN)
    packed = {n: p.detach().view(torch.uint8).clone() for n, p in policy.named_parameters()
              if type(p).__name__ == "Params4bit"}
    assert packed  # one 4-bit base, shared by policy, reference and critic
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert all(".lora_" in n or n.startswith("value_head.") for n in trainable)
    lora_b = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_B" in n}
    trainer.train()
    params = dict(policy.named_parameters())
    assert all(torch.equal(p, params[n].detach().view(torch.uint8)) for n, p in packed.items())
    changed = {n for n, p in lora_b.items() if not torch.equal(p, params[n])}
    assert any(".default." in n for n in changed) and any(".critic." in n for n in changed)
    assert all(math.isfinite(row["ppo/value_loss"]) for row in _rows(trainer, "ppo/value_loss"))


# ------------------------------------------------------------------------------------------------------ rewards
def test_bert_cls_reward_model_with_another_tokenizer(tiny_llama_causal_dir, tiny_bert_dir, tmp_path):
    from transformers import AutoTokenizer

    from trl_ext import BertClsRewardModel, TextRewardModel

    rm = TextRewardModel(BertClsRewardModel.from_encoder(tiny_bert_dir), AutoTokenizer.from_pretrained(tiny_bert_dir),
                         max_length=32, device="cpu", name="bert_rm")
    trainer = trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=rm, args=_args(tmp_path, max_steps=2),
                                 train_dataset=_prompts(), peft_config=_lora())
    trainer.train()
    assert rm.num_scored == 16  # one rollout: 2 mini-batches of 8 completions, reused for 2 epochs (4 steps > 2)
    row = _rows(trainer, "rewards/bert_rm/mean")[0]
    assert row["objective/scores"] == pytest.approx(row["rewards/bert_rm/mean"], rel=1e-5, abs=1e-7)


def test_reward_clip_then_missing_eos_penalty(tiny_llama_causal_dir, tmp_path):
    def five(completions, **kwargs):
        return [5.0] * len(completions)

    trainer = trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=five, train_dataset=_prompts(),
                                 args=_args(tmp_path, max_steps=1, num_iterations=1, steps_per_generation=1,
                                            max_completion_length=3, reward_clip_range=(-1.0, 1.0),
                                            missing_eos_penalty=0.5))
    trainer.train()
    row = _rows(trainer, "objective/scores")[0]
    # every completion is clipped to 1.0; those cut at max_completion_length (no EOS) lose 0.5
    assert row["objective/scores"] == pytest.approx(1.0 - 0.5 * row["completions/clipped_ratio"])


def test_conversational_prompts_and_a_trl_reward_model(tiny_llama_causal_dir, tiny_llama_seqcls_dir, tmp_path):
    """Conversational prompt-only data (chat template applied by TRL) and a TRL-style RM given by path, next to a
    rule reward on the message content."""
    from trl_ext.rewards import completion_text

    def says_a(completions, **kwargs):
        return [completion_text(c).count("a") / max(len(completion_text(c)), 1) for c in completions]

    seen = []
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": f"say {w}"}]} for w in ["abc", "dog"] * 16])
    trainer = trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=[says_a, tiny_llama_seqcls_dir],
                                 train_dataset=data, peft_config=_lora(), args=_args(tmp_path, max_steps=1))
    original = trainer._calculate_rewards
    trainer._calculate_rewards = lambda inputs, prompts, completions, ids: (
        seen.extend(completions) or original(inputs, prompts, completions, ids))
    trainer.train()
    assert seen and all(isinstance(c, list) and c[0]["role"] == "assistant" for c in seen)
    row = _rows(trainer, "objective/scores")[0]
    names = [k for k in row if k.startswith("rewards/") and k.endswith("/mean")]
    assert len(names) == 2
    assert row["objective/scores"] == pytest.approx(sum(row[k] for k in names), rel=1e-4, abs=1e-6)


def test_loss_combines_policy_value_and_entropy_terms(tiny_llama_causal_dir, tmp_path):
    trainer = trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=reward_varied, train_dataset=_prompts(),
                                 peft_config=_lora(), args=_args(tmp_path, max_steps=3, vf_coef=0.3,
                                                                 entropy_coef=0.5))
    trainer.train()
    rows = _rows(trainer, "ppo/policy_loss")
    assert len(rows) == 3
    for row in rows:  # loss = policy loss + vf_coef * value loss - entropy_coef * entropy
        expected = row["ppo/policy_loss"] + 0.3 * row["ppo/value_loss"] - 0.5 * row["objective/entropy"]
        assert row["loss"] == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_whiten_rewards_changes_the_returns(tiny_llama_causal_dir, tmp_path):
    def five(completions, **kwargs):
        return [5.0] * len(completions)

    returns = {}
    for whiten in (False, True):
        trainer = trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=five, train_dataset=_prompts(),
                                     args=_args(tmp_path / str(whiten), max_steps=1, whiten_rewards=whiten,
                                                max_completion_length=4))
        trainer.train()
        returns[whiten] = _rows(trainer, "ppo/returns_mean")[0]["ppo/returns_mean"]
    # unwhitened: 5 at the last token, discounted by lambda before it (V = 0 at start); whitened: scaled by 1/std
    assert 3.0 < returns[False] <= 5.0 + 1e-3
    assert returns[True] != pytest.approx(returns[False], rel=0.05)


@pytest.mark.parametrize("lam", [1.0, 0.0])
def test_gamma_and_lam_reach_the_returns(tiny_llama_causal_dir, tmp_path, lam):
    """First rollout: V = 0 and KL = 0, score 5 on the last token. γ = λ = 1 gives return 5 on every token; λ = 0
    gives 5 on the last token only (returns mean = 5 / mean completion length)."""
    def five(completions, **kwargs):
        return [5.0] * len(completions)

    trainer = trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=five, train_dataset=_prompts(),
                                 args=_args(tmp_path, max_steps=1, num_iterations=1, steps_per_generation=1,
                                            max_completion_length=4, gamma=1.0, lam=lam))
    trainer.train()
    row = _rows(trainer, "ppo/returns_mean")[0]
    expected = 5.0 if lam == 1.0 else 5.0 / row["completions/mean_length"]
    assert row["ppo/returns_mean"] == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("field, metric", [("epsilon", "ppo/clipfrac"), ("cliprange_value", "ppo/value_clipfrac")])
def test_clip_ranges_reach_the_losses(tiny_llama_causal_dir, tmp_path, field, metric):
    """A huge clip range never clips; a zero one clips in the epochs after the first update of a rollout."""
    fractions = {}
    for value in (1e6, 0.0):
        trainer = trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=reward_varied, train_dataset=_prompts(),
                                     peft_config=_lora(), args=_args(tmp_path / str(value), **{field: value}))
        trainer.train()
        fractions[value] = [row[metric] for row in _rows(trainer, metric)]
    assert len(fractions[0.0]) == 4 and all(f == 0.0 for f in fractions[1e6])
    assert max(fractions[0.0]) > 0.0


def test_critic_adapter_name(tiny_llama_causal_dir, tmp_path):
    trainer = trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=reward_a, train_dataset=_prompts(),
                                 peft_config=_lora(), args=_args(tmp_path, critic_adapter_name="value_fn"))
    assert set(trainer.model.peft_config) == {"default", "value_fn"}
    assert any(".value_fn." in n for n, p in trainer.model.named_parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="already has an adapter named 'default'"):
        trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=reward_a, train_dataset=_prompts(),
                           peft_config=_lora(), args=_args(tmp_path / "b", critic_adapter_name="default"))


# ------------------------------------------------------------------------------------------------------ KL and stop
def test_kl_in_reward_and_adaptive_beta(tiny_llama_causal_dir, tmp_path):
    trainer = trl_ext.PPOTrainer(
        tiny_llama_causal_dir, reward_funcs=reward_a, train_dataset=_prompts(), peft_config=_lora(),
        args=_args(tmp_path, max_steps=6, num_iterations=1, steps_per_generation=1, beta=0.1, kl_control="adaptive",
                   kl_target=1e-3, kl_horizon=16))
    trainer.train()
    rows = _rows(trainer, "kl_ctl/beta")
    assert len(rows) == 6
    beta = 0.1
    for row in rows:
        assert row["objective/non_score_reward"] == pytest.approx(-beta * row["objective/kl"], rel=1e-4, abs=1e-9)
        assert row["kl_ctl/kl"] == pytest.approx(row["objective/kl"], rel=1e-4, abs=1e-7)
        beta *= 1 + 8 / 16 * max(-0.2, min(0.2, row["kl_ctl/kl"] / 1e-3 - 1))
        assert row["kl_ctl/beta"] == pytest.approx(beta, rel=1e-6)
    assert rows[0]["objective/kl"] == pytest.approx(0.0, abs=1e-6)  # policy = reference before the first update


def test_full_kl_estimator_drives_beta_with_the_exact_kl(tiny_llama_causal_dir, tmp_path):
    """kl_estimator="full" with the shared-base critic: the controller sees the exact KL of each rollout against the
    disabled adapters, while the reward keeps the sampled log-ratio (objective/kl)."""
    torch.manual_seed(0)
    trainer = trl_ext.PPOTrainer(
        tiny_llama_causal_dir, reward_funcs=reward_a, train_dataset=_prompts(), peft_config=_lora(),
        args=_args(tmp_path, max_steps=6, num_iterations=1, steps_per_generation=1, learning_rate=5e-2, beta=0.1,
                   kl_control="adaptive", kl_target=1e-3, kl_horizon=16, kl_estimator="full"))
    hand = record_exact_rollout_kl(trainer)
    trainer.train()
    rows = _rows(trainer, "kl_ctl/beta")
    assert len(hand) == len(rows) == 6
    assert hand[-1] > 1e-4
    beta = 0.1
    for row, kl in zip(rows, hand):
        assert row["kl_ctl/kl"] == pytest.approx(kl, rel=1e-3, abs=1e-6)
        assert row["objective/non_score_reward"] == pytest.approx(-beta * row["objective/kl"], rel=1e-4, abs=1e-9)
        beta *= 1 + 8 / 16 * max(-0.2, min(0.2, kl / 1e-3 - 1))
        assert row["kl_ctl/beta"] == pytest.approx(beta, rel=1e-4)
    # the reward's sampled estimate is a different (noisier) number for the same rollouts
    assert any(abs(row["kl_ctl/kl"] - row["objective/kl"]) > 1e-6 for row in rows[1:])


def test_target_kl_stops_the_rollout_updates(tiny_llama_causal_dir, tmp_path):
    trainer = trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=reward_a, train_dataset=_prompts(),
                                 peft_config=_lora(), args=_args(tmp_path, max_steps=8, target_kl=0.0))
    lora_b = [p for n, p in trainer.model.named_parameters() if "lora_B.default" in n]
    snapshots = []

    class Snap(trl_ext.KLControlCallback.__mro__[1]):  # transformers.TrainerCallback
        def on_step_end(self, args, state, control, **kwargs):
            snapshots.append(torch.cat([p.detach().flatten() for p in lora_b]).clone())

    trainer.add_callback(Snap())
    start = torch.cat([p.detach().flatten() for p in lora_b]).clone()
    trainer.train()
    # 2 rollouts x (2 mini-batches x 2 epochs) = 8 steps. In each rollout the first update has approx_kl = 0 (π = π_old)
    # and is applied; the second exceeds target_kl = 0, so it is dropped, and the 2 after it are skipped.
    assert len(_rows(trainer, "ppo/policy_loss")) == 4
    assert sum(row.get("ppo/skipped_updates", 0) for row in trainer.state.log_history) == 6
    assert not torch.equal(start, snapshots[0])
    assert all(torch.equal(snapshots[0], snapshots[k]) for k in (1, 2, 3))
    assert not torch.equal(snapshots[3], snapshots[4])
    assert all(torch.equal(snapshots[4], snapshots[k]) for k in (5, 6, 7))


# ---------------------------------------------------------------------------------------------------------- resume
def test_resume_restores_adapters_head_optimizer_and_kl(tiny_llama_causal_dir, tmp_path):
    def run(out, resume=None):
        torch.manual_seed(0)
        trainer = trl_ext.PPOTrainer(
            tiny_llama_causal_dir, reward_funcs=reward_a, train_dataset=_prompts(), peft_config=_lora(),
            args=_args(out, max_steps=4, num_iterations=1, steps_per_generation=1, kl_control="adaptive",
                       kl_target=1e-3, kl_horizon=16, save_strategy="steps", save_steps=2))
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run(tmp_path / "full")
    ckpt = tmp_path / "full" / "checkpoint-2"
    assert (ckpt / "value_head.safetensors").is_file() and (ckpt / "critic" / "adapter_model.safetensors").is_file()
    assert (ckpt / "adapter_model.safetensors").is_file()  # the policy adapter, loadable on its own
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert "trl_ext.KLController" in state["stateful_callbacks"]
    resumed = run(tmp_path / "resumed", resume=str(ckpt))
    expected = [row["kl_ctl/beta"] for row in _rows(full, "kl_ctl/beta")][-2:]
    assert [row["kl_ctl/beta"] for row in _rows(resumed, "kl_ctl/beta")][-2:] == pytest.approx(expected, rel=1e-9)
    a, b = dict(full.model.named_parameters()), dict(resumed.model.named_parameters())
    for name in ("value_head.summary.weight",) + tuple(n for n in a if "lora_B" in n):
        assert torch.allclose(a[name], b[name], atol=1e-6), name


def test_an_infinite_reward_is_a_clear_error_naming_the_function(tiny_llama_causal_dir, tmp_path):
    def broken(completions, **kwargs):
        return [float("inf")] + [0.5] * (len(completions) - 1)

    trainer = trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=broken, train_dataset=_prompts(),
                                 peft_config=_lora(), args=_args(tmp_path, max_steps=1))
    with pytest.raises(ValueError, match="reward function 'broken' returned inf for completion 0: rewards must be finite"):
        trainer.train()


def test_unscored_completions_are_left_out_and_counted(tiny_llama_causal_dir, tmp_path):
    # every other completion gets no reward from any function (None), as TRL's GRPO allows
    def half(completions, **kwargs):
        return [None if i % 2 else 1.0 for i in range(len(completions))]

    trainer = trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=half, train_dataset=_prompts(),
                                 peft_config=_lora(), args=_args(tmp_path, max_steps=2, num_iterations=1))
    seen = {}
    original = trainer._generate_and_score_completions

    def spy(inputs):
        out = original(inputs)
        seen["mask"], seen["adv"] = out["ppo_mask"].clone(), out["advantages"].clone()
        return out

    trainer._generate_and_score_completions = spy
    trainer.train()
    rows = _rows(trainer, "ppo/unscored")
    assert rows and all(r["ppo/unscored"] == 8 for r in rows)  # 8 of each rollout's 16 completions (2 x 8)
    assert seen["mask"][1::2].sum() == 0 and seen["mask"][0::2].sum() > 0
    assert seen["adv"][1::2].abs().sum() == 0
    assert all(r["objective/scores"] == pytest.approx(1.0) for r in _rows(trainer, "objective/scores"))


def test_resume_inside_a_rollout_continues_exactly(tiny_llama_causal_dir, tmp_path):
    # rollouts of 2 mini-batches x 2 epochs = 4 optimizer steps; checkpoint-6 is saved in the middle of the second
    def run(out, resume=None):
        torch.manual_seed(0)
        trainer = trl_ext.PPOTrainer(
            tiny_llama_causal_dir, reward_funcs=reward_varied, train_dataset=_prompts(), peft_config=_lora(),
            args=_args(out, max_steps=8, num_iterations=2, steps_per_generation=2, save_strategy="steps",
                       save_steps=3, kl_control="adaptive", kl_target=1e-3, kl_horizon=64))
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run(tmp_path / "full")
    ckpt = tmp_path / "full" / "checkpoint-6"
    assert (ckpt / "rollout_state_rank0.pt").is_file()
    resumed = run(tmp_path / "resumed", resume=str(ckpt))
    a, b = dict(full.model.named_parameters()), dict(resumed.model.named_parameters())
    changed = [n for n in a if "lora_B" in n or n.startswith("value_head.")]
    for name in changed:
        assert torch.allclose(a[name], b[name], atol=1e-6), name
    assert [r["ppo/policy_loss"] for r in _rows(resumed, "ppo/policy_loss")][-2:] == pytest.approx(
        [r["ppo/policy_loss"] for r in _rows(full, "ppo/policy_loss")][-2:], abs=1e-6)


def test_resume_without_value_head_is_a_clear_error(tiny_llama_causal_dir, tmp_path):
    trainer = trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=reward_a, train_dataset=_prompts(),
                                 peft_config=_lora(), args=_args(tmp_path / "a", max_steps=2, save_strategy="steps",
                                                                 save_steps=2))
    trainer.train()
    (tmp_path / "a" / "checkpoint-2" / "value_head.safetensors").unlink()
    again = trl_ext.PPOTrainer(tiny_llama_causal_dir, reward_funcs=reward_a, train_dataset=_prompts(),
                               peft_config=_lora(), args=_args(tmp_path / "b", max_steps=4))
    with pytest.raises(FileNotFoundError, match="value_head.safetensors is missing"):
        again.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))


# ------------------------------------------------------------------------------------------------------------- DDP
def test_two_process_ddp(tiny_llama_causal_dir, tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    env = dict(os.environ, ACCELERATE_USE_CPU="true")
    proc = subprocess.run(
        ["accelerate", "launch", "--config_file", str(REPO_ROOT / "recipes" / "accelerate" / "cpu_ddp.yaml"),
         str(REPO_ROOT / "tests" / "trainers" / "kl_ddp_worker.py"), tiny_llama_causal_dir, str(out), "ppo"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((out / f"beta_rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    assert len(ranks[0]["betas"]) == 3 and ranks[0]["betas"] == ranks[1]["betas"]
    assert ranks[0]["betas"] != [0.1, 0.1, 0.1]
    trained = ranks[0]["trained"]
    assert any(".critic." in n for n in trained) and "value_head.summary.weight" in trained
    assert trained == ranks[1]["trained"]  # policy adapter, critic adapter and head synced by DDP
