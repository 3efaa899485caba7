"""`RewardTrainer` / `RewardConfig`: TRL's reward trainer plus ranked data, grouped training and a BERT-CLS head.

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

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
import trl
from accelerate.utils import gather_object
from datasets import Dataset, IterableDataset
from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import SequenceClassifierOutput
from trl.data_utils import _tokenize, extract_prompt, get_dataset_column_names
from trl.trainer.reward_trainer import DataCollatorForPreference
from trl.trainer.utils import pad

from .data import is_ranked_dataset, ranked_to_pairs, validate_ranked_example
from .losses import bradley_terry_loss, grouped_bradley_terry_loss
from .ranking import RankedDataArguments, group_pair_tensors, group_pair_weights, ranked_status
from .metrics import group_ranking_metrics, pair_accuracy, pairwise_auc
from .reward_head import BertClsRewardModel, encode_prompt_response, is_encoder_config, render_messages

logger = logging.getLogger(__name__)

REWARD_HEADS = ("auto", "cls", "last_token")


@dataclass
class RewardConfig(RankedDataArguments, trl.RewardConfig):
    r"""[`trl.RewardConfig`] plus the options of trl_ext's [`RewardTrainer`].

    Parameters:
        reward_head (`str`, defaults to `"auto"`):
            `"cls"`: encoder (BERT/MiniLM/RoBERTa) with a scalar head on the [CLS] embedding, inputs encoded as a
            (prompt, response) sentence pair with `token_type_ids` 0/1 and prompt-side truncation. `"last_token"`:
            TRL's default (sequence-classification head read at the last token). `"auto"` picks `"cls"` for
            BERT-family encoder checkpoints and `"last_token"` otherwise.
        freeze_encoder (`bool`, defaults to `False`):
            With the `"cls"` head, train only the scalar head (the encoder gets no gradient).
        ranked_training, pair_strategy, on_invalid_rows:
            Ranked data options, see [`RankedDataArguments`].
    """

    reward_head: str = field(
        default="auto",
        metadata={"help": "Reward head: 'auto', 'cls' (encoder [CLS] -> scalar) or 'last_token' (TRL default).",
                  "choices": list(REWARD_HEADS)},
    )
    freeze_encoder: bool = field(
        default=False, metadata={"help": "With reward_head='cls', train only the scalar head."}
    )

    def __post_init__(self):
        super().__post_init__()
        self._validate_ranked_fields()
        if self.reward_head not in REWARD_HEADS:
            raise ValueError(f"RewardConfig.reward_head={self.reward_head!r} is not one of {list(REWARD_HEADS)}.")


@dataclass
class RewardDataCollator(DataCollatorForPreference):
    """Collator for pairwise *and* ranked examples.

    Pairwise examples (`chosen_ids`, `rejected_ids`) go through TRL's [`DataCollatorForPreference`]; this adds the
    padded `token_type_ids` of the [CLS] head and a `weight` tensor when the examples carry them.

    Ranked examples (`completion_ids`: one id list per completion, `ranks`) are flattened so every completion is one
    row of `input_ids` (forwarded once), with `pair_index` `[P, 2]` (better, worse rows), `pair_group` `[P]` and
    `ranks` and `completion_group` `[N]` describing the groups.
    """

    pair_strategy: str = "all"

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if "completion_ids" in examples[0]:
            return self._collate_ranked(examples)
        output = super().torch_call(examples)
        if "chosen_token_type_ids" in examples[0]:
            type_ids = [torch.tensor(ex["chosen_token_type_ids"]) for ex in examples]
            type_ids += [torch.tensor(ex["rejected_token_type_ids"]) for ex in examples]
            output["token_type_ids"] = self._pad(type_ids, 0)
        if "weight" in examples[0]:
            output["weight"] = torch.tensor([ex["weight"] for ex in examples], dtype=torch.float)
        return output

    def _pad(self, tensors: list[torch.Tensor], value: int) -> torch.Tensor:
        return pad(tensors, padding_value=value, padding_side="right", pad_to_multiple_of=self.pad_to_multiple_of)

    def _collate_ranked(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        input_ids = [torch.tensor(ids) for ex in examples for ids in ex["completion_ids"]]
        output = {
            "input_ids": self._pad(input_ids, self.pad_token_id),
            "attention_mask": self._pad([torch.ones_like(ids) for ids in input_ids], 0),
            **group_pair_tensors([ex["ranks"] for ex in examples], self.pair_strategy),
        }
        if "completion_token_type_ids" in examples[0]:
            type_ids = [torch.tensor(ids) for ex in examples for ids in ex["completion_token_type_ids"]]
            output["token_type_ids"] = self._pad(type_ids, 0)
        return output


def _model_config(model: str | PreTrainedModel, trust_remote_code: bool) -> Any:
    if isinstance(model, str):
        return AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.config


class RewardTrainer(trl.RewardTrainer):
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
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
            args = RewardConfig(f"{str(name).rstrip('/').split('/')[-1]}-Reward")
        elif not isinstance(args, RewardConfig):
            # A plain trl.RewardConfig works too: it gets our defaults for the extra options.
            # (`to_dict` masks every `*_token` field, so copy the init fields directly.)
            args = RewardConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init})
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
        columns = get_dataset_column_names(dataset)
        if "completion_ids" in columns or ("chosen_ids" in columns and "rejected_ids" in columns):
            return dataset  # already tokenized
        if is_ranked_dataset(columns):
            if args.ranked_training == "grouped":
                return self._prepare_ranked(dataset, processing_class, args, dataset_name)
            dataset, stats = ranked_to_pairs(
                dataset, pair_strategy=args.pair_strategy, weighting="group", on_invalid=args.on_invalid_rows
            )
            logger.info("%s: %s", dataset_name, stats.summary())
        if self.reward_head == "cls":
            return self._prepare_cls_pairs(dataset, processing_class, args, dataset_name)
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    def _max_length(self, processing_class: PreTrainedTokenizerBase, args: RewardConfig) -> int | None:
        if self.reward_head != "cls":
            return args.max_length
        # An encoder cannot read past its position embeddings (512 for BERT/MiniLM).
        limits = [args.max_length, getattr(processing_class, "model_max_length", None)]
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
            ids = _tokenize(processing_class, list(prompt) + list(completion))["input_ids"]
        else:  # standard text: append EOS as TRL does for pairwise data
            text = prompt + completion
            eos = processing_class.eos_token
            if eos is None:
                raise ValueError(
                    "The tokenizer has no EOS token, which a last-token reward head needs; use an encoder with "
                    "reward_head='cls' or set `eos_token` in the config."
                )
            ids = _tokenize(processing_class, text if text.endswith(eos) else text + eos)["input_ids"]
        truncated = max_length is not None and len(ids) > max_length
        if truncated:  # keep the end: a last-token head reads the reward there
            ids = ids[-max_length:]
        return {"ids": ids}, truncated

    def _map_kwargs(self, dataset, args, desc: str) -> dict[str, Any]:
        if isinstance(dataset, Dataset):  # IterableDataset.map has neither num_proc nor desc
            return {"num_proc": args.dataset_num_proc, "desc": desc}
        return {}

    def _prepare_ranked(self, dataset, processing_class, args, dataset_name):
        max_length = self._max_length(processing_class, args)
        skip_invalid = args.on_invalid_rows == "skip"

        def tokenize(example, index):
            try:
                ranks = validate_ranked_example(example, index)
            except ValueError as err:
                if not skip_invalid:
                    raise
                logger.debug("%s: skipping %s", dataset_name, err)
                return {"completion_ids": [], "completion_token_type_ids": [], "ranks": [], "_status": "invalid",
                        "_truncated": 0}
            status = ranked_status(example, ranks, args.pair_strategy)
            features, truncated = [], 0
            if status == "ok":
                for completion in example["completions"]:
                    feats, was_truncated = self._encode_completion(
                        example["prompt"], completion, processing_class, max_length
                    )
                    features.append(feats)
                    truncated += int(was_truncated)
            out = {
                "completion_ids": [f["ids"] for f in features],
                "ranks": [int(r) for r in ranks] if status == "ok" else [],
                "_status": status,
                "_truncated": truncated,
            }
            if self.reward_head == "cls":
                out["completion_token_type_ids"] = [f["type_ids"] for f in features]
            return out

        drop = [c for c in get_dataset_column_names(dataset) if c not in ("completion_ids", "ranks")]
        dataset = dataset.map(
            tokenize,
            with_indices=True,
            remove_columns=drop,
            **self._map_kwargs(dataset, args, f"Tokenizing ranked {dataset_name} dataset"),
        )
        if isinstance(dataset, Dataset):
            counts = Counter(dataset["_status"])
            counts["truncated_completions"] = sum(dataset["_truncated"])
            self.ranking_stats[dataset_name] = counts
            logger.info("%s ranked dataset: %s", dataset_name, dict(counts))
            if counts["truncated_completions"]:
                logger.warning(
                    "%s: %d completions were longer than max_length=%s and were truncated (%s).",
                    dataset_name, counts["truncated_completions"], max_length,
                    "prompt cut from the left" if self.reward_head == "cls" else "kept the last tokens",
                )
        dataset = dataset.filter(lambda status: status == "ok", input_columns="_status")
        return dataset.remove_columns(["_status", "_truncated"])

    def _prepare_cls_pairs(self, dataset, processing_class, args, dataset_name):
        columns = get_dataset_column_names(dataset)
        if "prompt" not in columns:  # implicit prompt: TRL's helper splits the shared prefix off
            dataset = dataset.map(extract_prompt, **self._map_kwargs(dataset, args, f"Extracting prompt in {dataset_name}"))
        max_length = self._max_length(processing_class, args)

        def tokenize(example):
            out, truncated = {}, 0
            for side in ("chosen", "rejected"):
                feats, was_truncated = self._encode_completion(example["prompt"], example[side], processing_class, max_length)
                out[f"{side}_ids"], out[f"{side}_token_type_ids"] = feats["ids"], feats["type_ids"]
                truncated += int(was_truncated)
            out["_truncated"] = truncated
            return out

        dataset = dataset.map(tokenize, **self._map_kwargs(dataset, args, f"Tokenizing {dataset_name} pairs for the [CLS] head"))
        if isinstance(dataset, Dataset):
            truncated = sum(dataset["_truncated"])
            self.ranking_stats[dataset_name] = Counter({"pairs": len(dataset), "truncated_responses": truncated})
            if truncated:
                logger.warning(
                    "%s: %d responses were longer than the whole max_length=%s budget and were cut.",
                    dataset_name, truncated, max_length,
                )
        return dataset.remove_columns(["_truncated"])

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = [
                "chosen_ids", "rejected_ids", "margin", "weight",
                "chosen_token_type_ids", "rejected_token_type_ids",
                "completion_ids", "completion_token_type_ids", "ranks",
            ]

    # ----------------------------------------------------------------------------------------------- loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Grouped batches: one forward per completion and the grouped loss. Pairwise: TRL's loss, then `weight`."""
        mode = "train" if self.model.training else "eval"
        if "pair_index" in inputs:
            loss, outputs = self._compute_grouped_loss(model, inputs, mode)
            return (loss, outputs) if return_outputs else loss
        weight = inputs.pop("weight", None)
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        chosen, rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
        if weight is not None:
            loss = bradley_terry_loss(chosen, rejected, inputs.get("margin"), weight)
            if self.args.center_rewards_coefficient is not None:
                loss = loss + self.args.center_rewards_coefficient * torch.mean((chosen + rejected) ** 2)
        with torch.no_grad():
            # TRL counts a tie as wrong; a tie is a coin flip, so it counts 0.5 here.
            accuracy = self.accelerator.gather_for_metrics(pair_accuracy(chosen, rejected, weight)).mean().item()
            self._metrics[mode]["accuracy"][-1] = accuracy
            if mode == "eval":
                self._eval_pair_scores[0].extend(self.accelerator.gather_for_metrics(chosen.detach()).float().tolist())
                self._eval_pair_scores[1].extend(self.accelerator.gather_for_metrics(rejected.detach()).float().tolist())
        return (loss, outputs) if return_outputs else loss

    def _compute_grouped_loss(self, model, inputs, mode):
        pair_index, pair_group = inputs.pop("pair_index"), inputs.pop("pair_group")
        ranks, completion_group = inputs.pop("ranks"), inputs.pop("completion_group")
        inputs["use_cache"] = False
        outputs = model(**inputs)
        rewards = outputs.logits.squeeze(-1)
        num_groups = int(completion_group.max().item()) + 1
        loss = grouped_bradley_terry_loss(rewards, pair_index, pair_group, num_groups)
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean(rewards**2)

        metrics = self._metrics[mode]
        if mode == "train":
            tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += tokens // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]
        with torch.no_grad():
            better, worse = rewards[pair_index[:, 0]], rewards[pair_index[:, 1]]
            # Pair weights 1/#pairs(group): accuracy and margin weigh every prompt equally, like the loss.
            weight = group_pair_weights(pair_group, rewards.dtype)
            all_rewards = self.accelerator.gather(rewards.detach())
            metrics["min_reward"].append(all_rewards.min().item())
            metrics["mean_reward"].append(all_rewards.mean().item())
            metrics["max_reward"].append(all_rewards.max().item())
            metrics["accuracy"].append(
                self.accelerator.gather_for_metrics(pair_accuracy(better, worse, weight)).mean().item()
            )
            margin = ((better - worse) * weight).sum() / weight.sum()
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
            self._metrics["eval"]["rm/auc"] = [pairwise_auc(chosen, rejected)]
            self._eval_pair_scores = ([], [])
        super().log(logs, start_time)
