"""Trainers never drop data silently, never end a run with zero batches without an error, and never change what the
user passed in. Tiny random models on CPU."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from datasets import Dataset

from trl_ext import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer
from tests.helpers import reward_a


def _common(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), bf16=False, report_to=[], per_device_train_batch_size=2, max_steps=1,
                logging_steps=1, save_strategy="no", activation_checkpointing=False, learning_rate=1e-2,
                disable_tqdm=True)
    base.update(kw)
    return base


def _dpo(model, data, tmp_path, **kw):
    return DPOTrainer(model, args=DPOConfig(**_common(tmp_path, beta=0.5, **kw)), train_dataset=data)


def _reward(model, data, tmp_path, **kw):
    return RewardTrainer(model, args=RewardConfig(**_common(tmp_path, **kw)), train_dataset=data)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("trl_ext")]


# Every prompt is 20 characters (20 tokens with the char tokenizer): with max_length=10 nothing of a completion is left.
LONG_PROMPTS = [{"prompt": "2+2=" * 5, "completions": [" 4", " 5"], "ranks": [0, 1]},
                {"prompt": "3+3=" * 5, "completions": [" 6", " 7", " 8"], "ranks": [0, 1, 2]}]
SHORT = [{"prompt": "1+1=", "completions": [" 2", " 3"], "ranks": [0, 1]},
         {"prompt": "2+1=", "completions": [" 3", " 4"], "ranks": [0, 1]}]


# --------------------------------------------------------------------------------------------------------------------
# Broken 1: every group dropped by tokenisation
# --------------------------------------------------------------------------------------------------------------------


def test_dpo_every_prompt_filling_max_length_is_a_clear_error(tmp_path, tiny_llama_causal_dir):
    with pytest.raises(ValueError, match=r"The train dataset has no trainable ranked group: 2 groups whose prompt "
                                         r"fills max_length"):
        _dpo(tiny_llama_causal_dir, Dataset.from_list(LONG_PROMPTS), tmp_path, max_length=10)


def test_reward_every_completion_too_long_is_a_clear_error(tmp_path, tiny_llama_seqcls_dir):
    with pytest.raises(ValueError, match=r"The train dataset has no trainable ranked group: 5 completions longer than "
                                         r"max_length left out, 2 groups left without a pair by them"):
        _reward(tiny_llama_seqcls_dir, Dataset.from_list(LONG_PROMPTS), tmp_path, max_length=10)


# --------------------------------------------------------------------------------------------------------------------
# Broken 2 and 3: streamed data sets
# --------------------------------------------------------------------------------------------------------------------

NOTHING_TRAINABLE = [{"prompt": "p", "completions": [" a"], "ranks": [0]},
                     {"prompt": "q", "completions": [" b", " c"], "ranks": [1, 1]}]


@pytest.mark.parametrize("kind", ["dpo", "reward"])
def test_a_stream_with_no_trainable_group_is_a_clear_error(tmp_path, tiny_llama_causal_dir, tiny_llama_seqcls_dir,
                                                           kind):
    stream = Dataset.from_list(NOTHING_TRAINABLE).to_iterable_dataset()
    build, model = (_dpo, tiny_llama_causal_dir) if kind == "dpo" else (_reward, tiny_llama_seqcls_dir)
    with pytest.raises(ValueError, match=r"The train dataset \(streamed\) has no trainable ranked group: 1 groups with "
                                         r"K<2, 1 all-tied groups"):
        build(model, stream, tmp_path).train()


@pytest.mark.parametrize("kind", ["dpo", "reward"])
def test_a_stream_whose_groups_all_become_too_long_fails_the_run_with_the_counts(
        tmp_path, tiny_llama_causal_dir, tiny_llama_seqcls_dir, kind):
    stream = Dataset.from_list(LONG_PROMPTS).to_iterable_dataset()
    build, model = (_dpo, tiny_llama_causal_dir) if kind == "dpo" else (_reward, tiny_llama_seqcls_dir)
    reason = "2 groups whose prompt fills max_length" if kind == "dpo" else "2 groups left without a pair by them"
    trainer = build(model, stream, tmp_path, max_length=10, max_steps=3)
    with pytest.raises(ValueError, match=rf"The train dataset \(streamed\) has no trainable ranked group: .*{reason}"):
        trainer.train()
    assert trainer.state.global_step == 0


@pytest.mark.parametrize("kind", ["dpo", "reward"])
def test_a_stream_counts_and_warns_what_it_skips(tmp_path, tiny_llama_causal_dir, tiny_llama_seqcls_dir, kind,
                                                 caplog):
    stream = Dataset.from_list([SHORT[0], LONG_PROMPTS[0], NOTHING_TRAINABLE[0], SHORT[1]]).to_iterable_dataset()
    build, model = (_dpo, tiny_llama_causal_dir) if kind == "dpo" else (_reward, tiny_llama_seqcls_dir)
    trainer = build(model, stream, tmp_path, max_length=10, max_steps=3, per_device_train_batch_size=1)
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert trainer.state.global_step == 3
    lines = _warnings(caplog)
    first = [w for w in lines if "first skip" in w]
    assert len(first) == 1 and first[0].startswith("train dataset (streamed): skipping"), lines
    totals = [w for w in lines if "end of pass" in w]
    assert totals and totals[0].startswith("train dataset (streamed), end of pass 1: 2 ranked groups kept; 1 groups "
                                           "with K<2"), lines
    assert trainer.ranking_stats["train"]["ok"] == 2 and trainer.ranking_stats["train"]["skipped_small_group"] == 1


LONG_PAIRS = [{"prompt": "2+2=" * 5, "chosen": " 4", "rejected": " 5"}, {"prompt": "3+3=" * 5, "chosen": " 6",
                                                                          "rejected": " 7"}]
SHORT_PAIRS = [{"prompt": "1+1=", "chosen": " 2", "rejected": " 3"},
               {"prompt": "2+1=", "chosen": " 3", "rejected": " 4"}]


@pytest.mark.parametrize("kind", ["dpo", "reward"])
def test_a_pairwise_stream_counts_what_trl_leaves_out_and_fails_a_run_with_nothing(
        tmp_path, tiny_llama_causal_dir, tiny_llama_seqcls_dir, kind, caplog):
    build, model = (_dpo, tiny_llama_causal_dir) if kind == "dpo" else (_reward, tiny_llama_seqcls_dir)
    trainer = build(model, Dataset.from_list(LONG_PAIRS).to_iterable_dataset(), tmp_path, max_length=10, max_steps=2)
    with pytest.raises(ValueError, match=r"The train dataset \(streamed\) has no pair left: 2 pairs left out for "
                                         r"max_length"):
        trainer.train()
    stream = Dataset.from_list([SHORT_PAIRS[0], LONG_PAIRS[0], SHORT_PAIRS[1]]).to_iterable_dataset()
    trainer = build(model, stream, tmp_path, max_length=10, max_steps=3, per_device_train_batch_size=1)
    with caplog.at_level(logging.WARNING):
        trainer.train()
    totals = [w for w in _warnings(caplog) if "end of pass" in w]
    assert totals and totals[0] == "train dataset (streamed), end of pass 1: 2 pairs kept; 1 pairs left out for " \
                                   "max_length.", totals
    assert trainer.ranking_stats["train"] == {"ok": 2, "dropped_for_max_length": 1}


# --------------------------------------------------------------------------------------------------------------------
# Weak: Plackett-Luce and rows identical after truncation; the [CLS] head's pairs identical after truncation
# --------------------------------------------------------------------------------------------------------------------


def test_plackett_luce_leaves_out_a_completion_identical_to_a_better_one_and_says_so(tmp_path, tiny_llama_causal_dir,
                                                                                    caplog):
    rows = [{"prompt": "2+2=", "completions": [" 4 is it", " 4 is not", " 5"], "ranks": [0, 1, 2]},
            {"prompt": "1+1=", "completions": [" 2 ok!", " 2 ok?"], "ranks": [0, 1]}]
    with caplog.at_level(logging.WARNING):
        trainer = _dpo(tiny_llama_causal_dir, Dataset.from_list(rows), tmp_path, max_length=9,
                       ranked_loss="plackett_luce")
    stats = trainer.ranking_stats["train"]
    assert stats["identical_completions_left_out"] == 1 and stats["skipped_identical_after_truncation"] == 1
    text = " | ".join(_warnings(caplog))
    assert ("1 completions identical after truncation to a better-ranked one, left out of the Plackett-Luce loss"
            in text), text
    example = trainer.train_dataset[0]
    assert example["ranks"] == [0, 2] and len(example["completion_ids"]) == 2
    batch = trainer.data_collator([example])
    assert batch["input_ids"].shape[0] == 2 and batch["ranks"].tolist() == [0.0, 2.0]


def test_cls_head_pairwise_pairs_identical_after_truncation_are_counted_and_left_out(tmp_path, tiny_bert_dir, caplog):
    pairs = [{"prompt": "q", "chosen": "the answer is clearly yes indeed",
              "rejected": "the answer is clearly no indeed"},
             {"prompt": "q", "chosen": "yes", "rejected": "no"}]
    with caplog.at_level(logging.WARNING):
        trainer = _reward(tiny_bert_dir, Dataset.from_list(pairs), tmp_path, max_length=7)
    assert trainer.ranking_stats["train"]["identical_pairs_after_truncation"] == 1
    assert len(trainer.train_dataset) == 1
    assert any("1 pairs identical after truncation left out" in w for w in _warnings(caplog)), _warnings(caplog)
    with pytest.raises(ValueError, match="The train dataset has no pair left: 1 pairs identical after truncation"):
        _reward(tiny_bert_dir, Dataset.from_list(pairs[:1]), tmp_path, max_length=7)


# --------------------------------------------------------------------------------------------------------------------
# Weak: allow_empty_completions=False on pairwise data
# --------------------------------------------------------------------------------------------------------------------

EMPTY_PAIRS = [{"prompt": "2+2=", "chosen": " 4", "rejected": " 5"},
               {"prompt": "3+3=", "chosen": " 6", "rejected": " "},
               {"prompt": "1+1=", "chosen": " 2", "rejected": " 3"}]


@pytest.mark.parametrize("kind", ["dpo", "reward"])
def test_allow_empty_completions_false_is_honoured_on_pairwise_data(tmp_path, tiny_llama_causal_dir,
                                                                    tiny_llama_seqcls_dir, kind, caplog):
    build, model = (_dpo, tiny_llama_causal_dir) if kind == "dpo" else (_reward, tiny_llama_seqcls_dir)
    data = Dataset.from_list(EMPTY_PAIRS)
    assert len(build(model, data, tmp_path).train_dataset) == 3  # default: an empty answer is a preference
    with pytest.raises(ValueError, match=r"row 1, field 'rejected': rejected is an empty string"):
        build(model, data, tmp_path, allow_empty_completions=False)
    with caplog.at_level(logging.WARNING):
        trainer = build(model, data, tmp_path, allow_empty_completions=False, on_invalid_rows="skip")
    assert len(trainer.train_dataset) == 2 and trainer.ranking_stats["train"]["empty_completion"] == 1
    assert any("skipped 1 pairs with an empty completion" in w for w in _warnings(caplog)), _warnings(caplog)


# --------------------------------------------------------------------------------------------------------------------
# Weak: online RL with a prompt that is None
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["grpo", "rloo", "ppo"])
def test_online_rl_refuses_a_missing_prompt_naming_the_row(tmp_path, tiny_llama_causal_dir, kind):
    import trl_ext

    config_cls, trainer_cls = {"grpo": (trl_ext.GRPOConfig, trl_ext.GRPOTrainer),
                               "rloo": (trl_ext.RLOOConfig, trl_ext.RLOOTrainer),
                               "ppo": (trl_ext.PPOConfig, trl_ext.PPOTrainer)}[kind]
    prompts = [{"prompt": f"say {w} please"} for w in ["abc", "dog", "cat", "zoo"] * 2]
    prompts[5]["prompt"] = None
    args = config_cls(**_common(tmp_path, per_device_train_batch_size=4, num_generations=4 if kind != "ppo" else 1,
                                max_completion_length=4))
    with pytest.raises(ValueError, match=r"The train dataset: row 5, field 'prompt': prompt is missing \(None\)"):
        trainer_cls(tiny_llama_causal_dir, reward_funcs=reward_a, args=args, train_dataset=Dataset.from_list(prompts))
    eval_prompts = [{"prompt": [{"role": "user", "content": "hi"}]}, {"prompt": []}]
    with pytest.raises(ValueError, match=r"The eval dataset: row 1, field 'prompt': prompt is an empty message list"):
        trainer_cls(tiny_llama_causal_dir, reward_funcs=reward_a, args=args,
                    train_dataset=Dataset.from_list(prompts[:4]), eval_dataset=Dataset.from_list(eval_prompts))


# --------------------------------------------------------------------------------------------------------------------
# No trainer changes what the user passed in (args, tokenizer, model): at most what TRL's own trainer changes
# --------------------------------------------------------------------------------------------------------------------


def _plain(value):
    return value is None or isinstance(value, (str, int, float, bool, list, tuple, dict))


def _tokens_as_text(value):
    """Special tokens by their text: TRL re-assigning the same pad token turns its AddedToken into a plain string."""
    if isinstance(value, dict):
        return {k: str(v) if type(v).__name__ == "AddedToken" else v for k, v in value.items()}
    return copy.deepcopy(value)


def _snapshot(args, tokenizer, model) -> dict:
    import dataclasses

    return {
        "args": {f.name: copy.deepcopy(getattr(args, f.name)) for f in dataclasses.fields(args)},
        "args_attributes": set(vars(args)),
        "tokenizer": {k: _tokens_as_text(v) for k, v in vars(tokenizer).items() if _plain(v)},
        "tokenizer_attributes": set(vars(tokenizer)),
        "modules": {name for name, _ in model.named_modules()},
        "adapters": set(getattr(model, "peft_config", {})),
    }


def _changes(before: dict, after: dict, fields: set[str] | None = None) -> set[str]:
    """What changed, as words: "args.<field>", "tokenizer.<attribute>", "module <name>", "adapter <name>"."""
    changed = {f"args.{name}" for name, value in before["args"].items()
               if (fields is None or name in fields) and after["args"].get(name) != value}
    changed |= {f"tokenizer.{k}" for k in before["tokenizer_attributes"] ^ after["tokenizer_attributes"]}
    changed |= {f"tokenizer.{k}" for k, v in before["tokenizer"].items() if after["tokenizer"].get(k) != v}
    changed |= {f"module {m}" for m in after["modules"] - before["modules"]}
    changed |= {f"adapter {a}" for a in after["adapters"] - before["adapters"]}
    changed |= {f"args attribute {a}" for a in after["args_attributes"] - before["args_attributes"] if "trl_ext" in a}
    return changed


def _run(trainer_cls, config_cls, model, tokenizer, config_kw, **trainer_kw) -> set[str]:
    args = config_cls(**config_kw)
    before = _snapshot(args, tokenizer, model)
    trainer_cls(model, args=args, processing_class=tokenizer, **trainer_kw)
    return _changes(before, _snapshot(args, tokenizer, model))


def _peft_model(path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return get_peft_model(AutoModelForCausalLM.from_pretrained(path),
                          LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))


def test_reward_and_dpo_change_nothing_trl_does_not(tmp_path, tiny_llama_causal_dir, tiny_llama_seqcls_dir):
    import trl
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    ranked, pairs = Dataset.from_list(SHORT * 2), Dataset.from_list(EMPTY_PAIRS[:1] + EMPTY_PAIRS[2:])
    common = _common(tmp_path)
    for ours, theirs, config_ours, config_theirs, model_dir, load in (
            (RewardTrainer, trl.RewardTrainer, RewardConfig, trl.RewardConfig, tiny_llama_seqcls_dir,
             AutoModelForSequenceClassification.from_pretrained),
            (DPOTrainer, trl.DPOTrainer, DPOConfig, trl.DPOConfig, tiny_llama_causal_dir, _peft_model)):
        mine = _run(ours, config_ours, load(model_dir), AutoTokenizer.from_pretrained(model_dir), common,
                    train_dataset=ranked, eval_dataset=pairs)
        trls = _run(theirs, config_theirs, load(model_dir), AutoTokenizer.from_pretrained(model_dir), common,
                    train_dataset=pairs)
        assert mine <= trls, (ours.__name__, mine - trls)


def test_the_cls_head_leaves_the_users_config_and_tokenizer_as_they_were(tmp_path, tiny_bert_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    args = RewardConfig(**_common(tmp_path, model_init_kwargs={"dtype": torch.float32}, max_length=16))
    before = _snapshot(args, tokenizer, torch.nn.Module())  # the model is loaded from a path: no user model here
    trainer = RewardTrainer(tiny_bert_dir, args=args, processing_class=tokenizer,
                            train_dataset=Dataset.from_list(SHORT * 2))
    assert trainer.reward_head == "cls" and trainer.model.dtype == torch.float32
    changed = _changes(before, _snapshot(args, tokenizer, torch.nn.Module()))
    assert changed == set(), changed  # was: args.model_init_kwargs set to None, tokenizer._trl_ext_clean_backend


@pytest.mark.parametrize("kind", ["grpo", "rloo"])
def test_grpo_and_rloo_change_nothing_trl_does_not(tmp_path, tiny_llama_causal_dir, kind):
    import trl
    from transformers import AutoTokenizer

    import trl_ext

    ours, config_ours = {"grpo": (trl_ext.GRPOTrainer, trl_ext.GRPOConfig),
                         "rloo": (trl_ext.RLOOTrainer, trl_ext.RLOOConfig)}[kind]
    theirs, config_theirs = {"grpo": (trl.GRPOTrainer, trl.GRPOConfig), "rloo": (trl.RLOOTrainer, trl.RLOOConfig)}[kind]
    prompts = Dataset.from_list([{"prompt": f"say {w} please"} for w in ["abc", "dog", "cat", "zoo"]])
    common = _common(tmp_path, per_device_train_batch_size=4, num_generations=4, max_completion_length=4, beta=0.1)
    results = []
    for trainer_cls, config_cls in ((ours, config_ours), (theirs, config_theirs)):
        results.append(_run(trainer_cls, config_cls, _peft_model(tiny_llama_causal_dir),
                            AutoTokenizer.from_pretrained(tiny_llama_causal_dir), common, reward_funcs=reward_a,
                            train_dataset=prompts))
    assert results[0] <= results[1], results[0] - results[1]


def test_ppo_says_what_it_adds_to_the_users_policy_and_adds_nothing_else(tmp_path, tiny_llama_causal_dir, caplog):
    import trl
    from transformers import AutoTokenizer

    import trl_ext

    prompts = Dataset.from_list([{"prompt": f"say {w} please"} for w in ["abc", "dog", "cat", "zoo"]])
    common = _common(tmp_path, per_device_train_batch_size=4, max_completion_length=4, beta=0.1)
    with caplog.at_level(logging.WARNING):
        mine = _run(trl_ext.PPOTrainer, trl_ext.PPOConfig, _peft_model(tiny_llama_causal_dir),
                    AutoTokenizer.from_pretrained(tiny_llama_causal_dir), common, reward_funcs=reward_a,
                    train_dataset=prompts)
    trls = _run(trl.GRPOTrainer, trl.GRPOConfig, _peft_model(tiny_llama_causal_dir),
                AutoTokenizer.from_pretrained(tiny_llama_causal_dir), dict(common, num_generations=4),
                reward_funcs=reward_a, train_dataset=prompts)
    critic = {c for c in mine - trls if c == "adapter critic" or c.startswith("module value_head")
              or (c.startswith("module ") and c.endswith(".critic"))}
    assert "adapter critic" in critic and "module value_head" in critic
    assert mine - trls - critic == set(), mine - trls - critic
    said = [w for w in _warnings(caplog) if "adds its critic to the policy model passed in" in w]
    assert len(said) == 1 and "adapter 'critic'" in said[0] and "module 'value_head'" in said[0], _warnings(caplog)


# --------------------------------------------------------------------------------------------------------------------
# Multi-process: trl_ext's own maps run under TRL's main-process-first guard
# --------------------------------------------------------------------------------------------------------------------


def test_two_processes_prepare_the_data_once_and_alike(tmp_path, tiny_llama_seqcls_dir):
    import json
    import os
    import subprocess

    from tests.helpers import REPO_ROOT

    # enough rows that the main process is still at work when the other one arrives (see the worker)
    rows = [dict(SHORT[i % 2], prompt=f"{i}+1=") for i in range(200)] + [NOTHING_TRAINABLE[0]]
    data_file = tmp_path / "ranked.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "meet")  # where the two processes meet (see the worker's docstring)
    proc = subprocess.run(
        ["accelerate", "launch", "--config_file", str(REPO_ROOT / "recipes" / "accelerate" / "cpu_ddp.yaml"),
         str(REPO_ROOT / "tests" / "trainers" / "prepare_ddp_worker.py"), tiny_llama_seqcls_dir, str(data_file),
         str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env=dict(os.environ, ACCELERATE_USE_CPU="true"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((out / f"prepared_rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["rows"] == ranks[1]["rows"] and len(ranks[0]["rows"]) == 200
    assert ranks[0]["stats"] == ranks[1]["stats"] and ranks[0]["stats"]["skipped_small_group"] == 1
    events = [line.split() for line in (out / "events.txt").read_text().splitlines()]
    calls = [int(rank) for kind, rank, _ in events if kind == "call"]
    # 201 rows validated and 200 groups x 2 completions encoded, once: the other process reads the main one's cache
    assert calls.count(0) == 201 + 400 and calls.count(1) == 0, (calls.count(0), calls.count(1))
    # and it starts preparing only once the main process is done (TRL's main-process-first order)
    last_main_call = max(int(t) for kind, rank, t in events if kind == "call" and rank == "0")
    other_enters = min(int(t) for kind, rank, t in events if kind == "enter" and rank == "1")
    assert other_enters > last_main_call
