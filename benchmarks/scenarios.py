# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Named scenarios: each runs a baseline (usually plain TRL) and a candidate (trl_ext) on identical work.

A scenario = trainer + model shape + precision/quantisation + batch and sequence lengths, at one of three sizes
(`cpu-smoke`, `small`, `gpu`). Every variant builds a fresh trainer from the same saved random-weight model and the
same synthetic data, runs `warmup + steps` optimizer steps, and reports the figures of `benchmarks.measure`.
"""

from __future__ import annotations

import dataclasses
import math
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from .measure import TimedCall, TokenCounter
from .shapes import BuiltModel, build_model

# -- sizes ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    name: str
    decoder: str          # policy / RM decoder shape
    qlora_decoder: str    # shape for the bf16-LoRA vs 4-bit-QLoRA comparisons (>= 1B on GPU)
    encoder: str          # BERT-CLS reward model shape
    prompt_len: int       # characters = tokens (char tokenizers)
    completion_len: int
    dpo_pairs: int        # pairs per step in pairwise DPO scenarios
    dpo_groups: int       # K=4 groups per step in grouped DPO (pairs per step = groups * 6)
    rm_pairs: int         # pairs per step in the RM overhead scenario
    rm_groups_k4: int
    rm_groups_k8: int
    grpo_prompts: int
    grpo_generations: int
    grpo_completion_len: int
    warmup: int
    steps: int
    bf16: bool
    activation_checkpointing: bool = False


SIZES = {
    "cpu-smoke": Size("cpu-smoke", decoder="tiny-llama", qlora_decoder="tiny-llama", encoder="tiny-bert",
                      prompt_len=24, completion_len=16, dpo_pairs=4, dpo_groups=1, rm_pairs=4, rm_groups_k4=1,
                      rm_groups_k8=1, grpo_prompts=2, grpo_generations=4, grpo_completion_len=8, warmup=1, steps=2,
                      bf16=False),
    "small": Size("small", decoder="smollm2-135m", qlora_decoder="smollm2-135m", encoder="minilm-l6",
                  prompt_len=64, completion_len=32, dpo_pairs=6, dpo_groups=1, rm_pairs=6, rm_groups_k4=1,
                  rm_groups_k8=1, grpo_prompts=2, grpo_generations=4, grpo_completion_len=16, warmup=1, steps=3,
                  bf16=False),
    "gpu": Size("gpu", decoder="qwen2.5-0.5b", qlora_decoder="llama-3.2-1b", encoder="bert-base",
                prompt_len=256, completion_len=256, dpo_pairs=8, dpo_groups=2, rm_pairs=12, rm_groups_k4=2,
                rm_groups_k8=1, grpo_prompts=8, grpo_generations=8, grpo_completion_len=128, warmup=3, steps=10,
                bf16=True),
}


# -- synthetic data ------------------------------------------------------------------------------------------------

LETTERS = "abcdefghijklmnopqrstuvwxyz "


def _text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(n - 1)) + "."


def ranked_groups(n_groups: int, k: int, prompt_len: int, completion_len: int, seed: int = 0):
    """`n_groups` prompts, each with `k` distinct completions ranked 0..k-1 (all texts of fixed length)."""
    from datasets import Dataset

    rng = random.Random(seed)
    return Dataset.from_list([
        {"prompt": _text(rng, prompt_len), "completions": [_text(rng, completion_len) for _ in range(k)],
         "ranks": list(range(k))}
        for _ in range(n_groups)
    ])


def expanded_pairs(groups):
    """The same groups as TRL's pairwise (prompt, chosen, rejected) rows."""
    from trl_ext import ranked_to_pairs

    pairs, _ = ranked_to_pairs(groups)
    return pairs.select_columns(["prompt", "chosen", "rejected"])


def prompt_only(n: int, prompt_len: int, seed: int = 0):
    from datasets import Dataset

    rng = random.Random(seed)
    return Dataset.from_list([{"prompt": _text(rng, prompt_len)} for _ in range(n)])


def letter_a_reward(completions, **kwargs) -> list[float]:
    """Rule-based reward for the GRPO scenarios: the fraction of 'a' characters (cheap, deterministic)."""
    return [c.count("a") / max(len(c), 1) for c in completions]


