# Copyright 2026 The trl_ext authors. Apache-2.0.
"""BERT-CLS reward head: an encoder whose [CLS] embedding is projected to one scalar reward.

The model is a regular `transformers.PreTrainedModel` returning `logits` of shape `[B, 1]`, so TRL code that expects a
sequence-classification reward model (`RewardTrainer`, GRPO `reward_funcs`) accepts it. Its config is registered with
the Auto classes when this module is imported (by `trl_ext.BertClsRewardModel`, the RewardTrainer or
`TextRewardModel`): then `AutoModelForSequenceClassification.from_pretrained(saved_dir)` reloads it. A saved model also
carries `trl_ext_bert_cls_reward.py` and an `auto_map`: where trl_ext is not imported, transformers' error asks for
`trust_remote_code=True`, with which that file imports trl_ext's classes and the model loads.

Inputs are the sentence pair (prompt, response): `[CLS] prompt [SEP] response [SEP]` with `token_type_ids` 0 for the
prompt and 1 for the response. `encode_prompt_response` builds that pair and truncates the *prompt from the left* so
that the response survives; only a response longer than the whole budget is cut (and reported).
"""

from __future__ import annotations

import inspect
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from . import _trl_compat as compat

# Model types whose [CLS] (first) token summarises the input: the encoders this head is meant for.
ENCODER_MODEL_TYPES = frozenset(
    {
        "bert",
        "roberta",
        "xlm-roberta",
        "distilbert",
        "electra",
        "deberta",
        "deberta-v2",
        "mpnet",
        "albert",
        "camembert",
        "modernbert",
        "nomic_bert",
        "ernie",
        "megatron-bert",
    }
)


# Encoders whose position ids start after the padding index (RoBERTa's convention): two positions fewer usable.
_PADDING_OFFSET_TYPES = frozenset({"roberta", "xlm-roberta", "camembert", "mpnet"})


def max_input_tokens(config: PreTrainedConfig) -> int | None:
    """How many tokens an encoder (or a `BertClsRewardConfig`'s encoder) can read: its absolute position embeddings
    (less RoBERTa's padding offset). None when positions do not bound the input (DeBERTa without absolute positions)."""
    config = getattr(config, "encoder_config", None) or config
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return None
    if config.model_type in ("deberta", "deberta-v2") and not getattr(config, "position_biased_input", True):
        return None
    if config.model_type in _PADDING_OFFSET_TYPES:
        return positions - (getattr(config, "pad_token_id", None) or 0) - 1
    return positions


def is_encoder_config(config: PreTrainedConfig) -> bool:
    """True if `config` describes a bidirectional encoder (BERT/MiniLM/RoBERTa family) rather than a decoder LM."""
    if getattr(config, "model_type", None) == BertClsRewardConfig.model_type:
        return True
    return getattr(config, "model_type", None) in ENCODER_MODEL_TYPES and not getattr(config, "is_decoder", False)


POOLINGS = ("cls", "mean")


#: The module a saved [`BertClsRewardModel`] carries next to its weights, named by the `auto_map` of its config.json:
#: with `trust_remote_code=True`, transformers runs it, and it only imports trl_ext's own classes.
LOADER_FILE = "trl_ext_bert_cls_reward.py"
LOADER_SOURCE = '''"""A trl_ext BERT-CLS reward model (https://pypi.org/project/trl-ext/).

Load it with trl_ext installed (`pip install trl-ext`) in either of two ways:

    import trl_ext  # registers the model type "bert_cls_reward" with the Auto classes
    model = AutoModelForSequenceClassification.from_pretrained(path)

    model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)  # runs this file

This file holds no model code: it imports trl_ext's classes.
"""

from trl_ext.modeling_bert_cls_reward import BertClsRewardConfig, BertClsRewardModel  # noqa: F401
'''


