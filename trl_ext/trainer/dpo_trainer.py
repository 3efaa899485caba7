# Copyright 2026 The trl_ext authors. Apache-2.0.
"""`DPOTrainer`: TRL's DPO trainer plus ranked data (grouped training) and a `weight` column.

Drop-in: `from trl_ext import DPOTrainer, DPOConfig` accepts every TRL DPO dataset and option; batches without ranked
groups or weights go through TRL's own loss unchanged. On top of it:

* **Ranked data** (`prompt`, `completions`, `ranks` | `scores`). With `ranked_training="grouped"` (default) a batch
  holds whole groups, each completion goes through the policy and the reference once, and the loss is the mean over
  groups of the mean over the group's pairs (weights 1/#pairs), equal to the weighted pairwise loss.
  `ranked_training="pairwise"` expands rankings to weighted pairs instead.
* **Pairwise data with a `weight` column**: the loss is the weighted mean of the per-pair losses.

Grouped and weighted batches use [`dpo_pair_losses`], which covers the loss types whose per-pair value depends only on
that pair (`GROUPED_DPO_LOSS_TYPES`); the others (`aot`, `sft`, `discopop`, ...) need TRL's unweighted pairwise path.
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
import trl
from datasets import Dataset, IterableDataset
from transformers.modeling_outputs import CausalLMOutput

from .. import _trl_compat as compat
from ..data import is_ranked_dataset
from ..losses import GROUPED_DPO_LOSS_TYPES, dpo_pair_losses, weighted_mean
from .dpo_config import DPOConfig
from .ranked_data import GROUP_KEYS, RankedCollatorMixin, RankedDataMixin, upgrade_config

logger = logging.getLogger(__name__)

_DPOPreferenceCollator = compat.dpo_preference_collator()
# Read once: code that rebinds `trl.DPOTrainer` to this class must not change how arguments are bound.
_TRL_INIT_SIGNATURE = inspect.signature(trl.DPOTrainer.__init__)


@dataclass
class DPODataCollator(RankedCollatorMixin, _DPOPreferenceCollator):
    """TRL's DPO collator, plus ranked groups and pair weights.

    Pairwise examples go through TRL's `DataCollatorForPreference` (rows: chosen..., rejected...); with a `weight`
    column the batch also gets `pair_weight`. Ranked examples (`prompt_ids`, `completion_ids`, `ranks`) are flattened
    by [`collate_ranked`] to one row per completion (prompt + completion, truncated as TRL truncates), with
    `pair_index` `[P, 2]`, `pair_group`, `pair_weight` = 1/#pairs of the group, and `completion_group`.
    """


class DPOTrainer(RankedDataMixin, trl.DPOTrainer):
    """[`trl.DPOTrainer`] extended with ranked data (grouped training) and weighted pairs.

    Overrides, each extending TRL's method:

    * `__init__`: checks the options the grouped/weighted loss supports, calls TRL's `__init__`, then swaps in
      [`DPODataCollator`] (TRL's collator plus groups and weights).
    * `_prepare_dataset`: ranked data is tokenized by TRL's own `_prepare_dataset` (one row per completion, so the
      token ids are exactly TRL's) and regrouped; pairwise data goes to TRL unchanged.
    * `compute_loss`: batches with groups or weights: one policy and one reference forward per row, per-pair losses
      from [`dpo_pair_losses`], weighted mean. Other batches: TRL's `compute_loss`.
    """

    _tag_names = ["trl", "dpo", "trl_ext"]

    def __init__(self, model, *args: Any, **kwargs: Any):
        bound = _TRL_INIT_SIGNATURE.bind(self, model, *args, **kwargs)
        bound.apply_defaults()
        config = bound.arguments["args"]
        if config is not None:
            config = upgrade_config(config, DPOConfig)
            bound.arguments["args"] = config
            self._check_grouped_options(config, bound.arguments["train_dataset"], bound.arguments["eval_dataset"])
        self.ranking_stats: dict[str, Counter] = {}
        user_collator = bound.arguments["data_collator"]
        super().__init__(*bound.args[1:], **bound.kwargs)
        if user_collator is None and isinstance(self.data_collator, _DPOPreferenceCollator):
            collator = self.data_collator
            self.data_collator = DPODataCollator(
                pad_token_id=collator.pad_token_id,
                max_length=collator.max_length,
                truncation_mode=collator.truncation_mode,
                pad_to_multiple_of=collator.pad_to_multiple_of,
                pair_strategy=self.args.pair_strategy,
            )

    @staticmethod
    def _check_grouped_options(args: DPOConfig, train_dataset, eval_dataset) -> None:
        datasets = [train_dataset] + (list(eval_dataset.values()) if isinstance(eval_dataset, dict) else [eval_dataset])
        columns = [set(compat.dataset_column_names(d)) for d in datasets if d is not None]
        needs_own_loss = any("weight" in c for c in columns) or any(
            is_ranked_dataset(c) and args.ranked_training == "grouped" for c in columns
        )
        if not needs_own_loss:
            return
        unsupported = [t for t in args.loss_type if t not in GROUPED_DPO_LOSS_TYPES]
        problems = []
        if unsupported:
            problems.append(f"loss_type {unsupported} (supported: {list(GROUPED_DPO_LOSS_TYPES)})")
        if args.f_divergence_type != "reverse_kl":
            problems.append(f"f_divergence_type={args.f_divergence_type!r}")
        if args.use_weighting:
            problems.append("use_weighting=True")
        if args.ld_alpha is not None:
            problems.append(f"ld_alpha={args.ld_alpha}")
        if args.precompute_ref_log_probs and any(is_ranked_dataset(c) for c in columns):
            problems.append("precompute_ref_log_probs=True")
        if problems:
            raise ValueError(
                "Ranked data in grouped mode and a `weight` column use trl_ext's per-pair loss, which does not support "
                f"{', '.join(problems)}. Use ranked_training='pairwise' without a weight column to get TRL's loss."
            )

    # ----------------------------------------------------------------------------------------------- data
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        """Extends TRL's `_prepare_dataset` with ranked data and checked `weight` columns."""
        columns = compat.dataset_column_names(dataset)
        if "completion_ids" in columns or ("chosen_ids" in columns and "rejected_ids" in columns):
            return dataset  # already tokenized
        if self._check_preference_columns(columns, dataset_name):
            if args.ranked_training == "grouped":
                return self._prepare_ranked(dataset, processing_class, args, dataset_name)
            dataset = self._expand_ranked(dataset, args, dataset_name)
        dataset = self._check_pair_weights(dataset, args, dataset_name)
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    def _tokenize_ranked(self, dataset, processing_class, args, dataset_name):
        """[`RankedDataMixin`] hook: TRL's own tokenization of each completion, regrouped.

        Each completion becomes a pseudo-pair (chosen == rejected) that TRL's `_prepare_dataset` tokenizes, so the
        token ids (chat template, EOS, prompt/completion split, dropped over-long prompts) are exactly TRL's; the rows
        are then put back together into their groups, in order.
        """
        weighted = "weight" in compat.dataset_column_names(dataset)

        def flatten(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
            out: dict[str, list] = {"prompt": [], "chosen": [], "rejected": [], "_group": [], "_ranks": [],
                                    "_weight": []}
            for offset, group in enumerate(indices):
                for completion in batch["completions"][offset]:
                    out["prompt"].append(batch["prompt"][offset])
                    out["chosen"].append(completion)
                    out["rejected"].append(completion)
                    out["_group"].append(group)
                    out["_ranks"].append(batch["ranks"][offset])
                    out["_weight"].append(float(batch["weight"][offset]) if weighted else 1.0)
            return out

        columns = compat.dataset_column_names(dataset)
        flat = dataset.map(flatten, batched=True, with_indices=True, remove_columns=columns)
        tokenized = super()._prepare_dataset(flat, processing_class, args, dataset_name)
        if isinstance(dataset, IterableDataset):
            return IterableDataset.from_generator(_regroup_stream, gen_kwargs={"rows": tokenized}), Counter()
        rows = zip(tokenized["_group"], tokenized["prompt_ids"], tokenized["chosen_ids"], tokenized["_ranks"],
                   tokenized["_weight"], strict=True)
        groups = list(_regroup(rows))
        # TRL drops rows whose prompt fills max_length; all completions of a group share the prompt, so whole groups go.
        counts = Counter({"dropped_prompt_too_long": len(dataset) - len(groups)})
        keys = ("prompt_ids", "completion_ids", "ranks", "weight")
        return Dataset.from_dict({key: [g[key] for g in groups] for key in keys}), counts

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        compat.set_signature_columns(self, [*compat.signature_columns(self), "completion_ids", "ranks", "weight"])

    # ----------------------------------------------------------------------------------------------- loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Batches with groups or weights use the per-pair path; everything else is TRL's `compute_loss`."""
        if "pair_index" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss = self._compute_pair_loss(model, inputs)
        return (loss, CausalLMOutput(loss=loss, logits=None)) if return_outputs else loss

    def _compute_pair_loss(self, model, inputs: dict[str, Any]) -> torch.Tensor:
        mode = "train" if self.model.training else "eval"
        extra = {key: inputs.pop(key) for key in GROUP_KEYS if key in inputs}
        pair_index, pair_weight = extra["pair_index"], extra["pair_weight"]
        completion_mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = compat.fused_lm_forward(model, inputs["input_ids"], inputs["attention_mask"], labels)
        shift_mask = completion_mask[:, 1:]
        seq_len = shift_mask.size(1)
        logps = outputs.log_probs[:, -seq_len:].sum(dim=1)  # one log-prob per row (completion)
        if "ref_chosen_logps" in inputs:  # precomputed by TRL for pairwise data
            ref_logps = torch.cat([inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]]).to(logps.device)
        else:
            # TRL's reference pass (separate ref model, or the policy with its adapter disabled / "ref" adapter) on the
            # same rows; it splits rows into two halves, which `cat` undoes.
            ref_inputs = {k: inputs[k] for k in ("input_ids", "attention_mask", "completion_mask")}
            ref_logps = torch.cat(self.compute_ref_log_probs(self.ref_model or self.model, ref_inputs))
        better, worse = pair_index[:, 0], pair_index[:, 1]
        chosen_logratios = logps[better] - ref_logps[better]
        rejected_logratios = logps[worse] - ref_logps[worse]
        lengths = shift_mask.sum(dim=1)
        loss = 0.0
        for loss_type, loss_weight in zip(self.loss_types, self.loss_weights, strict=True):
            per_pair = dpo_pair_losses(chosen_logratios, rejected_logratios, self.beta, loss_type,
                                       self.label_smoothing, lengths[better], lengths[worse])
            loss = loss + loss_weight * weighted_mean(per_pair, pair_weight)
        self._log_pair_metrics(mode, outputs, shift_mask, inputs["attention_mask"], logps, chosen_logratios,
                               rejected_logratios, better, worse, pair_weight)
        return loss

    @torch.no_grad()
    def preference_accuracy(self, eval_dataset: Dataset | None = None) -> dict[str, float]:
        """Held-out preference accuracy over every pair of `eval_dataset` (default: the trainer's eval set).

        Returns `reward_accuracy` (DPO's implicit reward β·(log π − log π_ref) ranks the preferred answer higher;
        before training with a fresh adapter every pair ties, which counts 0.5) and `logp_accuracy` (the policy's
        sequence log-prob alone ranks it higher; meaningful before training too), ties counted 0.5, and `pairs`.
        """
        dataset = self.eval_dataset if eval_dataset is None else self._prepare_dataset(
            eval_dataset, self.processing_class, self.args, "eval")
        was_training = self.model.training
        self.model.eval()
        per_example = []  # one row per dataset example (group or pair): wins by reward, wins by log-prob, pairs
        for batch in self.get_eval_dataloader(dataset):
            batch = compat.prepare_inputs(self, batch)
            n_rows = batch["input_ids"].shape[0]
            if "pair_index" in batch and "pair_group" in batch:
                pair_index, pair_example = batch["pair_index"], batch["pair_group"]
                n_examples = int(batch["completion_group"].max().item()) + 1
            else:  # pairwise batch: rows [chosen..., rejected...]
                n_examples = n_rows // 2
                pair_example = torch.arange(n_examples, device=batch["input_ids"].device)
                pair_index = torch.stack([pair_example, pair_example + n_examples], dim=1)
            rows = {k: batch[k] for k in ("input_ids", "attention_mask", "completion_mask")}
            labels = rows["input_ids"].masked_fill(rows["completion_mask"] == 0, -100)
            out = compat.fused_lm_forward(self.model, rows["input_ids"], rows["attention_mask"], labels)
            logps = out.log_probs[:, -(rows["completion_mask"].size(1) - 1):].sum(dim=1).double()
            ref_logps = torch.cat(self.compute_ref_log_probs(self.ref_model or self.model, rows)).double()

            def wins(score: torch.Tensor) -> torch.Tensor:
                better, worse = score[pair_index[:, 0]], score[pair_index[:, 1]]
                return (better > worse).double() + 0.5 * (better == worse).double()

            per_pair = torch.stack([wins(logps - ref_logps), wins(logps), torch.ones_like(wins(logps))], dim=1)
            summed = torch.zeros(n_examples, 3, dtype=torch.float64, device=per_pair.device)
            # gather_for_metrics drops the examples the distributed sampler repeated to even out the batches
            per_example.append(self.accelerator.gather_for_metrics(summed.index_add_(0, pair_example, per_pair)))
        totals = torch.cat(per_example).sum(dim=0)
        self.model.train(was_training)
        pairs = totals[2].item()
        return {"reward_accuracy": totals[0].item() / pairs, "logp_accuracy": totals[1].item() / pairs,
                "pairs": int(pairs)}

    @torch.no_grad()
    def _log_pair_metrics(self, mode, outputs, shift_mask, attention_mask, logps, chosen_logratios,
                          rejected_logratios, better, worse, pair_weight) -> None:
        """TRL's DPO metric names, each a pair-weighted mean gathered over processes."""
        metrics = compat.metrics(self, mode)
        gather = self.accelerator.gather_for_metrics

        def add(name: str, values: torch.Tensor) -> None:
            w = pair_weight.to(values.dtype)
            totals = gather(torch.stack([(values * w).sum(), w.sum()]).unsqueeze(0)).sum(dim=0)
            if totals[1] > 0:  # pairs of weight 0 only: nothing to report
                metrics[name].append((totals[0] / totals[1]).item())

        chosen_rewards, rejected_rewards = self.beta * chosen_logratios.detach(), self.beta * rejected_logratios.detach()
        add("rewards/chosen", chosen_rewards)
        add("rewards/rejected", rejected_rewards)
        add("rewards/accuracies", (chosen_rewards > rejected_rewards).to(chosen_rewards.dtype))
        add("rewards/margins", chosen_rewards - rejected_rewards)
        add("logps/chosen", logps.detach()[better])
        add("logps/rejected", logps.detach()[worse])
        entropy = outputs.entropy[:, -shift_mask.size(1):].detach()
        totals = gather(torch.stack([(entropy * shift_mask).sum(), shift_mask.sum().to(entropy.dtype)]).unsqueeze(0))
        totals = totals.sum(dim=0)
        metrics["entropy"].append((totals[0] / totals[1].clamp(min=1)).item())
        if mode == "train":
            compat.add_train_tokens(self, gather(attention_mask.sum()).sum().item())
        else:
            metrics["num_tokens"] = [compat.train_tokens(self)]


def _regroup(rows):
    """Consecutive (group, prompt_ids, completion_ids, ranks, weight) rows of one group -> one grouped example."""
    current, entry = None, None
    for group, prompt_ids, completion_ids, ranks, weight in rows:
        if group != current:
            if entry is not None:
                yield entry
            current = group
            entry = {"prompt_ids": prompt_ids, "completion_ids": [], "ranks": ranks, "weight": weight}
        entry["completion_ids"].append(completion_ids)
    if entry is not None:
        yield entry


def _regroup_stream(rows):
    yield from _regroup((r["_group"], r["prompt_ids"], r["chosen_ids"], r["_ranks"], r["_weight"]) for r in rows)
