# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Text-level reward models: a sequence-classification RM with its own tokenizer, as a GRPO/RLOO/PPO reward function.

TRL's online trainers treat an `nn.Module` reward model as sharing the policy's text conventions: they join prompt and
completion, tokenize with `add_special_tokens=False` (no [CLS]), do not truncate, and apply the RM tokenizer's chat
template to conversational data. An encoder RM has no chat template and needs `[CLS] prompt [SEP] response [SEP]`.
`TextRewardModel` is a plain callable (so TRL calls it with the decoded text instead of re-tokenizing), and does the
encoding itself:

* encoders (BERT/MiniLM, our `BertClsRewardModel`): the pair (prompt, response) with special tokens and
  `token_type_ids`, truncated from the left of the prompt so the response survives;
* decoder RMs: the conversation rendered with the RM tokenizer's own chat template (or plain text), truncated from the
  left, special tokens added only where no template supplies them.

Conversational prompts/completions are rendered to text (`role: content` lines) when the RM tokenizer has no chat
template. Scoring runs in eval mode without gradients, in batches, on the process's device.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..modeling_bert_cls_reward import encode_prompt_response, is_encoder_config, max_input_tokens, render_messages


class RunningMoments:
    """Running mean and variance of every value seen (Chan et al. parallel update); used to whiten rewards."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0

    def update(self, values: Sequence[float]) -> None:
        values = [float(v) for v in values if math.isfinite(float(v))]
        if not values:
            return
        n = len(values)
        batch_mean = sum(values) / n
        batch_m2 = sum((v - batch_mean) ** 2 for v in values)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta**2 * self.count * n / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 1.0

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])


def _decoder_positions(config: Any) -> int | None:
    """How many tokens a decoder RM reads: its `max_position_embeddings` (GPT-2's `n_positions`, a learned table an
    input must not exceed; for rotary models the length it was trained to), None when the config gives none."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    positions = getattr(text_config, "max_position_embeddings", None)
    return positions if isinstance(positions, int) and positions > 0 else None


def _is_messages(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(m, dict) and "content" in m for m in value)


