# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Tokenizers built locally (no hub), for tests and the benchmark harness.

Random-weight models built from a config need a tokenizer; these give one token per character, so a text of n
characters is n tokens (plus special tokens) and benchmark sequence lengths are exact.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import PreTrainedTokenizerBase

#: Characters both tokenizers know (one token each).
CHARS = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!?:;'\"-+=*/()\n")

_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def build_char_tokenizer() -> PreTrainedTokenizerBase:
    """A character-level fast tokenizer for decoders: `<pad>`=0, `<eos>`=1, `<bos>`=2, `<unk>`=3, a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
    for ch in CHARS:
        vocab.setdefault(ch, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    backend.decoder = decoders.Fuse()  # decode "a b c" back to "abc"
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )
    tok.chat_template = _CHAT_TEMPLATE
    return tok


def build_wordpiece_tokenizer(save_dir: str | os.PathLike, model_max_length: int = 512) -> PreTrainedTokenizerBase:
    """A BERT-style WordPiece tokenizer ([CLS] a [SEP] b [SEP], token_type_ids) whose pieces are single characters.

    Saved to `save_dir` (so a model directory built beside it loads with `AutoTokenizer`).
    """
    from transformers import BertTokenizerFast

    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    for ch in CHARS:
        if ch.strip():
            pieces += [ch, f"##{ch}"]
    tok = BertTokenizerFast(vocab={p: i for i, p in enumerate(pieces)}, do_lower_case=False,
                            model_max_length=model_max_length)
    tok.save_pretrained(save_dir)
    return tok


def reward_a(completions: list, **kwargs) -> list[float]:
    """A learnable rule reward for tests: the fraction of 'a' characters in each (text) completion."""
    return [c.count("a") / max(len(c), 1) for c in completions]


def reward_varied(completions: list, **kwargs) -> list[float]:
    """A reward that differs between (almost) any two completions, so advantages and returns are non-zero at once."""
    return [(sum(map(ord, c)) % 13) / 13 for c in completions]


def record_exact_rollout_kl(trainer) -> list[float]:
    """Test helper: wraps `trainer._generate_and_score_completions` so that, for every training rollout, the exact
    per-completion KL(π‖π_ref) is computed independently (full logits, float64, positions sliced by hand, the reference
    from `trainer.ref_model` or the policy with its adapter disabled) before the policy is updated on it.
    Returns the list the values are appended to."""
    import torch

    values: list[float] = []
    inner = trainer._generate_and_score_completions

    def logps(model, ids, mask, n):
        return model(input_ids=ids, attention_mask=mask).logits[:, -n - 1:-1].double().log_softmax(-1)

    def wrapped(inputs):
        output = inner(inputs)
        if trainer.model.training:
            ids = torch.cat([output["prompt_ids"], output["completion_ids"]], 1)
            mask = torch.cat([output["prompt_mask"], output["completion_mask"]], 1)
            n = output["completion_ids"].size(1)
            with torch.no_grad():
                policy = logps(trainer.model, ids, mask, n)
                if trainer.ref_model is not None:
                    ref = logps(trainer.ref_model, ids, mask, n)
                else:
                    with trainer.model.disable_adapter():
                        ref = logps(trainer.model, ids, mask, n)
            per_token = (policy.exp() * (policy - ref)).sum(-1) * output["completion_mask"]
            values.append(per_token.sum().item() / ids.size(0))
        return output

    trainer._generate_and_score_completions = wrapped
    return values
