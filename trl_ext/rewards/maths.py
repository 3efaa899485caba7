# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Rule-based rewards for maths data (DeepSeek-R1 style: checkable correctness and format), usable as GRPO/RLOO/PPO
`reward_funcs`. Completions may be text or conversational (a list of messages: the last message's content counts).
Also the data side of online RL on maths prompts: an `answer` column from ranked data (`prompt_answer_dataset`), its
row check (`check_answer_row`), and held-out greedy answer accuracy (`greedy_answer_accuracy`).
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


# --------------------------------------------------------------------------------------------------------------------
# Online RL on maths prompts: answers from ranked data, held-out accuracy
# --------------------------------------------------------------------------------------------------------------------


def check_answer_row(row: dict, index: int) -> None:
    """A row's `answer`, when it has one, must hold a number (a number, or text whose last number is the answer, as
    GSM8K's '... #### 72'): `final_number_reward` compares each completion's last number with it, so an answer without
    one would score every completion 0 (or stop the run mid-training). A row without `answer` passes."""
    import math

    if "answer" not in row:
        return
    answer = row["answer"]
    if isinstance(answer, bool) or answer is None:
        number = None
    elif isinstance(answer, (int, float)):
        number = answer if math.isfinite(answer) else None
    else:
        number = last_number(str(answer))
    if number is None:
        raise ValueError(f"row {index}, field 'answer': {answer!r} holds no number to compare the completion's last "
                         "number with")


def prompt_answer_dataset(dataset):
    """Prompt-only rows with an `answer` column for online RL with `final_number_reward`.

    Ranked data: the answer is the last number of the best-ranked completion (the bundled arithmetic data). Data
    that already has `prompt` and `answer` passes through, each answer checked by [`check_answer_row`];
    GSM8K/SVAMP-style `question` columns become `prompt`.
    """
    from trl_ext.data import is_ranked_dataset

    columns = dataset.column_names
    if "prompt" not in columns and "question" in columns:
        dataset = dataset.rename_column("question", "prompt")
        columns = dataset.column_names
    if "answer" in columns:
        for index, answer in enumerate(dataset["answer"]):
            check_answer_row({"answer": answer}, index)
        return dataset.select_columns(["prompt", "answer"])
    if not is_ranked_dataset(columns):
        raise ValueError(f"Need an 'answer' column or ranked completions to take answers from; columns: {columns}")

    def best_answer(example: dict, index: int) -> dict:
        ranks, scores = example.get("ranks"), example.get("scores")
        if ranks is None and scores is None:
            raise ValueError(f"row {index}, field 'ranks': neither ranks nor scores given.")
        best = ranks.index(min(ranks)) if ranks is not None else scores.index(max(scores))
        number = last_number(completion_text(example["completions"][best]))
        if number is None:
            raise ValueError(f"row {index}, field 'completions': the best completion holds no number.")
        # exact text: "%g" would print 1234567 as "1.23457e+06", whose last number is 6
        return {"prompt": example["prompt"], "answer": str(int(number)) if number.is_integer() else repr(number)}

    return dataset.map(best_answer, with_indices=True, remove_columns=columns)


def greedy_answer_accuracy(model, tokenizer, dataset, max_new_tokens: int = 24, batch_size: int = 16) -> float:
    """Fraction of `dataset` rows whose greedy completion's last number equals `answer` (prompts may be chat)."""
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0.0
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right end
    try:
        with torch.no_grad():
            for start in range(0, len(dataset), batch_size):
                rows = dataset[start:start + batch_size]
                texts = [p if isinstance(p, str) else tokenizer.apply_chat_template(p, tokenize=False,
                                                                                   add_generation_prompt=True)
                         for p in rows["prompt"]]
                enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
                completions = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                correct += sum(final_number_reward(completions, rows["answer"]))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return correct / len(dataset)