TOKEN_SUM_MODULUS = 1009  # a prime: two different completions share a reward with probability ~1/1009


def token_sum_reward(completions, completion_ids=None, **kwargs) -> list[float]:
    """Rule reward for checks on random-weight policies: (sum of the completion's token ids mod 1009) / 1009.

    It depends on every token, so two completions of one prompt get the same reward with probability ~1/1009 and a
    group of 4 has zero spread with probability ~1e-9: the advantages are non-zero whatever the policy writes (a
    random policy never writing some letter would make a letter-counting reward 0 for every completion, every
    advantage 0, and "no parameter changed" would say nothing about the trainer). Without `completion_ids` (TRL
    passes them) the characters' code points are summed instead.
    """
    if completion_ids is None:
        completion_ids = [[ord(ch) for ch in text] for text in completions]
    return [(sum(int(t) for t in ids) % TOKEN_SUM_MODULUS) / TOKEN_SUM_MODULUS for ids in completion_ids]


# -- trainer construction ------------------------------------------------------------------------------------------


@dataclass
class Built:
    trainer: Any
    counters: list[TokenCounter]
    samples_per_step: float
    timers: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


def _dtype(size: Size) -> torch.dtype:
    return torch.bfloat16 if size.bf16 else torch.float32


def _common_args(size: Size, batch: int, **extra) -> dict[str, Any]:
    return dict(
        output_dir=tempfile.mkdtemp(prefix="trl_ext_bench_"), per_device_train_batch_size=batch,
        max_steps=size.warmup + size.steps, learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0,
        logging_steps=10**6, save_strategy="no", report_to=[], disable_tqdm=True, bf16=size.bf16,
        activation_checkpointing=size.activation_checkpointing, dataloader_num_workers=0, seed=0, **extra,
    )


def _lora(task_type: str):
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type=task_type)


def _tokenizer(built: BuiltModel):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(built.path)


def _counted_module(model: torch.nn.Module) -> torch.nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _rm_trainer(size: Size, plain: bool, dataset, batch: int, samples: float) -> Built:
    import trl

    import trl_ext
    from transformers import AutoModelForSequenceClassification

    built = build_model(size.decoder, "seq_cls", _dtype(size))
    model = AutoModelForSequenceClassification.from_pretrained(built.path, dtype=_dtype(size))
    config_cls, trainer_cls = (trl.RewardConfig, trl.RewardTrainer) if plain else (trl_ext.RewardConfig, trl_ext.RewardTrainer)
    args = config_cls(**_common_args(size, batch, max_length=size.prompt_len + size.completion_len + 8))
    trainer = trainer_cls(model, args=args, train_dataset=dataset, processing_class=_tokenizer(built))
    return Built(trainer, [TokenCounter(_counted_module(trainer.model), "policy", built.n_params)], samples)


def _dpo_trainer(size: Size, plain: bool, dataset, batch: int, samples: float, quantized: bool | None = None,
                 shape: str | None = None) -> Built:
    import trl

    import trl_ext

    shape = shape or size.decoder
    built = build_model(shape, "causal_lm", _dtype(size))
    config_cls, trainer_cls = (trl.DPOConfig, trl.DPOTrainer) if plain else (trl_ext.DPOConfig, trl_ext.DPOTrainer)
    args = config_cls(**_common_args(size, batch, max_length=size.prompt_len + size.completion_len + 8, beta=0.1))
    if quantized is None:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(built.path, dtype=_dtype(size))
        peft_config = _lora("CAUSAL_LM")
    else:
        model, peft_config = _load_policy(built, size, quantized)
    trainer = trainer_cls(model, args=args, train_dataset=dataset, processing_class=_tokenizer(built),
                          peft_config=peft_config)
    return Built(trainer, [TokenCounter(_counted_module(trainer.model), "policy", built.n_params)], samples)


def _load_policy(built: BuiltModel, size: Size, quantized: bool):
    from trl import ModelConfig

    from trl_ext import load_policy

    model_args = ModelConfig(model_name_or_path=built.path, load_in_4bit=quantized, use_peft=True, lora_r=16,
                             lora_alpha=32, lora_dropout=0.0, lora_target_modules=["all-linear"],
                             dtype="bfloat16" if size.bf16 else "float32")
    return load_policy(model_args, activation_checkpointing=size.activation_checkpointing)


