# Copyright 2026 The trl_ext authors. Apache-2.0.
"""The critic's value head, and the helper that finds a model's transformer body to put it on."""

from __future__ import annotations

import torch
from torch import nn


class ValueHead(nn.Module):
    """One scalar per position from the last hidden state (kept in float32 whatever the backbone's dtype)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.summary.weight)  # start from V = 0: the critic learns the scale from the returns
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


def backbone(model: nn.Module) -> nn.Module:
    """The transformer body of a causal LM / sequence classifier (e.g. `LlamaForCausalLM.model`), or the model itself."""
    prefix = getattr(model, "base_model_prefix", "")
    return getattr(model, prefix, model) if prefix else model