class TextRewardModel:
    """Score (prompt, completion) texts with a sequence-classification reward model and its own tokenizer.

    Use it as a `reward_funcs` entry of `GRPOTrainer`/`RLOOTrainer` (TRL's or ours) next to rule-based functions:

        rm = TextRewardModel("outputs/reward_model")            # a BertClsRewardModel or any seq-cls RM dir
        trainer = GRPOTrainer(model, reward_funcs=[rm, my_rule], ...)

    Args:
        model: a loaded sequence-classification model (`logits[:, 0]` is the reward) or a path/hub id to load with
            `AutoModelForSequenceClassification` (after `import trl_ext`, saved BERT-CLS heads load this way).
        tokenizer: the RM's tokenizer; loaded from the model's path when omitted.
        max_length: token budget per (prompt, completion); the prompt is cut from the left to fit. Default: the
            tokenizer's `model_max_length` when it is sensible, else 512; never more than the model's positions
            (an encoder's position embeddings, a decoder's `max_position_embeddings`).
        batch_size: completions per forward pass.
        device: where to run; default the current process's accelerator device (so each DDP rank uses its own GPU).
        dtype: cast the model to this dtype (e.g. `torch.bfloat16`); default keeps it.
        whiten: return (r − running mean) / running std, the statistics updated with every batch scored.
        name: the name TRL logs the reward under (`rewards/<name>/mean`); default `reward_model`.
    """

    def __init__(
        self,
        model: PreTrainedModel | str | os.PathLike,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        max_length: int | None = None,
        batch_size: int = 32,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        whiten: bool = False,
        name: str = "reward_model",
    ) -> None:
        if isinstance(model, (str, os.PathLike)):
            path = model
            model, info = AutoModelForSequenceClassification.from_pretrained(path, output_loading_info=True)
            if info.get("missing_keys"):
                # A plain encoder or LM loads with a freshly initialised head: its "rewards" would be random.
                raise ValueError(
                    f"{os.fspath(path)!r} has no trained reward head (missing weights: "
                    f"{', '.join(sorted(info['missing_keys'])[:4])}): it is a plain encoder or language model. Train a "
                    "reward model on it first (trl_ext.RewardTrainer), or pass a loaded model object.")
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"`model` must be a sequence-classification model or a path, got {type(model).__name__}.")
        if tokenizer is None:
            source = getattr(model.config, "name_or_path", None)
            if not source:
                raise ValueError("`tokenizer` is required: the model's config has no `name_or_path` to load one from.")
            tokenizer = AutoTokenizer.from_pretrained(source)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if device is None:
            from accelerate import PartialState

            device = PartialState().device
        self.device = torch.device(device)
        self.model = model.to(device=self.device, dtype=dtype) if dtype is not None else model.to(self.device)
        self.model.eval()
        self.tokenizer = tokenizer
        self.is_encoder = is_encoder_config(model.config)
        positions = max_input_tokens(model.config) if self.is_encoder else _decoder_positions(model.config)
        if max_length is None:
            limit = getattr(tokenizer, "model_max_length", None)
            max_length = limit if isinstance(limit, int) and 0 < limit <= 100_000 else 512
            max_length = min(max_length, positions or max_length)
        elif positions is not None and max_length > positions:
            kind = "encoder" if self.is_encoder else "reward model"
            warnings.warn(f"max_length={max_length} exceeds the {kind}'s {positions} positions; inputs are cut to "
                          f"{positions} tokens (the prompt from the left).", stacklevel=2)
            max_length = positions
        if max_length < 4:
            raise ValueError(f"max_length must be >= 4 tokens, got {max_length}.")
        self.max_length = max_length
        self.batch_size = batch_size
        self.whiten = whiten
        self.moments = RunningMoments()
        self.__name__ = name  # TRL names the reward (and its metrics) after `__name__`
        self.num_scored = 0
        self.num_prompt_truncated = 0
        self.num_response_truncated = 0
        if not self.is_encoder and tokenizer.pad_token_id is None:
            raise ValueError(
                "The reward model's tokenizer has no pad token; set one (e.g. tokenizer.pad_token = tokenizer.eos_token)."
            )

    # -- encoding ---------------------------------------------------------------------------------------------------
    def _texts(self, prompt: Any, completion: Any) -> tuple[str, str]:
        template = None if self.is_encoder else getattr(self.tokenizer, "chat_template", None)
        if template and _is_messages(prompt) and _is_messages(completion):
            # A decoder RM trained on its chat template sees the whole conversation in it; the split point is kept
            # so truncation can still favour the response.
            full = self.tokenizer.apply_chat_template(list(prompt) + list(completion), tokenize=False)
            head = self.tokenizer.apply_chat_template(list(prompt), tokenize=False)
            if full.startswith(head):
                return head, full[len(head):]
            return "", full
        renderer = None if self.is_encoder else self.tokenizer
        return render_messages(prompt, renderer), render_messages(completion, renderer)

    def _encode_decoder(self, prompt: str, response: str) -> dict[str, list[int]]:
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        ids = self.tokenizer(prompt + response, add_special_tokens=not has_template)["input_ids"]
        n_response = len(self.tokenizer(response, add_special_tokens=False)["input_ids"])
        if len(ids) > self.max_length:
            if n_response > self.max_length:
                self.num_response_truncated += 1
            else:
                self.num_prompt_truncated += 1
            ids = ids[-self.max_length:]  # keep the response (the end of the text)
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}

    def encode(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[dict[str, list[int]]]:
        """Token ids (and `token_type_ids` for encoders) for each (prompt, completion); no padding."""
        if len(prompts) != len(completions):
            raise ValueError(f"Got {len(prompts)} prompts but {len(completions)} completions.")
        rows = []
        for i, (prompt, completion) in enumerate(zip(prompts, completions)):
            if not isinstance(prompt, str) and not _is_messages(prompt):
                raise TypeError(f"prompt {i} is a {type(prompt).__name__}, expected text or a list of messages.")
            if not isinstance(completion, str) and not _is_messages(completion):
                raise TypeError(f"completion {i} is a {type(completion).__name__}, expected text or a list of messages.")
            prompt_text, response_text = self._texts(prompt, completion)
            if self.is_encoder:
                enc = encode_prompt_response(self.tokenizer, prompt_text, response_text, self.max_length)
                self.num_prompt_truncated += enc.prompt_tokens_dropped > 0
                self.num_response_truncated += enc.response_truncated
                rows.append({"input_ids": enc.input_ids, "token_type_ids": enc.token_type_ids,
                             "attention_mask": [1] * len(enc.input_ids)})
            else:
                rows.append(self._encode_decoder(prompt_text, response_text))
        return rows

    # -- scoring ----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[float]:
        """Raw reward-model scores (not whitened)."""
        rows = self.encode(prompts, completions)
        scores: list[float] = []
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        was_training = self.model.training
        self.model.eval()
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            width = max(len(r["input_ids"]) for r in chunk)
            batch = {
                key: torch.tensor(
                    [r[key] + [pad_id if key == "input_ids" else 0] * (width - len(r[key])) for r in chunk],
                    device=self.device,
                )
                for key in chunk[0]
            }
            logits = self.model(**batch).logits
            scores.extend(logits[:, 0].float().cpu().tolist())
        self.model.train(was_training)
        self.num_scored += len(rows)
        return scores

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        scores = self.score(prompts, completions)
        if not self.whiten:
            return scores
        self.moments.update(scores)
        if self.moments.count < 2:
            warnings.warn("Reward whitening has seen fewer than 2 rewards; returning centred rewards only.",
                          stacklevel=2)
        std = self.moments.std
        return [(s - self.moments.mean) / (std + 1e-8) for s in scores]
