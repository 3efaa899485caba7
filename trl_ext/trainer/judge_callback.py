# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Held-out judgement of an RL run, so that reward over-optimisation is visible while it happens.

Gao et al. (2022, "Scaling Laws for Reward Model Overoptimization") show the true ("gold") score of a policy trained
against a learned reward model first rising with KL(π‖π_ref) and then falling, while the learned reward keeps rising.
The training logs show only the learned reward. `JudgeCallback` samples the policy on held-out prompts every
`judge_every` steps and logs what a user needs to see the turn:

* `judge/gold`: the mean gold score (a function the user trusts: exact answers, unit tests, a held-out judge),
  `judge/gold_ci95` the half-width of its 95 % interval over prompts;
* `judge/rm`: the mean learned reward (raw scores) of the same samples;
* `judge/kl`: Σ_t log π(y_t) − log π_ref(y_t) over each sampled completion, averaged (nats per completion);
* `judge/onpolicy_rm_accuracy` (`judge/onpolicy_pairs` pairs): over pairs of one prompt's samples whose gold scores
  differ, how often the reward model orders them as the gold score does. The reward model's accuracy on its own
  held-out data says little about this: here it judges what the policy writes now.

The pure figures (`best_of_n_expectation`, `best_of_n_kl`, `onpolicy_pair_accuracy`, `mean_ci95`) and the sampler
(`sample_completions`) are public too: the RLHF pipeline recipe uses them for best-of-n and for its judgements outside
a trainer.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from .. import _trl_compat as compat

# --------------------------------------------------------------------------------------------------------------------
# Pure figures
# --------------------------------------------------------------------------------------------------------------------


def best_of_n_kl(n: int) -> float:
    """KL(π_best-of-n ‖ π) = log n − (n − 1)/n nats, the analytic value Stiennon et al. (2020) derive and Gao et al.
    (2022) plot best-of-n against (an upper bound when samples can repeat, exact for distinct samples)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}.")
    return math.log(n) - (n - 1) / n


def best_of_n_expectation(scores: Sequence[float], values: Sequence[float], n: int) -> float:
    """The expected `value` of the highest-`score` sample among `n` drawn without replacement from the N given.

    Exact, not sampled (the estimator of Nakano et al. 2021): with the samples sorted by ascending score, the i-th
    (1-based) is the best of a uniformly random n-subset with probability C(i−1, n−1) / C(N, n). Samples with equal
    scores form one block whose members all count with the block's mean value (a tie is broken uniformly at random).
    """
    N = len(scores)
    if len(values) != N:
        raise ValueError(f"Got {N} scores but {len(values)} values.")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= N:
        raise ValueError(f"n must be an integer in [1, {N}] (the number of samples), got {n!r}.")
    order = sorted(range(N), key=lambda i: scores[i])
    sorted_values = [float(values[i]) for i in order]
    start = 0
    while start < N:  # tie blocks -> block means
        end = start
        while end + 1 < N and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        if end > start:
            block_mean = sum(sorted_values[start : end + 1]) / (end + 1 - start)
            sorted_values[start : end + 1] = [block_mean] * (end + 1 - start)
        start = end + 1
    total = math.comb(N, n)
    return sum(math.comb(i, n - 1) * v for i, v in enumerate(sorted_values)) / total


def onpolicy_pair_accuracy(scores: Sequence[Sequence[float]], gold: Sequence[Sequence[float]]) -> tuple[float, int]:
    """`(accuracy, pairs)`: over every pair (j, k) of one prompt's samples with gold_j ≠ gold_k, the fraction with
    sign(score_j − score_k) = sign(gold_j − gold_k), equal scores counting 0 (a tie is not a win, TRL's meaning of
    accuracy); NaN when no pair's gold differs."""
    if len(scores) != len(gold):
        raise ValueError(f"Got scores for {len(scores)} prompts but gold for {len(gold)}.")
    agree, pairs = 0.0, 0
    for prompt, (s, g) in enumerate(zip(scores, gold)):
        if len(s) != len(g):
            raise ValueError(f"prompt {prompt}: {len(s)} scores but {len(g)} gold values.")
        for j in range(len(s)):
            for k in range(j + 1, len(s)):
                if g[j] == g[k]:
                    continue
                pairs += 1
                agree += float((s[j] - s[k]) * (g[j] - g[k]) > 0)  # equal scores: 0
    return (agree / pairs if pairs else math.nan), pairs


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """`(mean, half_width)`: the mean and the half-width 1.96·s/√m of its normal-approximation 95 % interval (s the
    sample standard deviation of the m values; 0 for a single value)."""
    m = len(values)
    if m == 0:
        raise ValueError("mean_ci95 needs at least one value.")
    mean = sum(values) / m
    if m == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (m - 1)
    return mean, 1.96 * math.sqrt(var / m)