class BertClsRewardConfig(PreTrainedConfig):
    r"""Config of [`BertClsRewardModel`].

    Args:
        encoder_config (`dict` or `PreTrainedConfig`): config of the wrapped encoder (any BERT-family model type).
        freeze_encoder (`bool`, defaults to `False`): train only the scalar head; the encoder gets no gradient.
        classifier_dropout (`float`, defaults to `0.0`): dropout on the pooled embedding before the projection.
        pooling (`str`, defaults to `"cls"`): the summary the scalar head reads: `"cls"`, the first ([CLS]) token's
            last hidden state; `"mean"`, the mean of the last hidden states over the attention mask (what
            sentence-transformers encoders such as all-MiniLM-L6-v2 were trained to produce).
    """

    model_type = "bert_cls_reward"
    sub_configs_defaults = {"encoder_config": compat.sub_config_spec(AutoConfig, "bert")}

    encoder_config: dict | PreTrainedConfig | None = None
    freeze_encoder: bool = False
    classifier_dropout: float = 0.0
    initializer_range: float = 0.02
    pooling: str = "cls"
    # Written into config.json: transformers alone does not know this model type.
    loading_hint: str = ("A trl_ext BERT-CLS reward model: `pip install trl-ext`, then `import trl_ext` before "
                         "AutoModelForSequenceClassification.from_pretrained, or pass trust_remote_code=True (it runs "
                         "trl_ext_bert_cls_reward.py, which imports trl_ext's classes).")

    def __post_init__(self, **kwargs):
        if self.pooling not in POOLINGS:
            raise ValueError(f"BertClsRewardConfig.pooling={self.pooling!r} is not one of {list(POOLINGS)}.")
        # A reward model has exactly one output: the scalar reward.
        kwargs["num_labels"] = 1
        super().__post_init__(**kwargs)

    @classmethod
    def register_for_auto_class(cls, auto_class: Any = "AutoConfig") -> None:
        """Kept a no-op, as [`BertClsRewardModel.register_for_auto_class`]: `import trl_ext` registers the config."""

    @property
    def hidden_size(self) -> int:
        return self.encoder_config.hidden_size