def _grpo_trainer(size: Size, quantized: bool | None, with_bert: bool, shape: str | None = None,
                  plain: bool = True, kl_control: str = "fixed") -> Built:
    import trl

    import trl_ext
    from trl_ext import TextRewardModel

    shape = shape or size.decoder
    built = build_model(shape, "causal_lm", _dtype(size))
    n = size.grpo_prompts * size.grpo_generations
    config_cls = trl.GRPOConfig if plain else trl_ext.GRPOConfig
    extra = {} if plain else {"kl_control": kl_control, "kl_target": 0.5, "kl_horizon": 1000}
    args = config_cls(**_common_args(
        size, n, num_generations=size.grpo_generations, max_completion_length=size.grpo_completion_len,
        beta=0.04, temperature=1.0, log_completions=False, **extra))
    reward_funcs: list[Callable] = [letter_a_reward]
    timers: dict[str, Any] = {}
    counters: list[TokenCounter] = []
    if with_bert:
        rm_built = build_model(size.encoder, "bert_cls_reward", _dtype(size))
        from transformers import AutoModelForSequenceClassification

        rm_model = AutoModelForSequenceClassification.from_pretrained(rm_built.path, dtype=_dtype(size))
        rm = TextRewardModel(rm_model, _tokenizer(rm_built), max_length=512, batch_size=64, name="bert_cls_rm")
        timed = TimedCall(rm)
        reward_funcs.append(timed)
        timers["reward_model"] = timed
        counters.append(TokenCounter(rm.model, "reward_model", rm_built.n_params))
    if quantized is None:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(built.path, dtype=_dtype(size))
        peft_config = _lora("CAUSAL_LM")
    else:
        model, peft_config = _load_policy(built, size, quantized)
    trainer_cls = trl.GRPOTrainer if plain else trl_ext.GRPOTrainer
    trainer = trainer_cls(model, reward_funcs=reward_funcs, args=args,
                              train_dataset=prompt_only(n * (size.warmup + size.steps + 1), size.prompt_len),
                              processing_class=_tokenizer(built), peft_config=peft_config)
    counters.insert(0, TokenCounter(_counted_module(trainer.model), "policy", built.n_params))
    return Built(trainer, counters, float(n), timers)


# -- scenarios -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    build: Callable[[Size], Built]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    kind: str  # "overhead" | "speedup" | "memory" | "share" | "throughput_memory"
    baseline: Variant
    candidate: Variant
    goal: str
    sizes: tuple[str, ...] | None = None  # the sizes it runs at (None: every size)
    max_memory_ratio: float | None = None  # "memory" scenarios: the goal's peak-memory ratio (>= 1B model, GPU)


def _groups_for(size: Size, groups_per_step: int, k: int, seed: int = 0):
    return ranked_groups(groups_per_step * (size.warmup + size.steps + 1), k, size.prompt_len, size.completion_len,
                         seed)


def _rm_grouped(k: int) -> Scenario:
    def groups_per_step(size: Size) -> int:
        return size.rm_groups_k4 if k == 4 else size.rm_groups_k8

    def plain(size: Size) -> Built:
        g = groups_per_step(size)
        pairs_per_step = g * math.comb(k, 2)
        return _rm_trainer(size, True, expanded_pairs(_groups_for(size, g, k)), pairs_per_step, pairs_per_step)

    def grouped(size: Size) -> Built:
        g = groups_per_step(size)
        return _rm_trainer(size, False, _groups_for(size, g, k), g, g * math.comb(k, 2))

    return Scenario(
        f"rm_grouped_k{k}", f"RewardTrainer on K={k} ranked groups: plain TRL on the C(K,2) expanded pairs vs trl_ext "
        f"grouped (each completion forwarded once); same pairs per step", "speedup",
        Variant("plain TRL (pairs)", plain), Variant("trl_ext grouped", grouped),
        "speed-up >= 0.8 x forward-count ratio")


def _pairwise_overhead(name: str, trainer_fn: Callable[..., Built], batch_field: str, description: str,
                       goal: str) -> Scenario:
    """Plain TRL vs trl_ext on the same pairwise data (trl_ext's features off): what the subclass costs."""
    def make(plain: bool):
        def build(size: Size) -> Built:
            n = getattr(size, batch_field)
            return trainer_fn(size, plain, expanded_pairs(_groups_for(size, n, 2)), n, n)
        return build

    return Scenario(name, description, "overhead", Variant("plain TRL", make(True)), Variant("trl_ext", make(False)),
                    goal)


