"""GRPO and RLOO subclasses with adaptive KL control, on a tiny random Llama (CPU)."""

from __future__ import annotations

import json
import math
import os
import subprocess

import pytest
import torch
from datasets import Dataset

import trl_ext
from tests.helpers import REPO_ROOT, record_exact_rollout_kl, reward_a, reward_varied


def _prompts(n=24):
    return Dataset.from_list([{"prompt": f"say {w} please"} for w in ["abc", "dog", "cat", "zoo"] * (n // 4)])


def _args(kind, out, **overrides):
    config_cls = trl_ext.GRPOConfig if kind == "grpo" else trl_ext.RLOOConfig
    base = dict(output_dir=str(out), per_device_train_batch_size=4, num_generations=4, max_completion_length=6,
                max_steps=4, learning_rate=0.05, beta=0.1, kl_control="adaptive", kl_target=1e-3, kl_horizon=20,
                bf16=False, report_to=[], save_strategy="no", logging_steps=1, seed=0, disable_tqdm=True)
    base.update(overrides)
    return config_cls(**base)


def _trainer(kind, model_dir, args):
    cls = trl_ext.GRPOTrainer if kind == "grpo" else trl_ext.RLOOTrainer
    return cls(model_dir, reward_funcs=reward_a, args=args, train_dataset=_prompts())


def _ctl_rows(trainer):
    return [row for row in trainer.state.log_history if "kl_ctl/beta" in row]


@pytest.mark.parametrize("kind", ["grpo", "rloo"])
def test_beta_moves_toward_the_target(kind, tiny_llama_causal_dir, tmp_path):
    """KL above target -> beta up, below -> down, by exactly (1 + n/horizon * clipped error) each step."""
    torch.manual_seed(0)
    trainer = _trainer(kind, tiny_llama_causal_dir, _args(kind, tmp_path))
    trainer.train()
    rows = _ctl_rows(trainer)
    assert len(rows) == 4
    beta = 0.1
    directions = set()
    for row in rows:
        kl = row["kl_ctl/kl"]
        assert math.isfinite(kl)
        assert kl >= 0 or kind == "rloo"  # GRPO's k3 estimator is >= 0; RLOO's log-ratio sample mean need not be
        error = max(-0.2, min(0.2, kl / 1e-3 - 1))
        beta *= 1 + 4 / 20 * error  # 4 completions per step, horizon 20
        assert row["kl_ctl/beta"] == pytest.approx(beta, rel=1e-6)
        assert row["kl_ctl/error"] == pytest.approx(error, rel=1e-6, abs=1e-9)
        assert row["kl_ctl/target"] == pytest.approx(1e-3)
        directions.add(error > 0)
    # the first step sees KL = 0 (policy = reference): beta goes down; once the policy moved, KL > 1e-3: beta goes up
    assert rows[0]["kl_ctl/beta"] < 0.1 and directions == {False, True}
    assert trainer.beta == pytest.approx(trainer.kl_controller.value) == pytest.approx(beta, rel=1e-6)


def test_far_target_lowers_beta_every_step(tiny_llama_causal_dir, tmp_path):
    trainer = _trainer("grpo", tiny_llama_causal_dir, _args("grpo", tmp_path, kl_target=1e3, max_steps=3))
    trainer.train()
    betas = [row["kl_ctl/beta"] for row in _ctl_rows(trainer)]
    assert betas == pytest.approx([0.1 * 0.96 ** (t + 1) for t in range(3)])  # error clipped at -0.2


def test_fixed_control_keeps_beta_and_logs_it(tiny_llama_causal_dir, tmp_path):
    trainer = _trainer("grpo", tiny_llama_causal_dir, _args("grpo", tmp_path, kl_control="fixed", max_steps=2))
    trainer.train()
    rows = _ctl_rows(trainer)
    assert [row["kl_ctl/beta"] for row in rows] == [0.1, 0.1]
    assert all("kl_ctl/kl" in row and "kl_ctl/error" not in row for row in rows)


def test_sequence_unit_is_token_mean_times_length(tiny_llama_causal_dir, tmp_path):
    """kl_ctl/kl (per sequence) = TRL's token-mean kl x mean completion length of the step."""
    trainer = _trainer("grpo", tiny_llama_causal_dir, _args("grpo", tmp_path, max_steps=3, kl_target_unit="sequence"))
    trainer.train()
    for row in _ctl_rows(trainer):
        assert row["kl_ctl/kl"] == pytest.approx(row["kl"] * row["completions/mean_length"], rel=1e-5, abs=1e-9)
    trainer = _trainer("grpo", tiny_llama_causal_dir, _args("grpo", tmp_path / "tok", max_steps=2,
                                                           kl_target_unit="token"))
    trainer.train()
    for row in _ctl_rows(trainer):
        assert row["kl_ctl/kl"] == pytest.approx(row["kl"], rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("kind, lora", [("grpo", False), ("grpo", True), ("rloo", False)])
def test_full_estimator_feeds_the_exact_kl_to_the_controller(kind, lora, tiny_llama_causal_dir, tmp_path):
    """kl_estimator="full": each step's kl_ctl/kl is the exact KL of that step's completions (computed independently,
    in float64, against the reference model or the disabled adapter), and β follows it by the controller's formula."""
    from peft import LoraConfig

    torch.manual_seed(0)
    args = _args(kind, tmp_path, kl_estimator="full", kl_target=0.05, max_steps=3)
    cls = trl_ext.GRPOTrainer if kind == "grpo" else trl_ext.RLOOTrainer
    peft = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM") if lora else None
    trainer = cls(tiny_llama_causal_dir, reward_funcs=reward_a, args=args, train_dataset=_prompts(), peft_config=peft)
    hand = record_exact_rollout_kl(trainer)
    trainer.train()
    rows = _ctl_rows(trainer)
    assert len(hand) == len(rows) == 3
    assert hand[0] == pytest.approx(0.0, abs=1e-6)  # step 1: the policy is the reference
    assert hand[-1] > 1e-4  # the policy moved, so the later checks compare non-trivial values
    beta = 0.1
    for row, kl in zip(rows, hand):
        assert row["kl_ctl/kl"] == pytest.approx(kl, rel=1e-3, abs=1e-6)
        beta *= 1 + 4 / 20 * max(-0.2, min(0.2, kl / 0.05 - 1))
        assert row["kl_ctl/beta"] == pytest.approx(beta, rel=1e-4)


def test_adaptive_needs_a_reference_model(tiny_llama_causal_dir, tmp_path):
    args = _args("grpo", tmp_path, kl_control="fixed", beta=0.0)
    args.kl_control = "adaptive"  # changed after construction: the trainer re-checks before TRL skips the ref model
    with pytest.raises(ValueError, match="needs beta > 0"):
        trl_ext.GRPOTrainer(tiny_llama_causal_dir, reward_funcs=reward_a, args=args, train_dataset=_prompts())


@pytest.mark.parametrize("kind", ["grpo", "rloo"])
def test_a_horizon_that_would_zero_beta_is_refused_at_construction(kind, tiny_llama_causal_dir, tmp_path):
    # 4 completions per update: the first update would multiply beta by 1 - 4/0.5 x 0.2 = -0.6
    with pytest.raises(ValueError, match=r"kl_horizon=0.5 is too short for 4 sequences per update.*kl_horizon > 0.8"):
        _trainer(kind, tiny_llama_causal_dir, _args(kind, tmp_path, kl_horizon=0.5))


def test_a_starting_beta_outside_its_bounds_is_refused(tiny_llama_causal_dir, tmp_path):
    with pytest.raises(ValueError, match=r"starting beta 0.1 is outside \[kl_min_beta, kl_max_beta\] = \[0.2, inf\]"):
        _args("grpo", tmp_path, kl_min_beta=0.2)


@pytest.mark.parametrize("kind", ["grpo", "rloo"])
@pytest.mark.parametrize("value,match", [("yes", r"returned 'yes' \(a str\) for completion 1: a reward must be a number"),
                                         (float("-inf"), "returned -inf for completion 1: rewards must be finite")])
def test_a_bad_reward_value_is_a_clear_error(kind, value, match, tiny_llama_causal_dir, tmp_path):
    def odd(completions, **kwargs):
        return [0.5, value] + [0.5] * (len(completions) - 2)

    cls = trl_ext.GRPOTrainer if kind == "grpo" else trl_ext.RLOOTrainer
    trainer = cls(tiny_llama_causal_dir, reward_funcs=odd, args=_args(kind, tmp_path, max_steps=1),
                  train_dataset=_prompts())
    with pytest.raises(ValueError, match=f"reward function 'odd' {match}"):
        trainer.train()


@pytest.mark.parametrize("kind", ["grpo", "rloo", "ppo"])
def test_a_dataset_without_prompt_is_refused_before_training(kind, tiny_llama_causal_dir, tmp_path):
    cls = {"grpo": trl_ext.GRPOTrainer, "rloo": trl_ext.RLOOTrainer, "ppo": trl_ext.PPOTrainer}[kind]
    args = trl_ext.PPOConfig(output_dir=str(tmp_path), bf16=False, report_to=[]) if kind == "ppo" else _args(kind, tmp_path)
    data = Dataset.from_list([{"question": "say abc"}] * 4)
    with pytest.raises(ValueError, match=r"The train dataset has no 'prompt' column \(columns: \['question'\]\)"):
        cls(tiny_llama_causal_dir, reward_funcs=reward_a, args=args, train_dataset=data)


def test_non_finite_kl_is_skipped(tiny_llama_causal_dir, tmp_path):
    trainer = _trainer("grpo", tiny_llama_causal_dir, _args("grpo", tmp_path, max_steps=2))
    original = trainer._record_kl
    trainer._record_kl = lambda kl, mask: original(float("nan"), mask)
    with pytest.warns(UserWarning, match="non-finite KL"):
        trainer.train()
    assert trainer.beta == 0.1 and trainer.kl_controller.skipped_updates == 2


def test_resume_reproduces_the_beta_sequence(tiny_llama_causal_dir, tmp_path):
    full = _trainer("grpo", tiny_llama_causal_dir, _args("grpo", tmp_path / "full", save_strategy="steps",
                                                         save_steps=2))
    full.train()
    expected = [row["kl_ctl/beta"] for row in _ctl_rows(full)]
    saved = json.loads((tmp_path / "full" / "checkpoint-2" / "trainer_state.json").read_text())
    assert saved["stateful_callbacks"]["trl_ext.KLController"]["beta"] == pytest.approx(expected[1])

    resumed = _trainer("grpo", tiny_llama_causal_dir, _args("grpo", tmp_path / "resumed", save_strategy="steps",
                                                            save_steps=2))
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    got = [row["kl_ctl/beta"] for row in _ctl_rows(resumed)]
    assert got[-2:] == pytest.approx(expected[-2:], rel=1e-9)


@pytest.mark.parametrize("kind", ["grpo", "grpo-full"])  # "-full": kl_estimator="full"
def test_two_process_ddp_uses_the_same_beta(kind, tiny_llama_causal_dir, tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    env = dict(os.environ, ACCELERATE_USE_CPU="true")
    proc = subprocess.run(
        ["accelerate", "launch", "--config_file", str(REPO_ROOT / "recipes" / "accelerate" / "cpu_ddp.yaml"),
         str(REPO_ROOT / "tests" / "trainers" / "kl_ddp_worker.py"), tiny_llama_causal_dir, str(out), kind],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((out / f"beta_rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    assert len(ranks[0]["betas"]) == 3
    assert ranks[0]["betas"] == ranks[1]["betas"]  # bit-identical: the KL is reduced over processes
    assert ranks[0]["betas"] != [0.1, 0.1, 0.1]


def test_bert_cls_rm_next_to_a_rule_reward(tiny_llama_causal_dir, tiny_bert_dir, tmp_path):
    """A BERT-CLS RM with its own WordPiece tokenizer (the policy's is character-level) as a GRPO reward function."""
    from transformers import AutoTokenizer

    from trl_ext import BertClsRewardModel, TextRewardModel

    rm = TextRewardModel(BertClsRewardModel.from_encoder(tiny_bert_dir), AutoTokenizer.from_pretrained(tiny_bert_dir),
                         max_length=32, device="cpu", name="bert_rm")
    seen = []
    encode = rm.encode
    rm.encode = lambda prompts, completions: seen.extend(encode(prompts, completions)) or seen[-len(prompts):]
    trainer = trl_ext.GRPOTrainer(tiny_llama_causal_dir, reward_funcs=[reward_a, rm],
                                  args=_args("grpo", tmp_path, max_steps=2), train_dataset=_prompts())
    trainer.train()
    assert rm.num_scored == 8  # 2 steps x 4 completions
    cls_id, sep_id = rm.tokenizer.cls_token_id, rm.tokenizer.sep_token_id
    assert all(row["input_ids"][0] == cls_id and row["input_ids"].count(sep_id) == 2 and 1 in row["token_type_ids"]
               for row in seen)
    rows = [row for row in trainer.state.log_history if "rewards/bert_rm/mean" in row]
    assert len(rows) == 2 and all(math.isfinite(row["rewards/bert_rm/mean"]) for row in rows)
    assert "rewards/reward_a/mean" in rows[0]


def test_qlora_grpo_trains_only_the_adapter(tiny_llama_causal_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    from transformers import AutoTokenizer
    from trl import ModelConfig

    from trl_ext import load_policy
    from trl_ext.peft_utils import is_4bit
    from trl_ext.peft_utils import trainable_parameter_names

    model, peft_config = load_policy(ModelConfig(model_name_or_path=tiny_llama_causal_dir, load_in_4bit=True,
                                                 use_peft=True, lora_r=8, lora_alpha=16,
                                                 lora_target_modules=["all-linear"], dtype="float32"))
    trainer = trl_ext.GRPOTrainer(model, reward_funcs=reward_varied, args=_args("grpo", tmp_path, max_steps=2),
                                  train_dataset=_prompts(), processing_class=AutoTokenizer.from_pretrained(
                                      tiny_llama_causal_dir), peft_config=peft_config)
    policy = trainer.model
    assert trainer.ref_model is None and is_4bit(policy)  # reference = the same 4-bit base, adapter disabled
    names = trainable_parameter_names(policy)
    assert names and all(".lora_" in n for n in names)
    # the 4-bit weights as raw bytes (load_policy stores them in the compute dtype; as floats some read as NaN)
    packed = {n: p.detach().view(torch.uint8).clone() for n, p in policy.named_parameters()
              if type(p).__name__ == "Params4bit"}
    lora_b = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_B" in n}
    trainer.train()
    assert packed and all(torch.equal(p, dict(policy.named_parameters())[n].detach().view(torch.uint8))
                          for n, p in packed.items())
    assert any(not torch.equal(p, dict(policy.named_parameters())[n]) for n, p in lora_b.items())
    assert len(_ctl_rows(trainer)) == 2 and trainer.beta != 0.1


@pytest.mark.parametrize("kind", ["grpo", "rloo", "ppo"])
def test_fewer_prompts_than_one_rollout_is_refused(kind, tiny_llama_causal_dir, tmp_path):
    # TRL's sampler drops an incomplete rollout: 3 prompts for a 4-prompt rollout would train 0 steps silently
    cls = {"grpo": trl_ext.GRPOTrainer, "rloo": trl_ext.RLOOTrainer, "ppo": trl_ext.PPOTrainer}[kind]
    common = dict(output_dir=str(tmp_path), bf16=False, report_to=[], per_device_train_batch_size=4,
                  num_generations=2 if kind != "ppo" else 1, steps_per_generation=2 if kind != "ppo" else 1)
    args = trl_ext.PPOConfig(**common) if kind == "ppo" else _args(kind, tmp_path, **common)
    needed = 4  # prompts per rollout: 8 completions / 2 generations, or 4 / 1
    data = Dataset.from_list([{"prompt": "say abc"}] * (needed - 1))
    with pytest.raises(ValueError, match=rf"The train dataset has {needed - 1} prompts but one rollout takes {needed}"):
        cls(tiny_llama_causal_dir, reward_funcs=reward_a, args=args, train_dataset=data)


def test_environment_or_rollout_func_owned_data_needs_no_prompt_column():
    # TRL's environment_factory / rollout_func build the rollouts from other columns (e.g. `environment`)
    data = Dataset.from_list([{"environment": "game"}] * 2)
    check = trl_ext.GRPOTrainer._check_prompt_columns
    check(data, None, environment_factory={"game": object})
    check(data, None, rollout_func=lambda *a, **k: None)
    with pytest.raises(ValueError, match="no 'prompt' column"):
        check(data, None)
