# Copyright 2026 The trl_ext authors. Apache-2.0.
"""`RewardTrainer`: TRL's reward trainer plus ranked data, grouped training and a BERT-CLS head.

Drop-in: `from trl_ext import RewardTrainer, RewardConfig` accepts everything TRL's does. On top of it:

* **Ranked data** (`prompt`, `completions`, `ranks` | `scores`). In the default `ranked_training="grouped"` mode a
  batch holds whole groups (`per_device_train_batch_size` counts prompts), each completion is forwarded once, and the
  loss is the mean over groups of the mean over that group's pairs of `-log σ(r_better - r_worse)` (InstructGPT).
  `ranked_training="pairwise"` expands the rankings to weighted pairs instead (the TRL-style baseline).
* **Pairwise data** honours a `weight` column (weighted mean of the per-pair losses) next to TRL's `margin`.
* **Encoder reward models** (`reward_head="cls"`, chosen automatically for BERT-family checkpoints): a
  [`BertClsRewardModel`], (prompt, response) encoded as a sentence pair with `token_type_ids`, and no EOS token needed.
* **Over-long inputs**, the same in both modes: the [CLS] head cuts the prompt from the left (the response survives);
  a last-token head leaves out what is longer than `max_length`, as TRL drops such pairs (grouped training leaves the
  completion out of its group, which removes exactly those pairs).
* **Metrics**: TRL's (`accuracy`, `margin`, `min/mean/max_reward`, `num_tokens`), pair-weighted where pairs carry
  weights; ranked data adds `rm/kendall_tau`, `rm/spearman` and `rm/top1_accuracy` (means over groups); pairwise
  evaluation adds `rm/auc`.
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
from transformers import (
    AutoConfig,
    BitsAndBytesConfig,
    DataCollator,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    set_seed,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from .. import _trl_compat as compat
from ..data import rank_pairs
from ..losses import bradley_terry_loss, plackett_luce_loss, weighted_mean
from ..modeling_bert_cls_reward import (
    BertClsRewardModel,
    encode_prompt_response,
    is_encoder_config,
    max_input_tokens,
    render_messages,
)
from .config_utils import default_config, upgrade_config
from .ranked_data import GROUP_KEYS, RankedCollatorMixin, RankedDataMixin, dataset_columns, map_kwargs
from .reward_config import RewardConfig

logger = logging.getLogger(__name__)


@dataclass
class RewardDataCollator(RankedCollatorMixin, compat.reward_preference_collator()):
    """Collator for pairwise *and* ranked examples.

    Pairwise examples (`chosen_ids`, `rejected_ids`) go through TRL's `DataCollatorForPreference`; this adds the
    padded `token_type_ids` of the [CLS] head and `pair_weight` when the examples carry them. Ranked examples
    (`completion_ids`: one id list per completion, `ranks`) are flattened by [`collate_ranked`] so every completion is
    one row (forwarded once), with the pair indices of the grouped loss.
    """

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        output = super().torch_call(examples)
        if "chosen_token_type_ids" in examples[0]:
            type_ids = [torch.tensor(ex["chosen_token_type_ids"]) for ex in examples]
            type_ids += [torch.tensor(ex["rejected_token_type_ids"]) for ex in examples]
            output["token_type_ids"] = compat.pad(type_ids, 0, pad_to_multiple_of=self.pad_to_multiple_of)
        return output


def _model_config(model: str | PreTrainedModel, trust_remote_code: bool) -> Any:
    if isinstance(model, str):
        return AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.config


class RewardTrainer(RankedDataMixin, trl.RewardTrainer):
    """[`trl.RewardTrainer`] extended with ranked data (grouped training), `weight`, a BERT-CLS head and ranking metrics.

    Overrides, each extending TRL's method rather than replacing it:

    * `__init__` (TRL's signature): resolves the reward head (builds a [`BertClsRewardModel`] from an encoder
      checkpoint), then calls TRL's `__init__` and, unless a `data_collator` is given, swaps in [`RewardDataCollator`]
      (TRL's collator plus ranked batches, token types, weights).
    * `_prepare_dataset`: ranked data and the [CLS] head need their own tokenization; TRL's method still handles
      pairwise data for decoder reward models.
    * `compute_loss`: plain pairwise batches are TRL's `compute_loss` unchanged; grouped and weighted batches use
      one Bradley-Terry path with pair weights (equal to TRL's loss on TRL's pairs).
    * `log`: adds the ranking metrics (`rm/*`), computed once per logging step on the device from the rewards kept
      since the last log, and `rm/auc` over the whole evaluation set of pairwise data.
    """

    _tag_names = ["trl", "reward-trainer", "trl_ext"]

    def __init__(
        self,
        model: str | PreTrainedModel | PeftModel,
        args: trl.RewardConfig | None = None,
        data_collator: DataCollator | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset
        | IterableDataset
        | DatasetDict
        | IterableDatasetDict
        | dict[str, Dataset | IterableDataset]
        | None = None,
        processing_class: PreTrainedTokenizerBase | None = None,
        compute_metrics: Callable[[EvalPrediction], dict] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        optimizer_cls_and_kwargs: tuple[type[torch.optim.Optimizer], dict[str, Any]] | None = None,
        preprocess_logits_for_metrics: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        quantization_config: BitsAndBytesConfig | None = None,
        peft_config: PeftConfig | None = None,
    ):
        args = default_config(model, RewardConfig, "Reward") if args is None else upgrade_config(args, RewardConfig)
        config = _model_config(model, args.trust_remote_code)
        encoder = is_encoder_config(config)
        head = args.reward_head
        if head == "auto":
            head = "cls" if encoder else "last_token"
        if head == "cls" and not encoder:
            raise ValueError(
                f"reward_head='cls' needs a BERT-family encoder, but the model is a `{config.model_type}`; "
                "use reward_head='last_token' for decoder reward models."
            )
        if args.freeze_encoder and head != "cls":
            raise ValueError("freeze_encoder=True needs reward_head='cls' (an encoder reward model).")
        # The encoder is loaded here with `model_init_kwargs`; TRL, given the loaded model, would warn that they are
        # ignored. They are hidden from TRL's `__init__` and put back after it: the user's config is left as it was.
        consumed = head == "cls" and isinstance(model, str) and args.model_init_kwargs is not None
        if head == "cls":
            model = self._build_cls_model(model, config, args)
        self.reward_head = head
        self._encoder_limit = max_input_tokens(model.config) if head == "cls" else None
        self.ranking_stats: dict[str, Counter] = {}
        init_kwargs = args.model_init_kwargs
        if consumed:
            args.model_init_kwargs = None
        try:
            super().__init__(
                model, args, data_collator=data_collator, train_dataset=train_dataset, eval_dataset=eval_dataset,
                processing_class=processing_class, compute_metrics=compute_metrics, callbacks=callbacks,
                optimizers=optimizers, optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
                preprocess_logits_for_metrics=preprocess_logits_for_metrics, quantization_config=quantization_config,
                peft_config=peft_config,
            )
        finally:
            args.model_init_kwargs = init_kwargs
        if data_collator is None:
            self.data_collator = RewardDataCollator(
                pad_token_id=self.processing_class.pad_token_id,
                pad_to_multiple_of=self.args.pad_to_multiple_of,
                pair_strategy=self.args.pair_strategy,
            )

    @staticmethod
    def _build_cls_model(model: str | PreTrainedModel, config: Any, args: RewardConfig) -> PreTrainedModel:
        if args.pooling is not None and isinstance(model, str) is False and isinstance(model, BertClsRewardModel) \
                and model.config.pooling != args.pooling:
            raise ValueError(f"pooling={args.pooling!r}, but the BertClsRewardModel given pools with "
                             f"{model.config.pooling!r}; build it with BertClsRewardModel.from_encoder(..., pooling=...).")
        if not isinstance(model, str):
            if args.freeze_encoder:
                if not isinstance(model, BertClsRewardModel):
                    raise ValueError(
                        f"freeze_encoder=True needs a BertClsRewardModel, got {type(model).__name__}; build one with "
                        "BertClsRewardModel.from_encoder(path) or pass the encoder path."
                    )
                model.freeze_encoder()
            return model
        init_kwargs = dict(args.model_init_kwargs or {})
        init_kwargs.setdefault("dtype", torch.float32)  # as TRL: reward models load in float32 unless told otherwise
        if config.model_type == BertClsRewardModel.config_class.model_type:
            loaded = BertClsRewardModel.from_pretrained(model, **init_kwargs)
            if args.pooling is not None and loaded.config.pooling != args.pooling:
                raise ValueError(f"pooling={args.pooling!r}, but {model} was trained with {loaded.config.pooling!r}.")
            if args.freeze_encoder:
                loaded.freeze_encoder()
            return loaded
        # the head is initialised at random here, before Trainer seeds: seed first, as TRL's RewardTrainer does before
        # AutoModelForSequenceClassification adds its head
        set_seed(args.seed)
        return BertClsRewardModel.from_encoder(model, freeze_encoder=args.freeze_encoder, pooling=args.pooling or "cls",
                                               **init_kwargs)

    # ----------------------------------------------------------------------------------------------- data
    def _prepare_dataset(
        self,
        dataset: Dataset | IterableDataset,
        processing_class: PreTrainedTokenizerBase,
        args: RewardConfig,
        dataset_name: str,
    ) -> Dataset | IterableDataset:
        """Extends TRL's `_prepare_dataset`: ranked data and the [CLS] head get their own tokenization. Runs under
        TRL's main-process-first guard, as TRL's own maps do; a streamed dataset's skips are counted as it is read."""
        with compat.main_process_first():
            columns = dataset_columns(dataset, dataset_name)
            if "completion_ids" in columns or ("chosen_ids" in columns and "rejected_ids" in columns):
                return dataset  # already tokenized
            if "chosen_input_ids" in columns and "rejected_input_ids" in columns:
                # TRL's legacy tokenized columns: TRL warns and renames them
                return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            from_ranking = self._check_preference_columns(columns, dataset_name)
            if from_ranking and args.ranked_training == "grouped":
                return self._prepare_ranked(dataset, processing_class, args, dataset_name)
            report = self._stream_report(dataset_name, pairwise=True) if isinstance(dataset, IterableDataset) else None
            try:
                if from_ranking:
                    dataset = self._expand_ranked(dataset, args, dataset_name)
                dataset = self._count_pairs_in(dataset, dataset_name)
                dataset = self._check_pairs(dataset, args, dataset_name, check_empty=not from_ranking)
                if self.reward_head == "cls":
                    prepared = self._prepare_cls_pairs(dataset, processing_class, args, dataset_name, from_ranking)
                else:
                    prepared = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
                    if isinstance(prepared, Dataset) and len(prepared) < len(dataset):  # TRL dropped pairs > max_length
                        dropped = len(dataset) - len(prepared)
                        logger.warning("%s dataset: %d of %d pairs are longer than max_length=%s and were left out.",
                                       dataset_name, dropped, len(dataset), args.max_length)
                        self.ranking_stats.setdefault(dataset_name, Counter())["dropped_too_long_pairs"] = dropped
                        if len(prepared) == 0:
                            raise ValueError(f"The {dataset_name} dataset has no pair left: all {dropped} pairs are "
                                             f"longer than max_length={args.max_length}.")
                        if from_ranking:
                            prepared = _renormalise_group_weights(dataset, prepared)
            except StopIteration:  # a look at the first pair of a stream found none
                if report is None:
                    raise
                raise report.error() from None
            return self._finish_stream(prepared, dataset_name)

    def _max_length(self, processing_class: PreTrainedTokenizerBase, args: RewardConfig) -> int | None:
        if self.reward_head != "cls":
            return args.max_length
        # An encoder cannot read past its position embeddings (512 for BERT/MiniLM), whatever the tokenizer says.
        limits = [args.max_length, getattr(processing_class, "model_max_length", None), self._encoder_limit]
        limits = [x for x in limits if x is not None and x < 1_000_000]
        return min(limits) if limits else None

    def _tokenize_ranked(self, dataset, processing_class, args, dataset_name):
        """[`RankedDataMixin`] hook: every completion of a group encoded with the active head (own tokenization).

        Over-long inputs follow the head's policy in both training modes: the [CLS] head truncates the prompt from
        the left; with a last-token head a completion longer than `max_length` is left out of its group, which drops
        exactly the pairs TRL drops when it filters the expanded pairs (a group left without a pair is skipped).
        """
        cls_head = self.reward_head == "cls"
        cut_key = "truncated_completions" if cls_head else "dropped_too_long_completions"
        tokenize = ranked_tokenizer(self.reward_head, processing_class, self._max_length(processing_class, args),
                                    args.pair_strategy)
        report = self._stream_report_for(dataset, dataset_name)
        function = tokenize
        if report is not None:
            def function(example):  # the same, counting into the stream's report
                out = tokenize(example)
                report.add(cut_key, out["_cut"])
                report.add("skipped_too_long", int(not out["_trainable"]))
                return out

        drop = [c for c in compat.dataset_column_names(dataset) if c not in ("ranks", "weight")]
        dataset = dataset.map(function, remove_columns=drop,
                              **map_kwargs(dataset, args, f"Tokenizing ranked {dataset_name} dataset"))
        counts: Counter = Counter()
        if isinstance(dataset, Dataset):
            counts[cut_key] = sum(dataset["_cut"])
            counts["skipped_too_long"] = len(dataset) - sum(dataset["_trainable"])
        dataset = dataset.filter(lambda trainable: trainable, input_columns="_trainable",
                                 **map_kwargs(dataset, args, f"Keeping {dataset_name} groups with a pair"))
        return dataset.remove_columns(["_cut", "_trainable"]), counts

    def _prepare_cls_pairs(self, dataset, processing_class, args, dataset_name, from_ranking: bool = False):
        """Pairwise data for the [CLS] head: each side encoded as (prompt, response). A pair whose two sides are the
        same tokens as the model sees them (the head cut both responses to one prefix) carries no preference: left
        out and counted, as grouped training leaves such pairs out; the pairs of a ranked group share its weight
        again afterwards."""
        columns = compat.dataset_column_names(dataset)
        if "prompt" not in columns:  # implicit prompt: TRL's helper splits the shared prefix off
            dataset = dataset.map(trl.extract_prompt,
                                  **map_kwargs(dataset, args, f"Extracting prompt in {dataset_name}"))
        max_length = self._max_length(processing_class, args)
        tokenize = pair_tokenizer(processing_class, max_length)
        report = self._stream_report_for(dataset, dataset_name)
        if report is not None:
            def counted(example):
                out = tokenize(example)
                report.add("identical_pairs", int(out["_identical"]))
                return out

            dataset = dataset.map(counted).filter(lambda identical: not identical, input_columns="_identical")
            return dataset.remove_columns(["_truncated", "_identical"])

        dataset = dataset.map(tokenize,
                              **map_kwargs(dataset, args, f"Tokenizing {dataset_name} pairs for the [CLS] head"))
        truncated, identical = sum(dataset["_truncated"]), sum(dataset["_identical"])
        self.ranking_stats.setdefault(dataset_name, Counter()).update(
            {"pairs": len(dataset), "truncated_responses": truncated, "identical_pairs_after_truncation": identical})
        if truncated:
            logger.warning(
                "%s: %d responses were longer than the whole max_length=%s budget and were cut.",
                dataset_name, truncated, max_length,
            )
        if identical:
            kept = dataset.filter(lambda same: not same, input_columns="_identical",
                                  **map_kwargs(dataset, args, f"Leaving out identical {dataset_name} pairs"))
            logger.warning("%s dataset: %d pairs identical after truncation left out (both sides are the same tokens "
                           "within max_length=%s: no preference to learn).", dataset_name, identical, max_length)
            if len(kept) == 0:
                raise ValueError(f"The {dataset_name} dataset has no pair left: {identical} pairs identical after "
                                 f"truncation to max_length={max_length}.")
            dataset = _renormalise_group_weights(dataset, kept) if from_ranking else kept
        return dataset.remove_columns(["_truncated", "_identical"])

    def _set_signature_columns_if_needed(self):
        if compat.signature_columns(self) is None:
            compat.set_signature_columns(self, [
                "chosen_ids", "rejected_ids", "margin", "weight",
                "chosen_token_type_ids", "rejected_token_type_ids",
                "completion_ids", "completion_token_type_ids", "ranks",
            ])

    # ----------------------------------------------------------------------------------------------- loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Plain pairwise batches: TRL's `compute_loss`, untouched (its loss and metrics). Grouped and weighted
        batches: [`_compute_pair_loss`] (one forward per row, each metric computed once)."""
        mode = "train" if self.model.training else "eval"
        if "pair_index" in inputs:
            loss, outputs = self._compute_pair_loss(model, inputs, mode)
        else:
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True,
                                                 num_items_in_batch=num_items_in_batch)
            if mode == "eval":
                chosen, rejected = torch.chunk(outputs.logits.squeeze(-1).detach(), chunks=2)
                self._record_eval_pairs(chosen, rejected)
        return (loss, outputs) if return_outputs else loss

    def _record_eval_pairs(self, chosen: torch.Tensor, rejected: torch.Tensor) -> None:
        """Keep pairwise evaluation scores on the device for `rm/auc` at `log` time. Gathered here, per step, because at
        the end of the evaluation set `gather_for_metrics` drops the pairs the distributed sampler repeated."""
        gather = self.accelerator.gather_for_metrics
        self._ranking_buffer("eval").add_pairs(gather(chosen), gather(rejected))

    def _compute_pair_loss(self, model, inputs, mode):
        """Bradley-Terry on the batch's pairs, each weighted: −log σ(r_better − r_worse − margin), weighted mean.

        Loss and metrics mirror TRL 1.16's `RewardTrainer.compute_loss` (trl/trainer/reward_trainer.py lines 789–815;
        docs/trl_internals.md), which computes them inline with no per-pair function to call; on TRL's pairs the values
        are TRL's (tests/trainers/test_reward_parity.py).

        Ranked groups: pair weights w_g / #pairs(g), so the loss is the (weighted) mean over groups of each group's
        mean (InstructGPT), or with `ranked_loss="plackett_luce"` the listwise [`plackett_luce_loss`]; weighted pairs:
        the `weight` column. `margin` and `center_rewards_coefficient` mean what
        they mean in TRL (the latter on (r_better + r_worse)², pair-weighted). TRL's metric names, each computed once,
        all read back in one host sync: `accuracy` (r_better > r_worse, as TRL counts it) and `margin` (mean
        r_better − r_worse) pair-weighted, `min/mean/max_reward` over the rows, `num_tokens`. Ranked groups keep their
        rewards on the device for `rm/kendall_tau`, `rm/spearman`, `rm/top1_accuracy`, `rm/ndcg`, `rm/ndcg@k` (means
        over the groups since the last log, computed at `log`); pairwise evaluation keeps its scores for `rm/auc`.
        """
        extra = {key: inputs.pop(key) for key in GROUP_KEYS if key in inputs}
        pair_index, weight = extra["pair_index"], extra["pair_weight"]
        margin = inputs.pop("margin", None)
        inputs["use_cache"] = False
        outputs = model(**inputs)
        rewards = outputs.logits.squeeze(-1)
        better, worse = rewards[pair_index[:, 0]], rewards[pair_index[:, 1]]
        weight = weight.to(rewards.dtype)
        grouped = "completion_group" in extra
        if grouped and self.args.ranked_loss == "plackett_luce":
            loss = plackett_luce_loss(rewards, extra["ranks"].to(rewards.dtype), extra["completion_group"],
                                      num_groups=extra["group_weight"].shape[0],  # known from the shape: no sync
                                      group_weight=extra["group_weight"].to(rewards.dtype),
                                      top_k=self.args.ranked_loss_top_k)
        else:
            loss = bradley_terry_loss(better, worse, margin, weight)
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * weighted_mean((better + worse) ** 2, weight)

        with torch.no_grad():
            better, worse, all_rewards = better.detach(), worse.detach(), rewards.detach()
            # Per process: tokens, min, max, sum and count of the rewards, whether any pair has weight, and the
            # pair-weighted accuracy and margin (0 without weight); one gather and one host read for all of them.
            has_pairs = (weight.sum() > 0).to(torch.float64)  # zero-weight pairs have no accuracy or margin to report
            local = torch.stack([
                inputs["attention_mask"].sum().to(torch.float64), all_rewards.min().to(torch.float64),
                all_rewards.max().to(torch.float64), all_rewards.sum(dtype=torch.float64),
                torch.ones_like(has_pairs) * all_rewards.numel(), has_pairs,
                has_pairs * weighted_mean((better > worse).to(weight.dtype), weight).to(torch.float64),
                has_pairs * weighted_mean(better - worse, weight).to(torch.float64)])
            tokens, low, high, total, count, has, accuracy, margin_sum = self.accelerator.gather(local[None]).unbind(1)
            processes_with_pairs = has.sum()
            summary = torch.stack([tokens.sum(), low.min(), high.max(), total.sum() / count.sum(), processes_with_pairs,
                                   accuracy.sum() / processes_with_pairs.clamp(min=1),
                                   margin_sum.sum() / processes_with_pairs.clamp(min=1)])
            tokens, low, high, mean, processes_with_pairs, accuracy, margin_metric = summary.tolist()
        metrics = compat.metrics(self, mode)
        if mode == "train":
            compat.add_train_tokens(self, int(tokens))
        else:
            metrics["num_tokens"] = [compat.train_tokens(self)]
        metrics["min_reward"].append(low)
        metrics["mean_reward"].append(mean)
        metrics["max_reward"].append(high)
        if processes_with_pairs > 0:  # TRL's value: the mean over processes of each process's (weighted) mean
            metrics["accuracy"].append(accuracy)
            metrics["margin"].append(margin_metric)
        if grouped:
            self._buffer_group_scores(mode, rewards, extra)
        elif mode == "eval":
            self._record_eval_pairs(better, worse)
        return loss, SequenceClassifierOutput(logits=outputs.logits)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Extends TRL's `log`: first puts the ranking metrics of the steps since the last log (`rm/*` of ranked
        groups, `rm/auc` of pairwise evaluation), computed on the device, into the metric dict TRL's `log` reports."""
        self._log_ranking_metrics("train" if self.model.training else "eval")
        super().log(logs, start_time)


