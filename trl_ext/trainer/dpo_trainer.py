# Copyright 2026 The trl_ext authors. Apache-2.0.
"""`DPOTrainer`: TRL's DPO trainer plus ranked data (grouped training) and a `weight` column.

Drop-in: `from trl_ext import DPOTrainer, DPOConfig` accepts every TRL DPO dataset and option; batches without ranked
groups or weights go through TRL's own loss unchanged. On top of it:

* **Ranked data** (`prompt`, `completions`, `ranks` | `scores`). With `ranked_training="grouped"` (default) a batch
  holds whole groups, each completion goes through the policy and the reference once, and the loss is the mean over
  groups of the mean over the group's pairs (weights 1/#pairs), equal to the weighted pairwise loss.
  `ranked_training="pairwise"` expands rankings to weighted pairs instead.
* **Pairwise data with a `weight` column**: the loss is the weighted mean of the per-pair losses.

Grouped and weighted batches use [`dpo_pair_losses`], which covers every loss type (and weighted combination) TRL 1.16
accepts, with TRL's values on TRL's pairs, and log every metric TRL logs under its name.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import trl
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict
from peft import PeftConfig, PeftModel
from tqdm.auto import tqdm
from transformers import (
    BitsAndBytesConfig,
    DataCollator,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    ProcessorMixin,
    TrainerCallback,
)
from transformers.modeling_outputs import CausalLMOutput

from .. import _trl_compat as compat
from ..data import is_ranked_dataset
from ..losses import dpo_pair_losses, plackett_luce_loss, weighted_mean
from .dpo_config import DPOConfig
from .config_utils import default_config, upgrade_config
from .ranked_data import GROUP_KEYS, RankedCollatorMixin, RankedDataMixin, dataset_columns

logger = logging.getLogger(__name__)

_DPOPreferenceCollator = compat.dpo_preference_collator()


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

    * `__init__` (TRL's signature): checks the options the grouped/weighted loss supports, calls TRL's `__init__`,
      then, unless a `data_collator` is given, swaps in [`DPODataCollator`] (TRL's collator plus groups and weights).
    * `_prepare_dataset`: ranked data is tokenized by TRL's own `_prepare_dataset` (one row per completion, so the
      token ids are exactly TRL's) and regrouped; pairwise data goes to TRL unchanged.
    * `compute_loss`: batches with groups or weights: one policy and one reference forward per row, per-pair losses
      from [`dpo_pair_losses`], weighted mean, TRL's metrics read back in one host sync. Other batches: TRL's
      `compute_loss`.
    * `log`: adds the ranking metrics (`rm/*`) of ranked groups, computed once per logging step on the device.
    """

    _tag_names = ["trl", "dpo", "trl_ext"]

    def __init__(
        self,
        model: str | PreTrainedModel | PeftModel,
        ref_model: PreTrainedModel | None = None,
        args: trl.DPOConfig | None = None,
        data_collator: DataCollator | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset
        | IterableDataset
        | DatasetDict
        | IterableDatasetDict
        | dict[str, Dataset | IterableDataset]
        | None = None,
        processing_class: PreTrainedTokenizerBase | ProcessorMixin | None = None,
        compute_metrics: Callable[[EvalPrediction], dict] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        quantization_config: BitsAndBytesConfig | None = None,
        peft_config: PeftConfig | None = None,
    ):
        # TRL would build its own DPOConfig for args=None, without our fields: build ours the same way.
        args = default_config(model, DPOConfig, "DPO") if args is None else upgrade_config(args, DPOConfig)
        self._check_grouped_options(args, train_dataset, eval_dataset)
        self.ranking_stats: dict[str, Counter] = {}
        super().__init__(
            model, ref_model, args, data_collator=data_collator, train_dataset=train_dataset,
            eval_dataset=eval_dataset, processing_class=processing_class, compute_metrics=compute_metrics,
            callbacks=callbacks, optimizers=optimizers, quantization_config=quantization_config,
            peft_config=peft_config,
        )
        if data_collator is None and isinstance(self.data_collator, _DPOPreferenceCollator):
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
        # ranked data in either mode (pairwise expansion adds a weight column) and weighted pairs use our loss
        needs_own_loss = any("weight" in c or is_ranked_dataset(c) for c in columns)
        if not needs_own_loss:
            return
        problems = []
        if args.f_divergence_type != "reverse_kl":
            problems.append(f"f_divergence_type={args.f_divergence_type!r}")
        if args.use_weighting:
            problems.append("use_weighting=True")
        if args.ld_alpha is not None:
            problems.append(f"ld_alpha={args.ld_alpha}")
        if args.precompute_ref_log_probs and any(is_ranked_dataset(c) for c in columns):
            problems.append("precompute_ref_log_probs=True")
        if args.ranked_loss == "plackett_luce" and list(args.loss_type) != ["sigmoid"]:
            problems.append(f"loss_type={list(args.loss_type)} with ranked_loss='plackett_luce' (the listwise loss "
                            "generalises 'sigmoid'; use loss_type=['sigmoid'])")
        if problems:
            raise ValueError(
                "Ranked data and a `weight` column use trl_ext's per-pair loss, which does not support "
                f"{', '.join(problems)}. For TRL's own loss, expand the rankings with trl_ext.ranked_to_pairs and drop "
                "its `weight` column."
            )

    # ----------------------------------------------------------------------------------------------- data
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        """Extends TRL's `_prepare_dataset` with ranked data, checked `weight` columns and (with
        `allow_empty_completions=False`) no empty completion. Runs under TRL's main-process-first guard, as TRL's own
        maps do; a streamed dataset's skips are counted as it is read."""
        with compat.main_process_first():
            columns = dataset_columns(dataset, dataset_name)
            if "completion_ids" in columns or ("chosen_ids" in columns and "rejected_ids" in columns):
                return dataset  # already tokenized
            from_ranking = self._check_preference_columns(columns, dataset_name)
            if from_ranking and args.ranked_training == "grouped":
                return self._prepare_ranked(dataset, processing_class, args, dataset_name)
            report = self._stream_report(dataset_name, pairwise=True) if isinstance(dataset, IterableDataset) else None
            try:
                if from_ranking:
                    dataset = self._expand_ranked(dataset, args, dataset_name)
                dataset = self._count_pairs_in(dataset, dataset_name)
                dataset = self._check_pairs(dataset, args, dataset_name, check_empty=not from_ranking)
                prepared = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            except StopIteration:  # a look at the first pair of a stream found none
                if report is None:
                    raise
                raise report.error() from None
            if isinstance(prepared, Dataset) and len(prepared) < len(dataset):  # TRL dropped prompts >= max_length
                dropped = len(dataset) - len(prepared)
                logger.warning("%s dataset: %d of %d pairs have a prompt that fills max_length=%s and were left out.",
                               dataset_name, dropped, len(dataset), args.max_length)
                self.ranking_stats.setdefault(dataset_name, Counter())["dropped_prompt_too_long"] = dropped
                if len(prepared) == 0:
                    raise ValueError(f"The {dataset_name} dataset has no pair left: the prompts of all {dropped} pairs "
                                     f"fill max_length={args.max_length}.")
            return self._finish_stream(prepared, dataset_name)

    def _tokenize_ranked(self, dataset, processing_class, args, dataset_name):
        """[`RankedDataMixin`] hook: TRL's own tokenization of each completion, regrouped.

        Each completion becomes a pseudo-pair (chosen == rejected) that TRL's `_prepare_dataset` tokenizes, so the
        token ids (chat template, EOS, prompt/completion split, dropped over-long prompts) are exactly TRL's; the rows
        are then put back together into their groups, in order.
        """
        columns = compat.dataset_column_names(dataset)
        weighted = "weight" in columns
        report = self._stream_report_for(dataset, dataset_name)

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

        function = flatten
        if report is not None:
            def function(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
                report.add("_groups_in", len(indices))  # the groups TRL's length filter may then leave out
                return flatten(batch, indices)

        flat = dataset.map(function, batched=True, with_indices=True, remove_columns=columns)
        tokenized = super()._prepare_dataset(flat, processing_class, args, dataset_name)
        if isinstance(dataset, IterableDataset):
            return IterableDataset.from_generator(_regroup_stream, gen_kwargs={"rows": tokenized, "report": report}), \
                Counter()
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
        """One policy and one reference forward per row; every TRL loss type on the batch's pairs, pair-weighted."""
        mode = "train" if self.model.training else "eval"
        extra = {key: inputs.pop(key) for key in GROUP_KEYS if key in inputs}
        pair_index, pair_weight = extra["pair_index"], extra["pair_weight"]
        completion_mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = compat.fused_lm_forward(model, inputs["input_ids"], inputs["attention_mask"], labels,
                                          output_router_logits=self.aux_loss_enabled)
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
        lengths = completion_mask.sum(dim=1)  # TRL normalises ipo / sigmoid_norm by these (prompt boundary included)
        tokens = shift_mask.sum(dim=1)  # ... and averages sft over these (the log-probs' tokens)
        loss = 0.0
        grouped = "completion_group" in extra
        implicit_rewards = self.beta * (logps - ref_logps)  # DPO's implicit reward β·log π/π_ref of each row
        if grouped and self.args.ranked_loss == "plackett_luce":  # the DPO paper's listwise objective (App. A.3)
            losses = [(plackett_luce_loss(implicit_rewards, extra["ranks"].to(logps.dtype), extra["completion_group"],
                                          num_groups=extra["group_weight"].shape[0],  # known from the shape: no sync
                                          group_weight=extra["group_weight"].to(logps.dtype),
                                          top_k=self.args.ranked_loss_top_k), 1.0)]
        else:
            losses = []
        for loss_type, loss_weight in ([] if losses else zip(self.loss_types, self.loss_weights, strict=True)):
            per_pair = dpo_pair_losses(
                chosen_logratios, rejected_logratios, self.beta, loss_type, self.label_smoothing, lengths[better],
                lengths[worse], chosen_logps=logps[better], rejected_logps=logps[worse], chosen_tokens=tokens[better],
                weight=pair_weight, discopop_tau=self.args.discopop_tau)
            losses.append((weighted_mean(per_pair, pair_weight), loss_weight))
        for value, loss_weight in losses:
            loss = loss + loss_weight * value
        if self.aux_loss_enabled:  # MoE router load balancing, as TRL adds it
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
        self._log_pair_metrics(mode, outputs, shift_mask, inputs["attention_mask"], logps, chosen_logratios,
                               rejected_logratios, better, worse, pair_weight,
                               aux_loss=outputs.aux_loss if self.aux_loss_enabled else None)
        if grouped:  # ranking metrics of the implicit reward against each group's gold ranking, computed at `log`
            self._buffer_group_scores(mode, implicit_rewards, extra)
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Extends TRL's `log`: first puts the ranking metrics (`rm/*`) of the groups since the last log, computed on
        the device from the implicit rewards kept at each step, into the metric dict TRL's `log` reports."""
        self._log_ranking_metrics("train" if self.model.training else "eval")
        super().log(logs, start_time)

    @torch.no_grad()
    def preference_accuracy(self, eval_dataset: Dataset | None = None) -> dict[str, float]:
        """Held-out preference accuracy over every pair of `eval_dataset` (default: the trainer's eval set).

        Returns `reward_accuracy` (the fraction of pairs where DPO's implicit reward β·(log π − log π_ref) ranks the
        preferred answer strictly higher) and `logp_accuracy` (the same for the policy's sequence log-prob alone,
        meaningful before training too): a tie is not a win, as in the `rewards/accuracies` TRL logs. The fractions of
        pairs tied are `reward_ties` and `logp_ties` (before training with a fresh adapter the policy is the reference
        and every pair ties: `reward_accuracy` 0, `reward_ties` 1), and `pairs` is the number of pairs.

        Each row is forwarded once per call at most: the reference's log-probs are computed on the first call and
        kept for the later calls on the same dataset (the reference does not train; not with `sync_ref_model`), and
        when the policy provably computes the reference ([`_policy_is_reference`]: a fresh LoRA adapter, or the
        trained adapter equal to its frozen `"ref"` copy) the policy's log-probs are the reference's.
        """
        dataset = self.eval_dataset if eval_dataset is None else self._prepare_dataset(
            eval_dataset, self.processing_class, self.args, "eval")
        was_training = self.model.training
        self.model.eval()
        policy_is_reference = self._policy_is_reference()
        cached_dataset, cached = getattr(self, "_ref_logps_cache", (None, None))
        if cached_dataset is not dataset or self.args.sync_ref_model:
            cached = None
        ref_batches = []
        per_example = []  # one row per dataset example (group or pair): wins by reward, wins by log-prob, pairs
        loader = self.get_eval_dataloader(dataset)
        progress = tqdm(loader, desc="Preference accuracy", leave=False,
                        disable=self.args.disable_tqdm or not self.accelerator.is_local_main_process)
        for index, batch in enumerate(progress):
            batch = compat.prepare_inputs(self, batch)
            n_rows = batch["input_ids"].shape[0]
            if "pair_index" in batch and "pair_group" in batch:
                pair_index, pair_example = batch["pair_index"], batch["pair_group"]
                n_examples = (batch["group_rows"].shape[0] if "group_rows" in batch  # no device read
                              else int(batch["completion_group"].max().item()) + 1)
            else:  # pairwise batch: rows [chosen..., rejected...]
                n_examples = n_rows // 2
                pair_example = torch.arange(n_examples, device=batch["input_ids"].device)
                pair_index = torch.stack([pair_example, pair_example + n_examples], dim=1)
            rows = {k: batch[k] for k in ("input_ids", "attention_mask", "completion_mask")}
            if cached is not None and index < len(cached) and cached[index].shape[0] == n_rows:
                ref_logps = cached[index]
            else:
                ref_logps = torch.cat(self.compute_ref_log_probs(self.ref_model or self.model, rows)).double()
            ref_batches.append(ref_logps)
            if policy_is_reference:
                logps = ref_logps
            else:
                labels = rows["input_ids"].masked_fill(rows["completion_mask"] == 0, -100)
                out = compat.fused_lm_forward(self.model, rows["input_ids"], rows["attention_mask"], labels)
                logps = out.log_probs[:, -(rows["completion_mask"].size(1) - 1):].sum(dim=1).double()

            def wins_and_ties(score: torch.Tensor) -> list[torch.Tensor]:
                better, worse = score[pair_index[:, 0]], score[pair_index[:, 1]]
                return [(better > worse).double(), (better == worse).double()]  # a win must be strict (TRL's)

            per_pair = torch.stack([*wins_and_ties(logps - ref_logps), *wins_and_ties(logps),
                                    torch.ones(pair_index.shape[0], dtype=torch.float64, device=logps.device)], dim=1)
            summed = torch.zeros(n_examples, 5, dtype=torch.float64, device=per_pair.device)
            # gather_for_metrics drops the examples the distributed sampler repeated to even out the batches
            per_example.append(self.accelerator.gather_for_metrics(summed.index_add_(0, pair_example, per_pair)))
        if not self.args.sync_ref_model:
            self._ref_logps_cache = (dataset, ref_batches)  # the dataset object itself: its rows and their order
        totals = torch.cat(per_example).sum(dim=0)
        self.model.train(was_training)
        reward_wins, reward_ties, logp_wins, logp_ties, pairs = totals.tolist()
        return {"reward_accuracy": reward_wins / pairs, "logp_accuracy": logp_wins / pairs,
                "reward_ties": reward_ties / pairs, "logp_ties": logp_ties / pairs, "pairs": int(pairs)}

    def _policy_is_reference(self) -> bool:
        """True only when the policy provably computes what the reference computes, so its forward can be skipped:
        a PEFT policy without a separate `ref_model` whose active LoRA adapter is either still at its initialisation
        (every `lora_B` zero, no DoRA: the adapter adds nothing to the base, which is the reference) or equal, tensor
        for tensor, to the frozen `"ref"` adapter TRL uses as the reference. Anything else: False."""
        from peft import PeftModel

        model = self.accelerator.unwrap_model(self.model)
        if self.ref_model is not None or not isinstance(model, PeftModel):
            return False
        active = model.active_adapter
        config = model.peft_config.get(active)
        if getattr(config, "peft_type", None) != "LORA" or getattr(config, "use_dora", False):
            return False
        if "ref" in model.peft_config:
            own = {n.replace(f".{active}.", ".?."): p for n, p in model.named_parameters() if f".{active}." in n}
            ref = {n.replace(".ref.", ".?."): p for n, p in model.named_parameters() if ".ref." in n}
            return own.keys() == ref.keys() and all(torch.equal(p, ref[n]) for n, p in own.items())
        lora_b = [p for n, p in model.named_parameters()
                  if f".{active}." in n and (".lora_B." in n or ".lora_embedding_B." in n)]
        return bool(lora_b) and all(not p.any() for p in lora_b)

    @torch.no_grad()
    def _log_pair_metrics(self, mode, outputs, shift_mask, attention_mask, logps, chosen_logratios,
                          rejected_logratios, better, worse, pair_weight, aux_loss=None) -> None:
        """Every metric TRL's DPO logs, under its name, over the batch's pairs (a mirror of TRL 1.16's metric block in
        `DPOTrainer._compute_loss`, trl/trainer/dpo_trainer.py lines 1533–1601, listed in docs/trl_internals.md,
        compared with TRL by tests/trainers/test_dpo_parity.py): each pair counts with its weight, and
        the per-token metrics weigh each pair's rows by their tokens, as TRL's do. On pairs of weight 1 (TRL's own
        pairs) the values are TRL's. Each metric is a ratio of sums over the processes; all of them (with the token
        count and `aux_loss`) are gathered in one collective and read back in one host sync."""
        metrics = compat.metrics(self, mode)
        w = pair_weight.double()
        mask = shift_mask.double()
        row_tokens = mask.sum(dim=1)
        row_sum = {name: (getattr(outputs, name)[:, -shift_mask.size(1):].double() * mask).sum(dim=1)
                   for name in ("entropy", "mean_logits", "is_top1")}
        chosen_rewards, rejected_rewards = self.beta * chosen_logratios.detach(), self.beta * rejected_logratios.detach()
        # (name, numerator, denominator, value when the denominator is 0 over all processes: None leaves it out)
        ratios = [
            ("entropy", (w * (row_sum["entropy"][better] + row_sum["entropy"][worse])).sum(),
             (w * (row_tokens[better] + row_tokens[worse])).sum(), 0.0),
            ("logits/chosen", (w * row_sum["mean_logits"][better]).sum(), (w * row_tokens[better]).sum(), 0.0),
            ("logits/rejected", (w * row_sum["mean_logits"][worse]).sum(), (w * row_tokens[worse]).sum(), 0.0),
            ("mean_token_accuracy", (w * row_sum["is_top1"][better]).sum(), (w * row_tokens[better]).sum(), 0.0),
        ]
        weight_sum = w.sum()  # no value for a batch of weight-0 pairs
        for name, values in (("rewards/chosen", chosen_rewards), ("rewards/rejected", rejected_rewards),
                             ("rewards/accuracies", (chosen_rewards > rejected_rewards).double()),
                             ("rewards/margins", chosen_rewards - rejected_rewards),
                             ("logps/chosen", logps.detach()[better]), ("logps/rejected", logps.detach()[worse])):
            ratios.append((name, (w * values.double()).sum(), weight_sum, None))
        local = [t for _, numerator, denominator, _ in ratios for t in (numerator, denominator)]
        local.append(attention_mask.sum().double())
        if aux_loss is not None:
            local.append(aux_loss.detach().double())
        # [processes, S]; gather_for_metrics as TRL gathers each of these scalars
        gathered = self.accelerator.gather_for_metrics(torch.stack(local)[None])
        totals = gathered.sum(dim=0)
        count = len(ratios)
        numerators, denominators = totals[0 : 2 * count : 2], totals[1 : 2 * count : 2]
        summary = [numerators / denominators, denominators, totals[2 * count : 2 * count + 1]]
        if aux_loss is not None:
            summary.append(gathered[:, -1].mean().reshape(1))
        values = torch.cat(summary).tolist()
        if aux_loss is not None:
            metrics["aux_loss"].append(values[-1])
        for (name, _, _, default), value, denominator in zip(ratios, values[:count], values[count : 2 * count]):
            value = value if denominator > 0 else default
            if value is not None:
                metrics[name].append(value)
        if mode == "train":
            compat.add_train_tokens(self, int(values[2 * count]))
        else:
            metrics["num_tokens"] = [compat.train_tokens(self)]


def _regroup(rows):
    """Consecutive (group, prompt_ids, completion_ids, ranks, weight) rows of one group -> one grouped example.

    TRL starts a pair's completion where the tokenized prompt and prompt + completion diverge, the earlier of the two
    (usually the prompt's end; earlier when tokens merge across the boundary). A group's rows share the earliest such
    point of its completions: each row's tokens are unchanged, and on K=2 groups the boundary is exactly TRL's.
    """

    def group_example(prompts: list[list[int]], completions: list[list[int]], ranks, weight) -> dict:
        shared = min(len(p) for p in prompts)  # every row's prompt ids are a prefix of the same tokenized prompt
        return {"prompt_ids": prompts[0][:shared], "ranks": ranks, "weight": weight,
                "completion_ids": [p[shared:] + c for p, c in zip(prompts, completions)]}

    current, prompts, completions, meta = None, [], [], None
    for group, prompt_ids, completion_ids, ranks, weight in rows:
        if group != current:
            if current is not None:
                yield group_example(prompts, completions, *meta)
            current, prompts, completions, meta = group, [], [], (ranks, weight)
        prompts.append(list(prompt_ids))
        completions.append(list(completion_ids))
    if current is not None:
        yield group_example(prompts, completions, *meta)


def _regroup_stream(rows, report=None):
    """`_regroup` on a stream. With a [`StreamReport`], the groups TRL left out (their prompt fills max_length) are
    counted: each gap in the group numbers as it is seen, and the ones after the last group at the end of the pass."""
    last = [-1]

    def numbered():
        for r in rows:
            if report is not None and r["_group"] > last[0] + 1:
                report.add("dropped_prompt_too_long", r["_group"] - last[0] - 1)
            last[0] = max(last[0], r["_group"])
            yield r["_group"], r["prompt_ids"], r["chosen_ids"], r["_ranks"], r["_weight"]

    yield from _regroup(numbered())
    if report is not None:
        report.add("dropped_prompt_too_long", max(report.counts.pop("_groups_in", 0) - last[0] - 1, 0))