class BertClsRewardModel(PreTrainedModel):
    """Encoder + `Linear(hidden, 1)` on the [CLS] embedding. `logits` has shape `[B, 1]`.

    Build it from any encoder checkpoint with [`BertClsRewardModel.from_encoder`], or reload a saved one with
    `AutoModelForSequenceClassification.from_pretrained` (after `import trl_ext`).
    """

    config_class = BertClsRewardConfig
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules: list[str] = []

    def __init__(self, config: BertClsRewardConfig):
        super().__init__(config)
        encoder_kwargs = {}
        # BERT/RoBERTa carry an extra pooler (dense+tanh) that the [CLS] head does not use; left in, its parameters
        # would get no gradient, which DDP reports as an error.
        encoder_cls = compat.encoder_class_for_config(config.encoder_config)
        if "add_pooling_layer" in inspect.signature(encoder_cls.__init__).parameters:
            encoder_kwargs["add_pooling_layer"] = False
        self.encoder = AutoModel.from_config(config.encoder_config, **encoder_kwargs)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.score = nn.Linear(config.hidden_size, 1)
        # RoBERTa-style encoders have a single token type; feeding 1s would index out of range.
        self.uses_token_type_ids = getattr(config.encoder_config, "type_vocab_size", 0) >= 2
        self.post_init()
        if config.freeze_encoder:
            self.freeze_encoder()

    @classmethod
    def register_for_auto_class(cls, auto_class: Any = "AutoModelForSequenceClassification") -> None:
        """Kept a no-op: `import trl_ext` registers this class with the Auto classes. transformers calls this after
        loading a checkpoint through its `auto_map` (`trust_remote_code=True`); the real method would make later
        saves copy this module's source into the checkpoint, whose `auto_map` must keep pointing at the
        [`LOADER_FILE`] that imports trl_ext."""

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """`PreTrainedModel.save_pretrained`, plus what makes the checkpoint loadable where trl_ext is not imported:
        an `auto_map` in config.json and [`LOADER_FILE`], a two-line module that imports these classes from trl_ext.
        `AutoModelForSequenceClassification.from_pretrained(dir)` then fails with transformers' error asking for
        `trust_remote_code=True` (instead of "does not recognize this architecture"), and loads with it (or after
        `import trl_ext`)."""
        self.config.auto_map = {"AutoConfig": f"{LOADER_FILE[:-3]}.BertClsRewardConfig",
                                "AutoModelForSequenceClassification": f"{LOADER_FILE[:-3]}.BertClsRewardModel"}
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            with open(os.path.join(save_directory, LOADER_FILE), "w", encoding="utf-8") as handle:
                handle.write(LOADER_SOURCE)

    def _init_weights(self, module: nn.Module) -> None:
        """Extends transformers' initialisation hook: the scalar head as a classifier head, every other module as the
        wrapped encoder initialises it."""
        if module is getattr(self, "score", None):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            nn.init.zeros_(module.bias)
        elif hasattr(self, "encoder"):
            compat.init_weights_as(self.encoder, module)

    def freeze_encoder(self, freeze: bool = True) -> None:
        """Freeze (or unfreeze) the encoder so only the scalar head trains. Recorded in the config."""
        self.config.freeze_encoder = freeze
        self.encoder.requires_grad_(not freeze)

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.encoder.set_input_embeddings(value)

    @classmethod
    def from_encoder(
        cls,
        encoder_name_or_path: str | os.PathLike,
        freeze_encoder: bool = False,
        classifier_dropout: float = 0.0,
        pooling: str = "cls",
        **from_pretrained_kwargs: Any,
    ) -> BertClsRewardModel:
        """Wrap the pretrained encoder at `encoder_name_or_path` (a local dir or hub id) with a fresh scalar head."""
        encoder = AutoModel.from_pretrained(encoder_name_or_path, **from_pretrained_kwargs)
        if not is_encoder_config(encoder.config):
            raise ValueError(
                f"`{encoder_name_or_path}` is a `{encoder.config.model_type}` model, not a BERT-family encoder "
                f"(one of {sorted(ENCODER_MODEL_TYPES)}); the [CLS] head needs a bidirectional encoder."
            )
        config = BertClsRewardConfig(
            encoder_config=encoder.config,
            freeze_encoder=freeze_encoder,
            classifier_dropout=classifier_dropout,
            pooling=pooling,
            initializer_range=getattr(encoder.config, "initializer_range", 0.02),
        )
        # The tokenizer is looked up from `name_or_path` (TRL does this too), so point it at the encoder checkpoint.
        config.name_or_path = str(encoder_name_or_path)
        model = cls(config)
        # `strict=False` because a checkpoint may carry a pooler the head does not use; anything else missing is a bug.
        missing, _ = model.encoder.load_state_dict(encoder.state_dict(), strict=False)
        if missing:
            raise ValueError(f"Encoder weights missing from `{encoder_name_or_path}`: {missing[:5]}...")
        model.to(encoder.dtype)
        return model.eval()  # like `from_pretrained`; trainers switch to train mode themselves

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        encoder_kwargs: dict[str, Any] = {"attention_mask": attention_mask}
        if token_type_ids is not None and self.uses_token_type_ids:
            encoder_kwargs["token_type_ids"] = token_type_ids
        if position_ids is not None:
            encoder_kwargs["position_ids"] = position_ids
        if output_hidden_states:
            encoder_kwargs["output_hidden_states"] = True
        # A frozen encoder needs no autograd graph: skipping it saves the activations' memory and backward time.
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_encoder):
            outputs = self.encoder(input_ids=input_ids, inputs_embeds=inputs_embeds, **encoder_kwargs)
        hidden = outputs.last_hidden_state
        if self.config.pooling == "mean":
            mask = (attention_mask if attention_mask is not None else torch.ones(hidden.shape[:2], device=hidden.device))
            mask = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        else:
            pooled = hidden[:, 0]
        logits = self.score(self.dropout(pooled.to(self.score.weight.dtype)))
        loss = None
        if labels is not None:  # regression on a scalar target, as `num_labels=1` sequence classifiers do
            loss = nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype).view(-1))
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=getattr(outputs, "hidden_states", None) if output_hidden_states else None
        )