# --------------------------------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Samples:
    """Completions of `sample_completions`, prompt-major: prompt i's samples are `texts[i*n:(i+1)*n]`."""

    texts: list[str]
    num_samples: int
    completion_ids: list[list[int]]
    logps: list[float]
    ref_logps: list[float] | None = None

    @property
    def kl(self) -> list[float] | None:
        """Σ_t log π(y_t) − log π_ref(y_t) per completion (nats), or None without a reference."""
        if self.ref_logps is None:
            return None
        return [a - b for a, b in zip(self.logps, self.ref_logps)]


def is_conversational_prompt(prompt: Any) -> bool:
    return isinstance(prompt, (list, tuple)) and all(isinstance(m, dict) and "content" in m for m in prompt)


def _prompt_text(tokenizer, prompt: Any, chat_template_kwargs: dict | None) -> str:
    if isinstance(prompt, str):
        return prompt
    if not is_conversational_prompt(prompt):
        raise TypeError(f"a prompt must be text or a list of messages, got {type(prompt).__name__}.")
    return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True,
                                         **(chat_template_kwargs or {}))


def _eos_ids(model, tokenizer) -> list[int]:
    ids = set()
    for source in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        if source is None:
            continue
        ids.update(source if isinstance(source, (list, tuple)) else [source])
    return sorted(int(i) for i in ids)


def _common_prefix_length(sequences: list[list[int]]) -> int:
    """Tokens every sequence starts with, leaving at least one token of each sequence after them."""
    limit = min(len(seq) for seq in sequences) - 1
    first = sequences[0]
    for i in range(max(limit, 0)):
        if any(seq[i] != first[i] for seq in sequences):
            return i
    return max(limit, 0)


def _filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Top-k then nucleus (top-p) filtering of temperature-scaled logits: what is cut becomes −inf."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p < 1.0:
        sorted_logits, index = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # keep the smallest prefix whose mass reaches top_p
        logits = logits.masked_fill(drop.scatter(-1, index, drop), -math.inf)
    return logits


