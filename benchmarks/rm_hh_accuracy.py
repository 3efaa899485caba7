# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Held-out accuracy of the MiniLM encoder reward model on Anthropic HH-RLHF (helpful-base + harmless-base).

    python -m benchmarks.rm_hh_accuracy                                   # cls and mean pooling x 128/256/512 tokens
    python -m benchmarks.rm_hh_accuracy --poolings mean --max_lengths 256 --max_train_pairs 2000

Uses the HH files in `../shared/data/hh-rlhf`, holds out 10 % of the *prompts* (seed 42: no prompt is on both sides),
fine-tunes all-MiniLM-L6-v2 + a linear reward head on the rest (Bradley-Terry) and reports held-out pairwise accuracy,
AUC and wall-clock per (pooling, max_length). The floor to beat, on the same held-out pairs: "the longer answer wins"
(characters; ties count one half). Every run sees the same training pairs in the same order.

Writes `rm_hh_accuracy.json` (device, versions, command, every run), `rm_hh_accuracy.md` and `rm_hh_accuracy.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from benchmarks.common import RESULTS_CPU, bar_plot, environment, shared_data_dir  # noqa: E402


def split_by_prompt(data, held_out: float, seed: int):
    """(train, held-out) with every prompt on one side only."""
    prompts = sorted(set(data["prompt"]))
    random.Random(seed).shuffle(prompts)
    held = set(prompts[: round(held_out * len(prompts))])
    column = data["prompt"]
    return (data.select([i for i, p in enumerate(column) if p not in held]),
            data.select([i for i, p in enumerate(column) if p in held]))


def longer_wins_accuracy(data) -> float:
    hits = [1.0 if len(c) > len(r) else 0.5 if len(c) == len(r) else 0.0 for c, r in zip(data["chosen"], data["rejected"])]
    return sum(hits) / len(hits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--poolings", default="cls,mean")
    parser.add_argument("--max_lengths", default="128,256,512")
    parser.add_argument("--max_train_pairs", type=int, default=None, help="Train on the first N (shuffled) pairs.")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--logging_steps", type=int, default=50, help="Training-curve points in the JSON.")
    parser.add_argument("--out", default=str(RESULTS_CPU))
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    from trl_ext.scripts.assets import minilm_path
    from trl_ext import BertClsRewardModel, RewardConfig, RewardTrainer, load_hh_rlhf

    data, hh_stats = load_hh_rlhf([shared_data_dir() / "hh-rlhf" / f"{name}_test.jsonl.gz"
                                   for name in ("helpful-base", "harmless-base")])
    train, held = split_by_prompt(data, 0.1, seed=42)
    train = train.shuffle(seed=42)
    if args.max_train_pairs:
        train = train.select(range(min(args.max_train_pairs, len(train))))
    result = {**environment("python -m benchmarks.rm_hh_accuracy " + " ".join(sys.argv[1:])),
              "data": "HH-RLHF helpful-base + harmless-base test files, 10 % of prompts held out (seed 42)",
              "hh_loader_stats": hh_stats, "train_pairs": len(train), "heldout_pairs": len(held),
              "heldout_prompts": len(set(held["prompt"])), "model": "all-MiniLM-L6-v2 + linear reward head, full "
              "fine-tune", "epochs": args.epochs, "batch": args.batch, "learning_rate": args.lr,
              "longer_answer_wins_accuracy": round(longer_wins_accuracy(held), 4), "runs": []}
    print(f"{len(train)} training pairs, {len(held)} held-out pairs; longer answer wins: "
          f"{result['longer_answer_wins_accuracy']}", flush=True)
    encoder = str(minilm_path())
    for pooling in args.poolings.split(","):
        for max_length in (int(n) for n in args.max_lengths.split(",")):
            torch.manual_seed(0)
            config = RewardConfig(
                output_dir=tempfile.mkdtemp(), num_train_epochs=args.epochs, per_device_train_batch_size=args.batch,
                per_device_eval_batch_size=32, learning_rate=args.lr, warmup_steps=20, max_length=max_length,
                bf16=False, report_to=[], save_strategy="no", logging_steps=args.logging_steps,
                activation_checkpointing=False, seed=42, disable_tqdm=True, data_seed=42)
            model = BertClsRewardModel.from_encoder(encoder, pooling=pooling)
            trainer = RewardTrainer(model, args=config, train_dataset=train, eval_dataset=held)
            start = time.perf_counter()
            trainer.train()
            train_seconds = time.perf_counter() - start
            start = time.perf_counter()
            after = trainer.evaluate()
            run = {"pooling": pooling, "max_length": max_length, "train_seconds": round(train_seconds, 1),
                   "eval_seconds": round(time.perf_counter() - start, 1),
                   "accuracy": round(after["eval_accuracy"], 4), "auc": round(after["eval_rm/auc"], 4),
                   "eval_loss": round(after["eval_loss"], 4),
                   "truncated_responses": trainer.ranking_stats["train"]["truncated_responses"],
                   # the training curve shows whether a run under-fits (loss near ln 2) or memorises (loss near 0)
                   "train_log": [{"step": h["step"], "loss": round(float(h["loss"]), 4),
                                  "accuracy": round(float(h["accuracy"]), 4)}
                                 for h in trainer.state.log_history if "loss" in h and "accuracy" in h]}
            result["runs"].append(run)
            print(run, flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rm_hh_accuracy.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| pooling | max_length | held-out accuracy | AUC | train s | eval s | truncated training texts |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['pooling']} | {r['max_length']} | {r['accuracy']:.3f} | {r['auc']:.3f} | {r['train_seconds']} | "
              f"{r['eval_seconds']} | {r['truncated_responses']} |" for r in result["runs"]]
    lines.append(f"| longer answer wins | - | {result['longer_answer_wins_accuracy']:.3f} | - | - | - | - |")
    table = "\n".join(lines)
    (out / "rm_hh_accuracy.md").write_text(
        f"# MiniLM reward model on HH-RLHF\n\n{result['data']}: {len(train)} training pairs, {len(held)} held-out "
        f"pairs ({result['heldout_prompts']} prompts). {result['model']}, {args.epochs} epoch(s), batch {args.batch}, "
        f"lr {args.lr}; device {result['device']}, {result['torch_threads']} threads.\n\n{table}\n\n"
        f"Command: `{result['command']}`\n")
    lengths = sorted({r["max_length"] for r in result["runs"]})
    series = {p: [next((r["accuracy"] for r in result["runs"] if r["pooling"] == p and r["max_length"] == n), 0.0)
                  for n in lengths] for p in args.poolings.split(",")}
    bar_plot(out / "rm_hh_accuracy.png", "MiniLM reward model, HH-RLHF held-out accuracy",
             [f"max_length {n}" for n in lengths], series, "held-out pairwise accuracy",
             hline=(result["longer_answer_wins_accuracy"], "longer answer wins"))
    print(table)


if __name__ == "__main__":
    main()