AutoConfig.register(BertClsRewardConfig.model_type, BertClsRewardConfig, exist_ok=True)
AutoModelForSequenceClassification.register(BertClsRewardConfig, BertClsRewardModel, exist_ok=True)


@dataclass
class PairEncoding:
    """One encoded (prompt, response) pair. `response_truncated` is True when the response alone exceeded the budget."""

    input_ids: list[int]
    token_type_ids: list[int]
    response_truncated: bool
    prompt_tokens_dropped: int


# tokenizer -> its backend without padding/truncation. Kept here, not as an attribute of the user's tokenizer: a
# tokenizer is the user's object (and `datasets` fingerprints map functions by pickling what they hold).
_CLEAN_BACKENDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _clean_backend(tokenizer: PreTrainedTokenizerBase):
    # The fast tokenizer's backend may carry padding/truncation settings from its checkpoint (sentence-transformers
    # saves `max_seq_length` padding); a private copy without them encodes the exact ids.
    backend = _CLEAN_BACKENDS.get(tokenizer)
    if backend is None:
        if not getattr(tokenizer, "is_fast", False) or getattr(tokenizer, "backend_tokenizer", None) is None:
            raise TypeError(
                f"{type(tokenizer).__name__} is not a fast (tokenizers-backed) tokenizer; pair encoding with "
                "prompt-side truncation needs one."
            )
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        backend.no_padding()
        backend.no_truncation()
        _CLEAN_BACKENDS[tokenizer] = backend
    return backend


def encode_prompt_response(
    tokenizer: PreTrainedTokenizerBase, prompt: str, response: str, max_length: int | None
) -> PairEncoding:
    """Encode `(prompt, response)` as a sentence pair with special tokens and `token_type_ids` (0 prompt, 1 response).

    Over-long inputs lose tokens from the *left of the prompt*, so the start of the prompt goes first and the response
    survives. Only a response longer than the whole budget (`max_length` minus special tokens) is cut, from its end,
    and `response_truncated` says so.
    """
    backend = _clean_backend(tokenizer)
    prompt_enc = backend.encode(prompt, add_special_tokens=False)
    response_enc = backend.encode(response, add_special_tokens=False)
    n_prompt, n_response = len(prompt_enc.ids), len(response_enc.ids)
    response_truncated = False
    if max_length is not None:
        budget = max_length - backend.num_special_tokens_to_add(is_pair=True)
        if budget < 1:
            raise ValueError(f"max_length={max_length} leaves no room for tokens after the special tokens.")
        if n_response > budget:
            response_enc.truncate(budget, direction="right")
            response_truncated = True
        keep_prompt = max(budget - len(response_enc.ids), 0)
        if n_prompt > keep_prompt:
            if keep_prompt == 0:
                prompt_enc = backend.encode("", add_special_tokens=False)
            else:
                prompt_enc.truncate(keep_prompt, direction="left")
    merged = backend.post_process(prompt_enc, response_enc, add_special_tokens=True)
    return PairEncoding(
        input_ids=list(merged.ids),
        token_type_ids=list(merged.type_ids),
        response_truncated=response_truncated,
        prompt_tokens_dropped=n_prompt - len(prompt_enc.ids),
    )


def render_messages(messages: Sequence[dict[str, Any]] | str, tokenizer: PreTrainedTokenizerBase | None = None) -> str:
    """Render a conversational prompt/completion to text for an encoder.

    Strings pass through. Message lists use the tokenizer's chat template when it has one, else a plain
    `"role: content"` rendering (encoders such as BERT have no chat template).
    """
    if isinstance(messages, str):
        return messages
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(messages), tokenize=False)
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)
