# Copyright 2026 The trl_ext authors. Apache-2.0.
"""`RewardConfig`: TRL's reward config plus ranked data and the BERT-CLS head."""

from __future__ import annotations

from dataclasses import dataclass, field

import trl

from .ranked_data import RankedDataArguments

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
        pooling (`str`, *optional*):
            With the `"cls"` head: `"cls"` ([CLS] token) or `"mean"` (masked mean of the last hidden states).
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
    pooling: str | None = field(
        default=None,
        metadata={"help": "With reward_head='cls': what the scalar head reads, 'cls' (the [CLS] token) or 'mean' "
                  "(mean over tokens, what sentence-transformers encoders were trained for). None: 'cls' for a new "
                  "head, a saved BERT-CLS reward model's own otherwise.", "choices": [None, "cls", "mean"]},
    )

    def __post_init__(self):
        if self.reward_head not in REWARD_HEADS:
            raise ValueError(f"RewardConfig.reward_head={self.reward_head!r} is not one of {list(REWARD_HEADS)}.")
        if self.pooling not in (None, "cls", "mean"):
            raise ValueError(f"RewardConfig.pooling={self.pooling!r} is not one of [None, 'cls', 'mean'].")
        super().__post_init__()
