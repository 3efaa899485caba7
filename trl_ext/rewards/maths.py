# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Rule-based rewards for maths data (DeepSeek-R1 style: checkable correctness and format), usable as GRPO/RLOO/PPO
`reward_funcs`. Completions may be text or conversational (a list of messages: the last message's content counts).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the content of the last message of a conversational completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"A completion must be text or a list of messages, got {type(completion).__name__}.")


def last_number(text: str) -> float | None:
    """The last number in `text` ('1,234' and '-3.5' included), or None when it has none."""
    matches = _NUMBER.findall(text)
    if not matches:
        return None
    try:
        return float(matches[-1].replace(",", ""))
    except ValueError:
        return None


def _answer_value(answer: Any, index: int) -> float:
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return float(answer)
    value = last_number(str(answer)) if answer is not None else None
    if value is None:
        raise ValueError(f"row {index}, field 'answer': {answer!r} holds no number to compare with.")
    return value


def final_number_reward(completions: Sequence[Any], answer: Sequence[Any] | None = None, **kwargs: Any) -> list[float]:
    """1.0 when the last number of the completion equals the row's `answer` (within 1e-6), else 0.0.

    `answer` comes from the dataset column of that name (TRL passes extra columns to reward functions); GSM8K-style
    answers such as '#### 72' work, since the last number of the answer text is used.
    """
    if answer is None:
        raise ValueError("final_number_reward needs an 'answer' column in the training dataset.")
    if len(answer) != len(completions):
        raise ValueError(f"Got {len(completions)} completions but {len(answer)} answers.")
    rewards = []
    for i, (completion, gold) in enumerate(zip(completions, answer)):
        predicted = last_number(completion_text(completion))
        rewards.append(float(predicted is not None and abs(predicted - _answer_value(gold, i)) < 1e-6))
    return rewards


#: One short line ending in "= <number>" (optionally a full stop): the answer format of the bundled arithmetic data.
EQUATION_FORMAT = r"^[^\n=]{1,80}=\s*-?\d[\d,]*(?:\.\d+)?\s*\.?\s*$"


def make_format_reward(pattern: str = EQUATION_FORMAT, name: str = "format_reward") -> Callable[..., list[float]]:
    """A reward of 1.0 for completions whose (stripped) text fully matches `pattern`, else 0.0."""
    compiled = re.compile(pattern, re.DOTALL)

    def reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return [float(compiled.fullmatch(completion_text(c).strip()) is not None) for c in completions]

    reward.__name__ = name  # TRL logs rewards/<name>/mean
    return reward


format_reward = make_format_reward()
