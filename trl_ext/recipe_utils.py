"""Data loading shared by the recipes: a hub dataset, or a local file with a seeded hold-out."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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


def default_config_argv(argv: list[str], default_config: str | os.PathLike) -> list[str]:
    """Prepend `--config <default_config>` unless the user passed `--config`; CLI flags still override the YAML."""
    return argv if "--config" in argv else ["--config", str(default_config), *argv]


__all__ = ["DataArguments", "Dataset", "default_config_argv", "load_splits"]