def encode_for_head(head: str, prompt: Any, completion: Any, processing_class: PreTrainedTokenizerBase,
                    max_length: int | None) -> tuple[dict, bool]:
    """Token ids of (prompt, completion) for a reward head, and whether they exceed the budget: the [CLS] head
    (`head="cls"`) cuts the prompt from the left (and only a response longer than everything is cut); a last-token
    head gets the whole sequence, and the caller drops it, as TRL drops over-long pairs."""
    if head == "cls":
        enc = encode_prompt_response(
            processing_class,
            render_messages(prompt, processing_class),
            render_messages(completion, processing_class),
            max_length,
        )
        return {"ids": enc.input_ids, "type_ids": enc.token_type_ids}, enc.response_truncated
    if isinstance(prompt, list):  # conversational: the chat template renders the turn ends
        ids = compat.tokenize(processing_class, list(prompt) + list(completion))
    else:  # standard text: append EOS as TRL does for pairwise data
        text = prompt + completion
        eos = processing_class.eos_token
        if eos is None:
            raise ValueError(
                "The tokenizer has no EOS token, which a last-token reward head needs; use an encoder with "
                "reward_head='cls' or set `eos_token` in the config."
            )
        ids = compat.tokenize(processing_class, text if text.endswith(eos) else text + eos)
    return {"ids": ids}, max_length is not None and len(ids) > max_length