def _rm_overhead() -> Scenario:
    return _pairwise_overhead("rm_overhead", _rm_trainer, "rm_pairs",
                              "RewardTrainer, pairwise data, features off: plain TRL vs trl_ext (overhead)",
                              "step time <= 1.02 x plain TRL")


def _dpo_overhead() -> Scenario:
    return _pairwise_overhead("dpo_overhead", _dpo_trainer, "dpo_pairs",
                              "DPOTrainer with LoRA, pairwise data, features off: plain TRL vs trl_ext",
                              "step time <= 1.02 x plain TRL; DPO LoRA MFU >= 40 % on H100/H200")


def _dpo_grouped() -> Scenario:
    k = 4

    def plain(size: Size) -> Built:
        pairs_per_step = size.dpo_groups * math.comb(k, 2)
        return _dpo_trainer(size, True, expanded_pairs(_groups_for(size, size.dpo_groups, k)), pairs_per_step,
                            pairs_per_step)

    def grouped(size: Size) -> Built:
        return _dpo_trainer(size, False, _groups_for(size, size.dpo_groups, k), size.dpo_groups,
                            size.dpo_groups * math.comb(k, 2))

    return Scenario("dpo_grouped_k4", "DPOTrainer with LoRA on K=4 ranked groups: plain TRL on expanded pairs vs "
                    "trl_ext grouped; same pairs per step", "speedup",
                    Variant("plain TRL (pairs)", plain), Variant("trl_ext grouped", grouped),
                    "speed-up >= 0.8 x forward-count ratio")


def _dpo_qlora() -> Scenario:
    def make(quantized: bool):
        def build(size: Size) -> Built:
            pairs = expanded_pairs(_groups_for(size, size.dpo_pairs, 2))
            return _dpo_trainer(size, False, pairs, size.dpo_pairs, size.dpo_pairs, quantized=quantized,
                                shape=size.qlora_decoder)
        return build

    return Scenario("dpo_qlora", "trl_ext DPOTrainer: LoRA on the unquantised base (bf16 on GPU, fp32 on CPU) vs 4-bit NF4 QLoRA "
                    "(trl_ext.load_policy), same shape",
                    "memory", Variant("LoRA", make(False)), Variant("4-bit QLoRA", make(True)),
                    "peak memory <= 1.0 x bf16 LoRA at the 1B shape (activations dominate there)",
                    max_memory_ratio=1.0)


QLORA_LARGE_SHAPE = "llama-3.2-3b"


def _dpo_qlora_large() -> Scenario:
    """Where the weights dominate: a 3.2B model, one pair of 512-token sequences per step, activation checkpointing on
    in both variants (TRL's DPO computes the log-probabilities through a chunked LM head, so the 128k-vocabulary
    logits are never held whole)."""
    def make(quantized: bool):
        def build(size: Size) -> Built:
            large = dataclasses.replace(size, prompt_len=256, completion_len=256, activation_checkpointing=True)
            pairs = expanded_pairs(_groups_for(large, 1, 2))
            return _dpo_trainer(large, False, pairs, 1, 1, quantized=quantized, shape=QLORA_LARGE_SHAPE)
        return build

    return Scenario("dpo_qlora_3b", "trl_ext DPOTrainer at Llama-3.2-3B's shape, 1 pair x 512 tokens per step, "
                    "activation checkpointing in both: bf16 LoRA vs 4-bit NF4 QLoRA (trl_ext.load_policy)",
                    "memory", Variant("LoRA", make(False)), Variant("4-bit QLoRA", make(True)),
                    "peak memory <= 0.45 x bf16 LoRA (weights dominate)", sizes=("gpu",), max_memory_ratio=0.45)


