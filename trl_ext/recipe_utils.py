"""Data loading shared by the recipes: a hub dataset, or a local file with a seeded hold-out."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict

from .data import load_preference_file


@dataclass
class DataArguments:
    """Script arguments every recipe shares (parsed by `TrlParser` next to the trainer config and `ModelConfig`)."""

    dataset_path: str | None = field(
        default=None,
        metadata={"help": "Local .jsonl/.json(.gz) file, pairwise or ranked. Default: the recipe's bundled data."},
    )
    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset name (needs network)."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset config name."})
    dataset_train_split: str = field(default="train", metadata={"help": "Training split name."})
    dataset_test_split: str = field(default="test", metadata={"help": "Held-out split name."})
    eval_fraction: float = field(
        default=0.1, metadata={"help": "Held-out fraction when the data has no test split / `split` column."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Cap on training rows (quick runs)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Cap on held-out rows (quick runs)."})


def load_splits(args: DataArguments, default_path: str | os.PathLike, seed: int) -> DatasetDict:
    """`train`/`test` splits from a hub dataset, a local file with a `split` column, or a seeded random hold-out.

    Caps from `max_train_samples` / `max_eval_samples` are applied.
    """
    if args.dataset_name:
        from datasets import load_dataset

        data = load_dataset(args.dataset_name, name=args.dataset_config)
        if args.dataset_test_split in data:
            splits = DatasetDict(train=data[args.dataset_train_split], test=data[args.dataset_test_split])
        else:
            splits = data[args.dataset_train_split].train_test_split(test_size=args.eval_fraction, seed=seed)
    else:
        path = Path(args.dataset_path or default_path)
        dataset = load_preference_file(path)
        if "split" in dataset.column_names:
            splits = DatasetDict(
                train=dataset.filter(lambda s: s == args.dataset_train_split, input_columns="split"),
                test=dataset.filter(lambda s: s == args.dataset_test_split, input_columns="split"),
            ).remove_columns("split")
        else:
            splits = dataset.train_test_split(test_size=args.eval_fraction, seed=seed)
    for name, cap in (("train", args.max_train_samples), ("test", args.max_eval_samples)):
        if cap:
            splits[name] = splits[name].select(range(min(cap, len(splits[name]))))
        if len(splits[name]) == 0:
            raise ValueError(f"The {name} split is empty (dataset {args.dataset_name or args.dataset_path or default_path}).")
    return splits


def prompt_answer_dataset(dataset: Dataset) -> Dataset:
    """Prompt-only rows with an `answer` column for online RL with `final_number_reward`.

    Ranked data: the answer is the last number of the best-ranked completion (the bundled arithmetic data). Data
    that already has `prompt` and `answer` passes through; GSM8K/SVAMP-style `question` columns become `prompt`.
    """
    from .data import is_ranked_dataset
    from .rewards import completion_text, last_number

    columns = dataset.column_names
    if "prompt" not in columns and "question" in columns:
        dataset = dataset.rename_column("question", "prompt")
        columns = dataset.column_names
    if "answer" in columns:
        return dataset.select_columns(["prompt", "answer"])
    if not is_ranked_dataset(columns):
        raise ValueError(f"Need an 'answer' column or ranked completions to take answers from; columns: {columns}")

    def best_answer(example: dict, index: int) -> dict:
        ranks, scores = example.get("ranks"), example.get("scores")
        if ranks is None and scores is None:
            raise ValueError(f"row {index}, field 'ranks': neither ranks nor scores given.")
        best = ranks.index(min(ranks)) if ranks is not None else scores.index(max(scores))
        number = last_number(completion_text(example["completions"][best]))
        if number is None:
            raise ValueError(f"row {index}, field 'completions': the best completion holds no number.")
        # exact text: "%g" would print 1234567 as "1.23457e+06", whose last number is 6
        return {"prompt": example["prompt"], "answer": str(int(number)) if number.is_integer() else repr(number)}

    return dataset.map(best_answer, with_indices=True, remove_columns=columns)


@torch.no_grad()
def greedy_answer_accuracy(model, tokenizer, dataset: Dataset, max_new_tokens: int = 24, batch_size: int = 16) -> float:
    """Fraction of `dataset` rows whose greedy completion's last number equals `answer` (prompts may be chat)."""
    from .rewards import final_number_reward

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0.0
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right end
    try:
        for start in range(0, len(dataset), batch_size):
            rows = dataset[start:start + batch_size]
            texts = [p if isinstance(p, str) else tokenizer.apply_chat_template(p, tokenize=False,
                                                                               add_generation_prompt=True)
                     for p in rows["prompt"]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            completions = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            correct += sum(final_number_reward(completions, rows["answer"]))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return correct / len(dataset)


def default_config_argv(argv: list[str], default_config: str | os.PathLike) -> list[str]:
    """Prepend `--config <default_config>` unless the user passed `--config`; CLI flags still override the YAML."""
    return argv if "--config" in argv else ["--config", str(default_config), *argv]


__all__ = ["DataArguments", "Dataset", "default_config_argv", "greedy_answer_accuracy", "load_splits",
           "prompt_answer_dataset"]


@dataclass
class MathsRLScriptArguments(DataArguments):
    """Script arguments of the online-RL recipes (recipes/grpo.py, recipes/ppo.py): rule rewards + an optional RM."""

    reward_model_path: str | None = field(
        default=None, metadata={"help": "A sequence-classification RM dir (e.g. a BERT-CLS RM from reward_model.py)."})
    reward_model_weight: float = field(default=1.0, metadata={"help": "Weight of the RM reward vs the rule rewards."})
    reward_model_whiten: bool = field(default=True, metadata={"help": "Whiten RM scores with running statistics."})
    format_reward_weight: float = field(default=0.5, metadata={"help": "Weight of the format reward."})
    eval_max_new_tokens: int = field(default=24, metadata={"help": "Greedy decoding length for held-out accuracy."})


def run_maths_rl(trainer_cls: type, script_args: MathsRLScriptArguments, training_args, model_args,
                 default_data: str | os.PathLike, name: str) -> dict:
    """Shared body of recipes/grpo.py and recipes/ppo.py: SmolLM2 (LoRA/QLoRA) on maths prompts with the rule rewards
    (+ an optional `TextRewardModel`), greedy held-out answer accuracy before and after, adapter saved."""
    import time

    from transformers import AutoTokenizer

    from .qlora import load_policy
    from .reward_functions import TextRewardModel
    from .rewards import final_number_reward, format_reward

    start = time.perf_counter()
    if not model_args.model_name_or_path:
        from .models import smollm2_path

        model_args.model_name_or_path = smollm2_path()
    splits = load_splits(script_args, default_data, training_args.seed)
    train, test = prompt_answer_dataset(splits["train"]), prompt_answer_dataset(splits["test"])
    model, peft_config = load_policy(model_args, gradient_checkpointing=training_args.gradient_checkpointing,
                                     gradient_checkpointing_kwargs=training_args.gradient_checkpointing_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision,
                                              trust_remote_code=training_args.trust_remote_code)
    reward_funcs = [final_number_reward, format_reward]
    weights = [1.0, script_args.format_reward_weight]
    if script_args.reward_model_path:
        reward_funcs.append(TextRewardModel(script_args.reward_model_path, whiten=script_args.reward_model_whiten,
                                            name="reward_model"))
        weights.append(script_args.reward_model_weight)
    if training_args.reward_weights is None:
        training_args.reward_weights = weights
    trainer = trainer_cls(model, reward_funcs=reward_funcs, args=training_args, train_dataset=train,
                          processing_class=tokenizer, peft_config=peft_config)
    before = greedy_answer_accuracy(trainer.model, tokenizer, test, script_args.eval_max_new_tokens)
    trainer.train()
    after = greedy_answer_accuracy(trainer.model, tokenizer, test, script_args.eval_max_new_tokens)
    trainer.save_model(training_args.output_dir)
    ctl = [row for row in trainer.state.log_history if "kl_ctl/beta" in row]
    if trainer.accelerator.is_main_process:
        print(
            f"\n{name} on {model_args.model_name_or_path} ({'4-bit QLoRA' if model_args.load_in_4bit else 'LoRA'}), "
            f"kl_control={training_args.kl_control} (target {training_args.kl_target} nats per "
            f"{training_args.kl_target_unit}), {len(train)} train / {len(test)} held-out prompts\n"
            f"  held-out greedy answer accuracy  before {before:.3f}  after {after:.3f}\n"
            f"  beta {training_args.beta} -> {trainer.beta:.4g}"
            + (f"; last logged KL {ctl[-1]['kl_ctl/kl']:.4g}" if ctl else "")
            + f"\n  wall-clock {time.perf_counter() - start:.0f} s; adapter saved to {training_args.output_dir}"
        )
    return {"before": before, "after": after, "trainer": trainer}
