# Copyright 2026 The trl_ext authors. Apache-2.0.
"""`RewardTrainer`: TRL's reward trainer plus ranked data, grouped training and a BERT-CLS head.

Drop-in: `from trl_ext import RewardTrainer, RewardConfig` accepts everything TRL's does. On top of it:

* **Ranked data** (`prompt`, `completions`, `ranks` | `scores`). In the default `ranked_training="grouped"` mode a
  batch holds whole groups (`per_device_train_batch_size` counts prompts), each completion is forwarded once, and the
  loss is the mean over groups of the mean over that group's pairs of `-log σ(r_better - r_worse)` (InstructGPT).
  `ranked_training="pairwise"` expands the rankings to weighted pairs instead (the TRL-style baseline).
* **Pairwise data** honours a `weight` column (weighted mean of the per-pair losses) next to TRL's `margin`.
* **Encoder reward models** (`reward_head="cls"`, chosen automatically for BERT-family checkpoints): a
  [`BertClsRewardModel`], (prompt, response) encoded as a sentence pair with `token_type_ids`, over-long inputs
  truncated from the left of the prompt instead of dropped, and no EOS token needed.
* **Metrics**: `accuracy` counts ties as 0.5; ranked data adds `rm/kendall_tau`, `rm/spearman` (means over groups)
  and `rm/top1_accuracy`; pairwise evaluation adds `rm/auc`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
import trl
from accelerate.utils import gather_object
from datasets import Dataset, IterableDataset
from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import SequenceClassifierOutput

from .. import _trl_compat as compat
from ..losses import bradley_terry_loss, grouped_bradley_terry_loss, weighted_mean
from ..metrics import group_ranking_metrics, pair_accuracy, pairwise_auc
from ..modeling_bert_cls_reward import (
    BertClsRewardModel,
    encode_prompt_response,
    is_encoder_config,
    max_input_tokens,
    render_messages,
)
from .ranked_data import RankedCollatorMixin, RankedDataMixin, map_kwargs, upgrade_config
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

    * `__init__`: resolves the reward head (builds a [`BertClsRewardModel`] from an encoder checkpoint), then calls
      TRL's `__init__` and swaps in [`RewardDataCollator`] (TRL's collator plus ranked batches, token types, weights).
    * `_prepare_dataset`: ranked data and the [CLS] head need their own tokenization; TRL's method still handles
      pairwise data for decoder reward models.
    * `compute_loss`: grouped batches use [`grouped_bradley_terry_loss`]; pairwise batches call TRL's `compute_loss`
      and then apply `weight` and the tie-aware accuracy.
    * `log`: adds `rm/auc` over the whole evaluation set.
    """

    _tag_names = ["trl", "reward-trainer", "trl_ext"]

    def __init__(self, model: str | PreTrainedModel, args: RewardConfig | None = None, *pos_args, **kwargs):
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "name_or_path", "model")
            args = RewardConfig(f"{str(name).rstrip('/').split('/')[-1]}-Reward")
        else:
            args = upgrade_config(args, RewardConfig)
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
        if head == "cls":
            model = self._build_cls_model(model, config, args)
        self.reward_head = head
        self._encoder_limit = max_input_tokens(model.config) if head == "cls" else None
        self.ranking_stats: dict[str, Counter] = {}
        super().__init__(model, args, *pos_args, **kwargs)
        if kwargs.get("data_collator") is None and not (len(pos_args) > 0 and pos_args[0] is not None):
            self.data_collator = RewardDataCollator(
                pad_token_id=self.processing_class.pad_token_id,
                pad_to_multiple_of=self.args.pad_to_multiple_of,
                pair_strategy=self.args.pair_strategy,
            )
        self._eval_pair_scores: tuple[list[float], list[float]] = ([], [])

    @staticmethod
    def _build_cls_model(model: str | PreTrainedModel, config: Any, args: RewardConfig) -> PreTrainedModel:
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
        args.model_init_kwargs = None  # consumed here; TRL would warn that they are ignored for an instance
        if config.model_type == BertClsRewardModel.config_class.model_type:
            loaded = BertClsRewardModel.from_pretrained(model, **init_kwargs)
            if args.freeze_encoder:
                loaded.freeze_encoder()
            return loaded
        return BertClsRewardModel.from_encoder(model, freeze_encoder=args.freeze_encoder, **init_kwargs)

    # ----------------------------------------------------------------------------------------------- data
    def _prepare_dataset(
        self,
        dataset: Dataset | IterableDataset,
        processing_class: PreTrainedTokenizerBase,
        args: RewardConfig,
        dataset_name: str,
    ) -> Dataset | IterableDataset:
        """Extends TRL's `_prepare_dataset`: ranked data and the [CLS] head get their own tokenization."""
        columns = compat.dataset_column_names(dataset)
        if "completion_ids" in columns or ("chosen_ids" in columns and "rejected_ids" in columns):
            return dataset  # already tokenized
        if self._check_preference_columns(columns, dataset_name):
            if args.ranked_training == "grouped":
                return self._prepare_ranked(dataset, processing_class, args, dataset_name)
            dataset = self._expand_ranked(dataset, args, dataset_name)
        dataset = self._check_pair_weights(dataset, args, dataset_name)
        if self.reward_head == "cls":
            return self._prepare_cls_pairs(dataset, processing_class, args, dataset_name)
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    def _max_length(self, processing_class: PreTrainedTokenizerBase, args: RewardConfig) -> int | None:
        if self.reward_head != "cls":
            return args.max_length
        # An encoder cannot read past its position embeddings (512 for BERT/MiniLM), whatever the tokenizer says.
        limits = [args.max_length, getattr(processing_class, "model_max_length", None), self._encoder_limit]
        limits = [x for x in limits if x is not None and x < 1_000_000]
        return min(limits) if limits else None

    def _encode_completion(self, prompt: Any, completion: Any, processing_class, max_length) -> tuple[dict, bool]:
        """Token ids of (prompt, completion) for the active head; returns (features, was_truncated)."""
        if self.reward_head == "cls":
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
        truncated = max_length is not None and len(ids) > max_length
        if truncated:  # keep the end: a last-token head reads the reward there
            ids = ids[-max_length:]
        return {"ids": ids}, truncated

    def _tokenize_ranked(self, dataset, processing_class, args, dataset_name):
        """[`RankedDataMixin`] hook: every completion of a group encoded with the active head (own tokenization)."""
        max_length = self._max_length(processing_class, args)
        cls_head = self.reward_head == "cls"

        def tokenize(example):
            features, truncated = [], 0
            for completion in example["completions"]:
                feats, was_truncated = self._encode_completion(example["prompt"], completion, processing_class,
                                                               max_length)
                features.append(feats)
                truncated += int(was_truncated)
            out = {"completion_ids": [f["ids"] for f in features], "_truncated": truncated}
            if cls_head:
                out["completion_token_type_ids"] = [f["type_ids"] for f in features]
            return out

        drop = [c for c in compat.dataset_column_names(dataset) if c not in ("ranks", "weight")]
        dataset = dataset.map(tokenize, remove_columns=drop,
                              **map_kwargs(dataset, args, f"Tokenizing ranked {dataset_name} dataset"))
        counts: Counter = Counter()
        if isinstance(dataset, Dataset):
            counts["truncated_completions"] = sum(dataset["_truncated"])
            if counts["truncated_completions"]:
                logger.warning(
                    "%s: %d completions were longer than max_length=%s and were truncated (%s).",
                    dataset_name, counts["truncated_completions"], max_length,
                    "prompt cut from the left" if cls_head else "kept the last tokens",
                )
        return dataset.remove_columns(["_truncated"]), counts

    def _prepare_cls_pairs(self, dataset, processing_class, args, dataset_name):
        columns = compat.dataset_column_names(dataset)
        if "prompt" not in columns:  # implicit prompt: TRL's helper splits the shared prefix off
            dataset = dataset.map(trl.extract_prompt,
                                  **map_kwargs(dataset, args, f"Extracting prompt in {dataset_name}"))
        max_length = self._max_length(processing_class, args)

        def tokenize(example):
            out, truncated = {}, 0
            for side in ("chosen", "rejected"):
                feats, was_truncated = self._encode_completion(example["prompt"], example[side], processing_class,
                                                               max_length)
                out[f"{side}_ids"], out[f"{side}_token_type_ids"] = feats["ids"], feats["type_ids"]
                truncated += int(was_truncated)
            out["_truncated"] = truncated
            return out

        dataset = dataset.map(tokenize,
                              **map_kwargs(dataset, args, f"Tokenizing {dataset_name} pairs for the [CLS] head"))
        if isinstance(dataset, Dataset):
            truncated = sum(dataset["_truncated"])
            self.ranking_stats.setdefault(dataset_name, Counter()).update(
                {"pairs": len(dataset), "truncated_responses": truncated})
            if truncated:
                logger.warning(
                    "%s: %d responses were longer than the whole max_length=%s budget and were cut.",
                    dataset_name, truncated, max_length,
                )
        return dataset.remove_columns(["_truncated"])

    def _set_signature_columns_if_needed(self):
        if compat.signature_columns(self) is None:
            compat.set_signature_columns(self, [
                "chosen_ids", "rejected_ids", "margin", "weight",
                "chosen_token_type_ids", "rejected_token_type_ids",
                "completion_ids", "completion_token_type_ids", "ranks",
            ])

    # ----------------------------------------------------------------------------------------------- loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Grouped batches: one forward per completion and the grouped loss. Pairwise: TRL's loss, then `weight`."""
        mode = "train" if self.model.training else "eval"
        if "completion_group" in inputs:
            loss, outputs = self._compute_grouped_loss(model, inputs, mode)
            return (loss, outputs) if return_outputs else loss
        weight = inputs.pop("pair_weight", None)
        inputs.pop("pair_index", None)  # rows (i, n + i), TRL's own pairing
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        chosen, rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
        if weight is not None:
            loss = bradley_terry_loss(chosen, rejected, inputs.get("margin"), weight)
            if self.args.center_rewards_coefficient is not None:
                loss = loss + self.args.center_rewards_coefficient * torch.mean((chosen + rejected) ** 2)
        with torch.no_grad():
            # TRL counts a tie as wrong; a tie is a coin flip, so it counts 0.5 here.
            accuracy = self.accelerator.gather_for_metrics(pair_accuracy(chosen, rejected, weight)).mean().item()
            if accuracy == accuracy:  # NaN when every pair of the batch has weight 0: keep TRL's value
                compat.metrics(self, mode)["accuracy"][-1] = accuracy
            if mode == "eval":
                self._eval_pair_scores[0].extend(self.accelerator.gather_for_metrics(chosen.detach()).float().tolist())
                self._eval_pair_scores[1].extend(self.accelerator.gather_for_metrics(rejected.detach()).float().tolist())
        return (loss, outputs) if return_outputs else loss

    def _compute_grouped_loss(self, model, inputs, mode):
        pair_index, pair_group = inputs.pop("pair_index"), inputs.pop("pair_group")
        ranks, completion_group = inputs.pop("ranks"), inputs.pop("completion_group")
        # Pair weights w_g/#pairs(group): accuracy and margin weigh every prompt as the loss does.
        weight, group_weight = inputs.pop("pair_weight"), inputs.pop("group_weight")
        inputs["use_cache"] = False
        outputs = model(**inputs)
        rewards = outputs.logits.squeeze(-1)
        num_groups = int(completion_group.max().item()) + 1
        loss = grouped_bradley_terry_loss(rewards, pair_index, pair_group, num_groups,
                                          group_weight.to(rewards.dtype))
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean(rewards**2)

        metrics = compat.metrics(self, mode)
        if mode == "train":
            compat.add_train_tokens(
                self, self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item())
        else:
            metrics["num_tokens"] = [compat.train_tokens(self)]
        with torch.no_grad():
            better, worse = rewards[pair_index[:, 0]], rewards[pair_index[:, 1]]
            weight = weight.to(rewards.dtype)
            all_rewards = self.accelerator.gather(rewards.detach())
            metrics["min_reward"].append(all_rewards.min().item())
            metrics["mean_reward"].append(all_rewards.mean().item())
            metrics["max_reward"].append(all_rewards.max().item())
            if weight.sum() > 0:  # a batch of zero-weight groups has no accuracy or margin to report
                metrics["accuracy"].append(
                    self.accelerator.gather_for_metrics(pair_accuracy(better, worse, weight)).mean().item()
                )
                margin = weighted_mean(better - worse, weight)
                metrics["margin"].append(self.accelerator.gather_for_metrics(margin).mean().item())
            # Per-group ranking metrics, gathered as Python objects since groups differ in size across ranks.
            rewards_cpu, ranks_cpu = rewards.detach().float().cpu().tolist(), ranks.cpu().tolist()
            per_group, start = [], 0
            for size in torch.bincount(completion_group, minlength=num_groups).tolist():
                per_group.append(group_ranking_metrics(rewards_cpu[start : start + size], ranks_cpu[start : start + size]))
                start += size
            for values in gather_object(per_group) if self.accelerator.num_processes > 1 else per_group:
                for key, value in values.items():
                    if value == value:  # NaN when undefined for the group (e.g. all gold ranks tied)
                        metrics[f"rm/{key}"].append(value)
        return loss, SequenceClassifierOutput(logits=outputs.logits)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Extends TRL's `log`: adds `rm/auc` computed over the whole evaluation set of pairwise data."""
        mode = "train" if self.model.training else "eval"
        chosen, rejected = self._eval_pair_scores
        if mode == "eval" and chosen:
            compat.metrics(self, "eval")["rm/auc"] = [pairwise_auc(chosen, rejected)]
            self._eval_pair_scores = ([], [])
        super().log(logs, start_time)
