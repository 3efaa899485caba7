# Copyright 2026 The trl_ext authors. Apache-2.0.
"""How noisy is each KL estimator from one generation batch? A fixed policy (SmolLM2-135M-Instruct + a trained LoRA
adapter), batches of completions sampled at temperature 1 on the bundled arithmetic prompts, and per batch the mean
sequence KL(π‖π_ref) (reference = adapter disabled) by three estimators:

* `k1`: Σ_t log π(a_t) − log π_ref(a_t) (PPO's KL-in-reward, old TRL's `objective/kl`);
* `k3`: Σ_t exp(−d_t) + d_t − 1 with d_t the same log-ratio (TRL's GRPO `kl`, there as a token mean);
* `full`: Σ_t Σ_v π(v|s_t) log(π(v|s_t)/π_ref(v|s_t)) (`trl_ext.kl_controllers.full_kl_per_token`, `kl_estimator="full"`).

All three have the same expectation; the batch-to-batch relative s.d. is what an adaptive KL controller sees as noise.
Odd batches reuse the previous batch's prompts, so the same-prompt differences show how much of the noise is from
sampling and how much from which prompts were drawn.

    python -m benchmarks.kl_estimator_noise outputs/ppo_kl_adaptive --batches 12 --out benchmarks/results/cpu
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main(args: argparse.Namespace) -> dict:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_ext import load_preference_file
    from trl_ext.kl_controllers import full_kl_per_token
    from trl_ext.rewards.maths import prompt_answer_dataset
    from trl_ext.scripts.assets import smollm2_path

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    path = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16), args.adapter)
    model.eval()
    prompts = prompt_answer_dataset(load_preference_file(REPO / "recipes" / "data" / "arithmetic_ranked.jsonl"))["prompt"]

    def render(prompt):
        if isinstance(prompt, list):
            return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return prompt

    n, results, batch = args.completions, {"k1": [], "k3": [], "full": []}, []
    for b in range(args.batches):
        start = time.perf_counter()
        if b % 2 == 0:
            batch = rng.sample(range(len(prompts)), n)
        enc = tokenizer([render(prompts[i]) for i in batch], return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                 max_new_tokens=args.max_new_tokens)
            completion = out[:, enc.input_ids.shape[1]:]
            is_eos = completion == tokenizer.eos_token_id
            end = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full((n,), completion.shape[1]))
            mask = (torch.arange(completion.shape[1])[None] <= end[:, None]).float()  # up to and including EOS
            attention = torch.cat([enc.attention_mask, mask.long()], 1)
            first = enc.input_ids.shape[1] - 1
            logits = model(input_ids=out, attention_mask=attention).logits[:, first:-1]
            with model.disable_adapter():
                ref_logits = model(input_ids=out, attention_mask=attention).logits[:, first:-1]
            d = (logits.float().log_softmax(-1).gather(-1, completion[..., None])
                 - ref_logits.float().log_softmax(-1).gather(-1, completion[..., None])).squeeze(-1)
            values = {"k1": (d * mask).sum(1).mean().item(),
                      "k3": (((-d).exp() + d - 1) * mask).sum(1).mean().item(),
                      "full": (full_kl_per_token(logits, ref_logits) * mask).sum(1).mean().item()}
        for key, value in values.items():
            results[key].append(value)
        print(f"batch {b} ({'same prompts' if b % 2 else 'new prompts'}): "
              + " ".join(f"{k} {v:.3f}" for k, v in values.items()) + f"  ({time.perf_counter() - start:.1f} s)")
    summary = {"adapter": str(args.adapter), "completions_per_batch": n, "batches": args.batches,
               "max_new_tokens": args.max_new_tokens, "seed": args.seed, "per_batch": results, "estimators": {}}
    for key, values in results.items():
        mean, sd = statistics.mean(values), statistics.stdev(values)
        same = [abs(values[i] - values[i + 1]) for i in range(0, len(values) - 1, 2)]
        summary["estimators"][key] = {"mean": mean, "sd": sd, "relative_sd": sd / mean,
                                      "same_prompts_mean_abs_diff": statistics.mean(same)}
        print(f"{key:5s} mean {mean:.3f}  s.d. {sd:.3f}  relative s.d. {sd / mean:.3f}  "
              f"same-prompt |diff| {statistics.mean(same):.3f}")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "kl_estimator_noise.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("adapter", help="LoRA adapter directory (e.g. the output of `python -m benchmarks.kl_control`)")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--completions", type=int, default=32)
    parser.add_argument("--max_new_tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="Folder for kl_estimator_noise.json (default: print only).")
    main(parser.parse_args())