def ranked_tokenizer(head: str, processing_class: PreTrainedTokenizerBase, max_length: int | None,
                     pair_strategy: str):
    """The map function that encodes every completion of a ranked group for `head` (built from plain values, so that
    `datasets` fingerprints it alike in every process): `completion_ids`, `ranks` (of the kept completions), `_cut`
    (over-long completions: cut for the [CLS] head, left out for a last-token head) and `_trainable`."""
    cls_head = head == "cls"

    def tokenize(example):
        features, ranks, cut = [], [], 0
        for completion, rank in zip(example["completions"], example["ranks"], strict=True):
            feats, too_long = encode_for_head(head, example["prompt"], completion, processing_class, max_length)
            cut += int(too_long)
            if cls_head or not too_long:
                features.append(feats)
                ranks.append(rank)
        out = {"completion_ids": [f["ids"] for f in features], "ranks": ranks, "_cut": cut,
               "_trainable": bool(rank_pairs(ranks, pair_strategy)[0])}
        if cls_head:
            out["completion_token_type_ids"] = [f["type_ids"] for f in features]
        return out

    return tokenize


def pair_tokenizer(processing_class: PreTrainedTokenizerBase, max_length: int | None):
    """The map function that encodes a (prompt, chosen, rejected) row for the [CLS] head: `chosen_ids`,
    `rejected_ids`, their token types, `_truncated` (responses cut) and `_identical` (two different responses that are
    the same tokens after truncation; a pair the data itself gives twice the same response is kept, as TRL keeps it)."""

    def tokenize(example):
        out, truncated = {}, 0
        for side in ("chosen", "rejected"):
            feats, was_truncated = encode_for_head("cls", example["prompt"], example[side], processing_class,
                                                   max_length)
            out[f"{side}_ids"], out[f"{side}_token_type_ids"] = feats["ids"], feats["type_ids"]
            truncated += int(was_truncated)
        out["_truncated"] = truncated
        out["_identical"] = (example["chosen"] != example["rejected"] and out["chosen_ids"] == out["rejected_ids"]
                             and out["chosen_token_type_ids"] == out["rejected_token_type_ids"])
        return out

    return tokenize


def _renormalise_group_weights(expanded: Dataset, kept: Dataset) -> Dataset:
    """After pairs were left out, a ranked group's pairs again share its weight (w_g / pairs left), as in grouped
    training, where the left-out completions are not in the group."""
    before, after = Counter(expanded["group_id"]), Counter(kept["group_id"])
    return kept.map(lambda weight, group: {"weight": weight * before[group] / after[group]},
                    input_columns=["weight", "group_id"])

