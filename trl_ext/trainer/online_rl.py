# Copyright 2026 The trl_ext authors. Apache-2.0.
"""What our online-RL trainers (GRPO, RLOO, PPO) share: one `__init__` sequence around TRL's, a prompt column (and a
prompt in every row) checked before training starts, and rewards that are numbers (None or NaN meaning "no reward
from this function", as in TRL) and never infinite."""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset
from torch import nn

from .. import _trl_compat as compat
from ..data.ranked import _emptiness_problem
from .kl_control import KLControlledTrainerMixin


def check_prompt_rows(dataset: Dataset, name: str) -> None:
    """A row whose `prompt` is missing (None) or an empty message list would fail deep inside generation, mid-run:
    refuse it now, naming the row. Vectorised on the Arrow column (one pass, no Python loop over the rows)."""
    column = dataset.select_columns("prompt").with_format("arrow")[:].column("prompt")
    bad = pc.is_null(column)
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        bad = pc.or_(bad, pc.equal(pc.list_value_length(column), 0))
    if not pc.any(bad).as_py():
        return
    index = pc.index(bad, True).as_py()
    problem = _emptiness_problem(dataset[index]["prompt"]) or "is not a prompt"
    raise ValueError(f"The {name} dataset: row {index}, field 'prompt': prompt {problem}.")


def check_reward_values(values: Any, name: str) -> None:
    """Refuse reward-function output TRL would turn into an obscure error or a NaN run, naming the function and the
    completion: every value must be a number or None, and finite unless NaN ("no reward", as None)."""
    for position, value in enumerate(values):
        if value is None:
            continue
        if not isinstance(value, (numbers.Real, torch.Tensor)) or (isinstance(value, torch.Tensor) and value.numel() != 1):
            raise ValueError(f"reward function '{name}' returned {value!r} (a {type(value).__name__}) for completion "
                             f"{position}: a reward must be a number, or None for no reward")
        if math.isinf(float(value)):
            raise ValueError(f"reward function '{name}' returned {float(value)} for completion {position}: rewards "
                             "must be finite (return None or NaN for no reward)")


def _checked_reward_func(func: Any, name: str) -> Any:
    """`func`, with its output checked by [`check_reward_values`] (async functions stay async)."""
    if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(getattr(func, "__call__", None)):
        async def wrapper(*args, **kwargs):
            values = await func(*args, **kwargs)
            check_reward_values(values, name)
            return values
    else:
        def wrapper(*args, **kwargs):
            values = func(*args, **kwargs)
            check_reward_values(values, name)
            return values
    wrapper.__name__ = name
    wrapper.__wrapped__ = func
    return functools.wraps(func, assigned=("__doc__", "__module__"), updated=())(wrapper)


class OnlineRLChecksMixin:
    """Extends TRL's online trainers: `_check_prompt_columns` before TRL's `__init__`, reward functions wrapped
    with output checks after it (`_check_reward_funcs`), a training set too small for one rollout refused
    (`_check_rollout_fits`), and `_calculate_rewards` (TRL's, then refusing an
    infinite reward from a reward model)."""

    @staticmethod
    def _check_prompt_columns(train_dataset: Any, eval_dataset: Any, rollout_func: Any = None,
                              environment_factory: Any = None) -> None:
        """`train_dataset` / `eval_dataset` must have a `prompt` column, unless an `environment_factory` or
        `rollout_func` (TRL's) builds the rollouts from other columns."""
        if environment_factory is not None or rollout_func is not None:
            return
        datasets = {"train": train_dataset, "eval": eval_dataset}
        for split, dataset in datasets.items():
            for name, part in (dataset.items() if isinstance(dataset, dict) else [(split, dataset)]):
                if part is None:
                    continue
                columns = compat.dataset_column_names(part)
                if "prompt" not in columns:
                    raise ValueError(f"The {name} dataset has no 'prompt' column (columns: {columns}); online "
                                     "training generates completions from prompt-only rows.")
                if isinstance(part, Dataset):
                    check_prompt_rows(part, name)

    def _check_rollout_fits(self) -> None:
        """A sized training set must hold one rollout's prompts: TRL's sampler drops an incomplete rollout, so a
        smaller set would train zero steps without an error."""
        dataset, args = self.train_dataset, self.args
        if dataset is None or not hasattr(dataset, "__len__"):
            return
        needed = args.generation_batch_size // args.num_generations
        if len(dataset) < needed:
            raise ValueError(
                f"The train dataset has {len(dataset)} prompts but one rollout takes {needed} (generation_batch_size "
                f"{args.generation_batch_size} / num_generations {args.num_generations}): nothing would be trained. "
                "Use more prompts, or lower per_device_train_batch_size or steps_per_generation.")

    def _check_reward_funcs(self) -> None:
        self.reward_funcs = [f if isinstance(f, nn.Module) else _checked_reward_func(f, name)
                             for f, name in zip(self.reward_funcs, self.reward_func_names, strict=True)]

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        infinite = torch.isinf(rewards_per_func)
        if infinite.any():
            row, column = (int(i) for i in infinite.nonzero()[0])
            raise ValueError(f"reward '{self.reward_func_names[column]}' is {rewards_per_func[row, column].item()} for "
                             f"completion {row} of the generation batch: rewards must be finite")
        return rewards_per_func


class OnlineRLTrainerMixin(KLControlledTrainerMixin, OnlineRLChecksMixin):
    """The one `__init__` sequence of our GRPO, RLOO and PPO trainers, around TRL's `__init__` (each trainer's own
    `__init__` keeps its TRL parent's signature and hands every argument to [`_init_online_trainer`])."""

    def _init_online_trainer(self, config_cls: type, suffix: str, model: Any, args: Any, *,
                             require_config: bool = False, **trl_kwargs: Any) -> None:
        """Our config by default (TRL's would lack the KL fields), re-checked, and the prompt columns checked before
        TRL's `__init__` (which decides from `beta` whether to build a reference model); after it, the reward
        functions wrapped with output checks, a training set too small for one rollout refused, and the KL controller
        with its callback. `require_config`: refuse a config that is not a `config_cls` (PPO needs its own fields)."""
        args = self._kl_config(model, args, config_cls, suffix)
        if require_config and not isinstance(args, config_cls):
            raise TypeError(f"{type(self).__name__} needs a trl_ext.{config_cls.__name__}, got {type(args).__name__}.")
        self._check_prompt_columns(trl_kwargs.get("train_dataset"), trl_kwargs.get("eval_dataset"),
                                   trl_kwargs.get("rollout_func"), trl_kwargs.get("environment_factory"))
        super().__init__(model=model, args=args, **trl_kwargs)
        self._check_reward_funcs()
        self._check_rollout_fits()
        self._setup_kl_control()