def _grpo_qlora() -> Scenario:
    def make(quantized: bool) -> Callable[[Size], Built]:
        return lambda size: _grpo_trainer(size, quantized, with_bert=False, shape=size.qlora_decoder)

    return Scenario("grpo_qlora", "GRPOTrainer (TRL's), rule-based reward: LoRA on the unquantised base (bf16 on GPU, fp32 on CPU) vs "
                    "4-bit NF4 QLoRA policy",
                    "memory", Variant("LoRA", make(False)), Variant("4-bit QLoRA", make(True)),
                    "peak memory <= 1.0 x bf16 LoRA at the 1B shape (activations dominate there)",
                    max_memory_ratio=1.0)


def _grpo_overhead() -> Scenario:
    def make(**variant) -> Callable[[Size], Built]:
        return partial(_grpo_trainer, quantized=None, with_bert=False, kl_control="adaptive", **variant)

    return Scenario("grpo_adaptive_kl_overhead", "GRPO with LoRA, rule reward: plain TRL GRPOTrainer (fixed beta) vs "
                    "trl_ext GRPOTrainer with adaptive KL control", "overhead",
                    Variant("plain TRL (fixed beta)", make(plain=True)),
                    Variant("trl_ext adaptive KL", make(plain=False)),
                    "step time <= 1.02 x plain TRL")


def _grpo_bert() -> Scenario:
    def make(**variant) -> Callable[[Size], Built]:
        return partial(_grpo_trainer, quantized=None, plain=False, kl_control="adaptive", **variant)

    return Scenario("grpo_bert_rm", "trl_ext GRPOTrainer (adaptive KL) with LoRA: rule-based reward only vs + BERT-CLS "
                    "reward model (trl_ext.TextRewardModel, its own tokenizer)", "share",
                    Variant("rule reward", make(with_bert=False)), Variant("rule + BERT-CLS RM", make(with_bert=True)),
                    "BERT scoring <= 5 % of the GRPO step")


def _online_trainer(size: Size, algo: str) -> Built:
    """TRL's RLOOTrainer or trl_ext's PPOTrainer (critic = second LoRA adapter + head on the same base), LoRA policy,
    the same prompt stream, reward, completions per step and one optimizer step per rollout."""
    import trl

    import trl_ext

    built = build_model(size.decoder, "causal_lm", _dtype(size))
    n = size.grpo_prompts * size.grpo_generations
    common = _common_args(size, n, num_generations=size.grpo_generations,
                          max_completion_length=size.grpo_completion_len, beta=0.04, temperature=1.0,
                          log_completions=False)
    if algo == "ppo":
        args = trl_ext.PPOConfig(**common, num_iterations=1, steps_per_generation=1)
        trainer_cls = trl_ext.PPOTrainer
    else:
        args = trl.RLOOConfig(**common)
        trainer_cls = trl.RLOOTrainer
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(built.path, dtype=_dtype(size))
    trainer = trainer_cls(model, reward_funcs=[letter_a_reward], args=args,
                          train_dataset=prompt_only(n * (size.warmup + size.steps + 1), size.prompt_len),
                          processing_class=_tokenizer(built), peft_config=_lora("CAUSAL_LM"))
    return Built(trainer, [TokenCounter(_counted_module(trainer.model), "policy", built.n_params)], float(n))


def _ppo_vs_rloo() -> Scenario:
    return Scenario("ppo_vs_rloo", "LoRA policy, rule reward, same prompts and completions per step, one update per "
                    "rollout: TRL's RLOOTrainer vs trl_ext PPOTrainer (critic LoRA adapter + value head on the same "
                    "base, GAE)", "throughput_memory", Variant("TRL RLOO", partial(_online_trainer, algo="rloo")),
                    Variant("trl_ext PPO + critic", partial(_online_trainer, algo="ppo")), "samples/s >= 0.8 x and peak memory <= 1.25 x RLOO")


def all_scenarios() -> dict[str, Scenario]:
    scenarios = [_rm_overhead(), _rm_grouped(4), _rm_grouped(8), _dpo_overhead(), _dpo_grouped(), _dpo_qlora(),
                 _dpo_qlora_large(), _grpo_qlora(), _grpo_overhead(), _grpo_bert(), _ppo_vs_rloo()]
    return {s.name: s for s in scenarios}


def default_scenarios(size: str) -> dict[str, Scenario]:
    """The scenarios a run at `size` runs when none are named: those made for every size or for this one."""
    return {name: s for name, s in all_scenarios().items() if s.sizes is None or size in s.sizes}