@torch.no_grad()
def sample_completions(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[Any],
    *,
    num_samples: int = 1,
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
    reference: torch.nn.Module | str | None = None,
    chat_template_kwargs: dict | None = None,
) -> Samples:
    """Sample `num_samples` completions per prompt, stopping at EOS or after `max_new_tokens`.

    Each prompt is encoded once and its KV cache repeated for its samples (best-of-n pays one prompt forward per
    prompt, not n), and a completion that reached EOS leaves the batch with its cache rows (later steps forward only
    the unfinished ones). Conversational prompts go through the tokenizer's chat template with the generation prompt, as
    TRL's online trainers render them. Sampling uses a private generator seeded with `seed` (the global RNG is
    untouched) and left padding passed per call (the tokenizer is not modified).

    `logps` is Σ_t log π(y_t) of each completion under `model` at `temperature` (the distribution TRL's KL uses; top-k
    / top-p only restrict what is sampled). With `reference` (`"adapter"`: the same PEFT model with the reference
    adapter of `trl_ext.reference_policy`; or a separate model) the reference scores the same tokens in lockstep, with
    its own cache, into `ref_logps`; a policy identical to its reference gives a KL of exactly 0.
    """
    if num_samples < 1 or batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"num_samples, batch_size and max_new_tokens must be >= 1, got {num_samples}, "
                         f"{batch_size}, {max_new_tokens}.")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    from ..peft_utils import reference_policy

    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(int(seed))
    eos = torch.tensor(_eos_ids(model, tokenizer), device=device)
    if eos.numel() == 0:
        raise ValueError("The tokenizer and the model's generation config name no EOS token to stop at.")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else int(eos[0])
    cache_key = compat.kv_cache_keyword(model)

    def forward(ids, mask, positions, cache, use_reference):
        context = reference_policy(model) if use_reference == "adapter" else contextlib.nullcontext()
        net = reference if isinstance(use_reference, torch.nn.Module) else model
        # The last position as an index tensor, not `logits_to_keep=1`: the int slices the hidden states into a
        # non-contiguous view, and a bf16 LM head with frozen weights is then ~100x slower on CPU (torch 2.13).
        last = torch.tensor([ids.shape[1] - 1], device=device)
        with context:
            out = net(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                      logits_to_keep=last, **{cache_key: cache})
        return torch.log_softmax(out.logits[:, -1].float() / temperature, dim=-1), compat.output_kv_cache(out)

    texts, completion_ids, logps, ref_logps = [], [], [], []
    per_chunk = max(1, batch_size // num_samples)
    for start in range(0, len(prompts), per_chunk):
        rendered = [_prompt_text(tokenizer, p, chat_template_kwargs) for p in prompts[start : start + per_chunk]]
        token_lists = tokenizer(rendered, add_special_tokens=False)["input_ids"]
        # The prompts' common start (a chat template's system turn) is encoded once and its cache shared; each
        # prompt's own part is left-padded after it: [shared][pads][own tokens], positions counting real tokens only.
        shared = _common_prefix_length(token_lists)
        width = max(len(t) for t in token_lists) - shared
        ids = torch.tensor([[pad_id] * (width - len(t) + shared) + t[shared:] for t in token_lists], device=device)
        mask = torch.tensor([[1] * shared + [0] * (width - len(t) + shared) + [1] * (len(t) - shared)
                             for t in token_lists], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        runs = {}
        for name, use_reference in [("policy", None)] + ([("reference", reference)] if reference is not None else []):
            cache = None
            if shared:
                prefix = torch.tensor([token_lists[0][:shared]], device=device)
                _, cache = forward(prefix, torch.ones_like(prefix), positions[:1, :shared], None, use_reference)
                cache.batch_repeat_interleave(len(token_lists))
            runs[name] = forward(ids, mask, positions[:, shared:], cache, use_reference)
        if num_samples > 1:  # the prompt was encoded once; its cache serves every sample
            for name, (logprobs, cache) in runs.items():
                cache.batch_repeat_interleave(num_samples)
                runs[name] = (logprobs.repeat_interleave(num_samples, dim=0), cache)
            mask = mask.repeat_interleave(num_samples, dim=0)
            positions = positions.repeat_interleave(num_samples, dim=0)
        rows = mask.shape[0]
        # Rows that reached EOS leave the batch (their caches too): a finished row costs nothing in later steps.
        alive = torch.arange(rows, device=device)  # the batch's rows, as rows of this chunk
        generated = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=device)
        total = {name: torch.zeros(rows, device=device) for name in runs}
        length = torch.zeros(rows, dtype=torch.long, device=device)
        position = positions[:, -1:]
        for step in range(max_new_tokens):
            logprobs = runs["policy"][0]
            filtered = _filter_logits(logprobs, top_k, top_p) if (top_k or top_p < 1.0) else logprobs
            token = torch.multinomial(filtered.softmax(-1), 1, generator=generator).squeeze(-1)
            generated[alive, step] = token
            for name, (lp, _) in runs.items():
                total[name][alive] += lp.gather(-1, token[:, None]).squeeze(-1)
            length[alive] += 1
            keep = ~torch.isin(token, eos)
            if step == max_new_tokens - 1 or not bool(keep.any()):
                break
            if not bool(keep.all()):
                kept = keep.nonzero().squeeze(-1)
                alive, token, mask, position = alive[kept], token[kept], mask[kept], position[kept]
                for _, cache in runs.values():
                    cache.batch_select_indices(kept)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            position = position + 1
            for name, (_, cache) in runs.items():
                runs[name] = forward(token[:, None], mask, position, cache,
                                     None if name == "policy" else reference)
        generated = generated.tolist()
        for row, n in zip(generated, length.tolist()):  # up to and including the first EOS
            completion_ids.append(row[:n])
            texts.append(tokenizer.decode(row[:n], skip_special_tokens=True))
        logps += total["policy"].tolist()
        if reference is not None:
            ref_logps += total["reference"].tolist()
    return Samples(texts=texts, num_samples=num_samples, completion_ids=completion_ids, logps=logps,
                   ref_logps=ref_logps if reference is not None else None)


# --------------------------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------------------------


def as_completions(prompts: Sequence[Any], texts: Sequence[str], num_samples: int) -> tuple[list, list]:
    """`(prompts, completions)` one per sample, as TRL hands them to reward functions: a conversational prompt's
    completion is `[{"role": "assistant", "content": text}]`."""
    flat = [p for p in prompts for _ in range(num_samples)]
    completions = [[{"role": "assistant", "content": t}] if is_conversational_prompt(p) else t
                   for p, t in zip(flat, texts)]
    return flat, completions


def _checked(values: Any, expected: int, name: str) -> list[float]:
    values = list(values)
    if len(values) != expected:
        raise ValueError(f"{name} returned {len(values)} values for {expected} completions.")
    out = []
    for i, v in enumerate(values):
        if v is None or not math.isfinite(float(v)):
            raise ValueError(f"{name} returned {v!r} for completion {i}: a judgement needs a finite number for every "
                             "completion.")
        out.append(float(v))
    return out


def score_with(function: Callable, prompts: list, completions: list, columns: dict[str, list],
               name: str) -> list[float]:
    """Raw scores of a reward function or reward model: `function.score(prompts, completions)` when it has one
    (`TextRewardModel`: never whitened), else `function(prompts=..., completions=..., **columns)` as TRL calls
    reward functions."""
    raw = getattr(function, "score", None)
    values = raw(prompts, completions) if callable(raw) else function(prompts=prompts, completions=completions,
                                                                      **columns)
    return _checked(values, len(completions), name)


def _rm_rank(point: dict[str, Any]) -> float:
    """A judgement's learned reward for choosing the checkpoint; one without (no reward model, or a starting point
    given without it) ranks below any measured reward, so among judgements without one the latest wins."""
    rm = point.get("rm")
    return -math.inf if rm is None else float(rm)


def _name(function: Any) -> str:
    return getattr(function, "__name__", None) or type(function).__name__


# --------------------------------------------------------------------------------------------------------------------
# The callback
# --------------------------------------------------------------------------------------------------------------------


class JudgeCallback(TrainerCallback):
    """Judge an RL run on held-out prompts with a gold function: `judge/*` metrics at `judge_every` steps.

    Works with any trl_ext (or TRL) online trainer: GRPOTrainer, RLOOTrainer, PPOTrainer.

        trainer = GRPOTrainer(model, reward_funcs=[rm], args=args, train_dataset=train)
        trainer.add_callback(JudgeCallback(trainer, gold=final_number_reward, reward_model=rm,
                                           eval_dataset=held_out, judge_every=10))

    Args:
        trainer: the trainer to judge (its model, accelerator, generation settings and log).
        gold: the score you trust, called as TRL calls a reward function: `gold(prompts=..., completions=...,
            **columns)` with the held-out rows' other columns (e.g. `answer`), one finite number per completion.
        reward_model: the learned reward to compare with (a `TextRewardModel` is read through `.score`, raw);
            None: no `judge/rm` and no on-policy accuracy.
        eval_dataset: held-out rows with a `prompt` column; default the trainer's `eval_dataset`.
        judge_every: steps between two judgements; default the trainer's `eval_steps`.
        num_prompts: judge the first `num_prompts` rows only.
        num_samples: completions per prompt (>= 2 for `judge/onpolicy_rm_accuracy`).
        max_new_tokens, temperature: default the trainer's `max_completion_length` and `temperature` (its `top_k`,
            `top_p` and `chat_template_kwargs` are used too), so the judged policy is the one being trained.
        batch_size: sequences per forward pass. seed: the sampling seed (the same prompts and seed at every judgement).
        judge_at_start: judge before the first step too (the starting policy's point; its KL is 0).
        kl_budget, best_model_dir: with both, after every judgement whose `judge/kl` is within `kl_budget` nats and
            whose `judge/rm` is the highest so far among those (without a reward model: the latest), the model is
            saved to `best_model_dir`, so the run's checkpoint is chosen by a KL budget fixed in advance and the
            learned reward, never by the gold score. `best` holds that judgement.

    Each judgement is appended to `points` (`step`, `gold`, `gold_ci95`, `rm`, `kl`, `onpolicy_rm_accuracy`,
    `onpolicy_pairs`, `example`). Prompts are split across processes and the figures gathered; every process logs the
    same values. Logging goes through `transformers.Trainer.log` directly, so the trainer's own metric averaging
    (TRL's `log` clears its metric buffers) is not disturbed.
    """

    def __init__(
        self,
        trainer: Trainer,
        gold: Callable[..., Sequence[float]],
        reward_model: Callable[..., Sequence[float]] | None = None,
        eval_dataset: Any = None,
        *,
        judge_every: int | None = None,
        num_prompts: int | None = None,
        num_samples: int = 2,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        batch_size: int = 32,
        seed: int = 0,
        judge_at_start: bool = True,
        kl_budget: float | None = None,
        best_model_dir: str | None = None,
    ) -> None:
        if not callable(gold):
            raise TypeError(f"gold must be a function scoring completions, got {type(gold).__name__}.")
        if reward_model is not None and not callable(reward_model) and not callable(getattr(reward_model, "score",
                                                                                            None)):
            raise TypeError(f"reward_model must be callable or have .score, got {type(reward_model).__name__}.")
        dataset = eval_dataset if eval_dataset is not None else trainer.eval_dataset
        if dataset is None:
            raise ValueError("JudgeCallback needs held-out prompts: pass eval_dataset, or give the trainer one.")
        if isinstance(dataset, dict):
            raise ValueError("JudgeCallback needs one held-out dataset, got a dict of several; pass eval_dataset.")
        columns = compat.dataset_column_names(dataset)
        if "prompt" not in columns:
            raise ValueError(f"The held-out dataset has no 'prompt' column (columns: {columns}).")
        if num_prompts is not None:
            if num_prompts < 1:
                raise ValueError(f"num_prompts must be >= 1, got {num_prompts}.")
            dataset = dataset.select(range(min(num_prompts, len(dataset))))
        args = trainer.args
        every = judge_every if judge_every is not None else getattr(args, "eval_steps", None)
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"judge_every must be an integer >= 1 (got {every!r}; without it the trainer's "
                             "eval_steps is used).")
        if num_samples < 1 or batch_size < 1:
            raise ValueError(f"num_samples and batch_size must be >= 1, got {num_samples} and {batch_size}.")
        if (kl_budget is None) != (best_model_dir is None):
            raise ValueError("kl_budget and best_model_dir go together: the best checkpoint within the budget is "
                             "saved to best_model_dir.")
        if kl_budget is not None and not (math.isfinite(kl_budget) and kl_budget >= 0):
            raise ValueError(f"kl_budget must be a finite number >= 0 (nats per completion), got {kl_budget}.")
        self.trainer = trainer
        self.gold, self.reward_model = gold, reward_model
        self.prompts = list(dataset["prompt"])
        self.columns = {c: list(dataset[c]) for c in columns if c != "prompt"}
        self.judge_every, self.num_samples, self.batch_size, self.seed = every, num_samples, batch_size, seed
        self.judge_at_start = judge_at_start
        self.kl_budget, self.best_model_dir = kl_budget, best_model_dir
        self.generation = {
            "max_new_tokens": max_new_tokens or getattr(args, "max_completion_length", None) or 256,
            "temperature": temperature if temperature is not None else (getattr(args, "temperature", None) or 1.0),
            "top_k": getattr(args, "top_k", None) or 0,
            "top_p": getattr(args, "top_p", None) if getattr(args, "top_p", None) is not None else 1.0,
            "chat_template_kwargs": getattr(args, "chat_template_kwargs", None),
        }
        self.points: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        if kl_budget is not None and self._reference(trainer.model) is None:
            raise ValueError("kl_budget needs the KL to the reference, and this run has none to measure it with (a "
                             "PEFT policy, or a trainer with a ref_model).")

    # -- judgement ---------------------------------------------------------------------------------------------------
    def _reference(self, model) -> torch.nn.Module | str | None:
        from peft import PeftModel

        if isinstance(model, PeftModel):
            return "adapter"
        ref = getattr(self.trainer, "ref_model", None)
        return self.trainer.accelerator.unwrap_model(ref) if ref is not None else None

    def _judge_indices(self, model, indices: list[int]) -> list[dict]:
        prompts = [self.prompts[i] for i in indices]
        samples = sample_completions(model, self.trainer.processing_class, prompts, num_samples=self.num_samples,
                                     batch_size=self.batch_size, seed=self.seed, reference=self._reference(model),
                                     **self.generation)
        flat, completions = as_completions(prompts, samples.texts, self.num_samples)
        columns = {c: [values[i] for i in indices for _ in range(self.num_samples)]
                   for c, values in self.columns.items()}
        gold = score_with(self.gold, flat, completions, columns, f"gold function {_name(self.gold)!r}")
        rm = (score_with(self.reward_model, flat, completions, columns, f"reward model {_name(self.reward_model)!r}")
              if self.reward_model is not None else None)
        kl = samples.kl
        n = self.num_samples
        return [{"index": i, "gold": gold[k * n : (k + 1) * n], "rm": rm[k * n : (k + 1) * n] if rm else None,
                 "kl": kl[k * n : (k + 1) * n] if kl else None, "example": samples.texts[k * n]}
                for k, i in enumerate(indices)]

    def judge(self, step: int | None = None) -> dict[str, Any]:
        """Judge the trainer's model now; returns the figures (also appended to `points`), logs nothing."""
        from accelerate.utils import gather_object

        trainer = self.trainer
        accelerator = trainer.accelerator
        wrapped = trainer.model_wrapped if getattr(trainer, "model_wrapped", None) is not None else trainer.model
        with compat.unwrap_for_generation(wrapped, accelerator) as model:
            was_training = model.training
            grads = {n: p.requires_grad for n, p in model.named_parameters()}  # PEFT's adapter switches change them
            model.eval()
            try:
                with accelerator.split_between_processes(list(range(len(self.prompts)))) as indices:
                    records = self._judge_indices(model, list(indices))
            finally:
                model.train(was_training)
                for n, p in model.named_parameters():
                    p.requires_grad_(grads.get(n, p.requires_grad))
        records = sorted(gather_object(records), key=lambda r: r["index"]) if accelerator.num_processes > 1 else records
        gold, half = mean_ci95([sum(r["gold"]) / len(r["gold"]) for r in records])
        point: dict[str, Any] = {"step": trainer.state.global_step if step is None else step, "gold": gold,
                                 "gold_ci95": half}
        if records and records[0]["rm"] is not None:
            point["rm"] = sum(sum(r["rm"]) for r in records) / sum(len(r["rm"]) for r in records)
            if self.num_samples > 1:
                accuracy, pairs = onpolicy_pair_accuracy([r["rm"] for r in records], [r["gold"] for r in records])
                point["onpolicy_rm_accuracy"], point["onpolicy_pairs"] = accuracy, pairs
        if records and records[0]["kl"] is not None:
            point["kl"] = sum(sum(r["kl"]) for r in records) / sum(len(r["kl"]) for r in records)
        beta = getattr(trainer, "beta", None)
        if isinstance(beta, (int, float)):
            point["beta"] = float(beta)
        point["example"] = records[0]["example"] if records else ""
        self.points.append(point)
        self._maybe_save_best(point)
        return point

    def _maybe_save_best(self, point: dict[str, Any]) -> None:
        if self.kl_budget is None or point.get("kl") is None or point["kl"] > self.kl_budget:
            return
        if self.best is not None and _rm_rank(point) < _rm_rank(self.best):
            return
        self.best = {k: v for k, v in point.items() if k != "example"}
        self.trainer.save_model(self.best_model_dir)

    def _judge_and_log(self, state, control) -> None:
        if self.points and self.points[-1]["step"] == state.global_step:
            return
        point = self.judge(state.global_step)
        logs = {f"judge/{k}": float(v) for k, v in point.items()
                if k not in ("step", "example", "beta") and isinstance(v, (int, float)) and not math.isnan(v)}
        # `on_log` clears `should_log`: keep the trainer's own decision to log this step
        should_log = control.should_log
        Trainer.log(self.trainer, logs)
        control.should_log = self.trainer.control.should_log = should_log

    # -- events ------------------------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        if self.judge_at_start:
            self._judge_and_log(state, control)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.judge_every == 0:
            self._judge_and_log(state, control)

    def on_train_end(self, args, state, control, **kwargs):
        self._judge_and_log(state, control)
