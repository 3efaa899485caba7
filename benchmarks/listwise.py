# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Bradley-Terry all-pairs vs Plackett-Luce (listwise) on held-out rankings: a reward model and DPO.

    python -m benchmarks.listwise --part rm     # MiniLM reward model on OASST1 ranked groups, whole trees held out
    python -m benchmarks.listwise --part dpo    # SmolLM2-135M-Instruct + LoRA DPO on the bundled ranked arithmetic data
    python -m benchmarks.listwise --part rm --seeds 0,1,2 --epochs 2

Both losses train in grouped mode (one forward per completion) on the same groups, from the same initialisation, for
the same number of epochs, so they get the same compute; the wall-clock of each run is reported.

* `rm`: OASST1 English validation groups (`../shared/data/oasst1`), split by `message_tree_id` so no tree is on both
  sides. Held-out metrics: pairwise accuracy over every strictly ordered pair (TRL's accuracy), and per group means of
  Kendall τ, NDCG (gains 2^relevance − 1, relevance = K − 1 − rank), NDCG@3 and top-1 accuracy.
* `dpo`: `recipes/data/arithmetic_ranked.jsonl` (train / test split column). Held-out preference accuracy (every pair,
  implicit reward β·log π/π_ref of the better completion higher) and implicit-reward Kendall τ per group.

Writes `listwise_<part>.json` (device, versions, command, every run), `listwise_<part>.md` and `listwise_<part>.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from benchmarks.common import REPO_ROOT, RESULTS_CPU, bar_plot, environment, shared_data_dir  # noqa: E402

LOSSES = ("bradley_terry", "plackett_luce")
GROUP_METRICS = ("kendall_tau", "spearman", "ndcg", "ndcg@3", "top1_accuracy")


def split_by_tree(groups, held_out: float, seed: int):
    """(train, held-out) with whole conversation trees on one side only."""
    trees = sorted(set(groups["message_tree_id"]))
    random.Random(seed).shuffle(trees)
    held = set(trees[: max(1, round(held_out * len(trees)))])
    ids = groups["message_tree_id"]
    return (groups.select([i for i, t in enumerate(ids) if t not in held]),
            groups.select([i for i, t in enumerate(ids) if t in held]))


def _eval_sets(held):
    from trl_ext import ranked_to_pairs

    pairs, _ = ranked_to_pairs(held)
    return {"groups": held, "pairs": pairs.select_columns(["prompt", "chosen", "rejected"])}


def _held_out_metrics(trainer, accuracy_key: str) -> dict:
    """Evaluate on both held-out sets. TRL logs its own metrics (accuracy, rm/*) as `eval_<name>` whatever the
    evaluation set is called, so each set's figures are read from the log entry that carries its loss."""
    trainer.evaluate()
    logs = {name: next(e for e in reversed(trainer.state.log_history) if f"eval_{name}_loss" in e)
            for name in ("groups", "pairs")}
    out = {"pair_accuracy": logs["pairs"][f"eval_{accuracy_key}"]}
    for key in GROUP_METRICS:
        if f"eval_rm/{key}" in logs["groups"]:
            out[key] = logs["groups"][f"eval_rm/{key}"]
    return {key: round(value, 4) for key, value in out.items()}


def run_rm(args) -> dict:
    from trl_ext.scripts.assets import minilm_path
    from trl_ext import BertClsRewardModel, RewardConfig, RewardTrainer, load_oasst_ranked

    groups = load_oasst_ranked(shared_data_dir() / "oasst1" / "oasst1_en_validation.messages.jsonl",
                               conversational=False)
    train, held = split_by_tree(groups, args.held_out, seed=1234)
    if args.max_groups:
        train = train.select(range(min(args.max_groups, len(train))))
    eval_sets = _eval_sets(held)
    encoder = str(minilm_path())
    runs = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        init = BertClsRewardModel.from_encoder(encoder, pooling=args.pooling).state_dict()
        for loss in LOSSES:
            model = BertClsRewardModel.from_encoder(encoder, pooling=args.pooling)
            model.load_state_dict(init)
            config = RewardConfig(
                output_dir=tempfile.mkdtemp(), ranked_loss=loss, num_train_epochs=args.epochs,
                per_device_train_batch_size=args.batch, per_device_eval_batch_size=16, learning_rate=args.lr,
                warmup_steps=10, max_length=args.max_length, bf16=False, report_to=[], save_strategy="no",
                logging_steps=1000, activation_checkpointing=False, seed=seed, disable_tqdm=True)
            trainer = RewardTrainer(model, args=config, train_dataset=train, eval_dataset=eval_sets)
            runs.append(_timed_run(trainer, loss, seed, "accuracy"))
    return {"data": "OASST1 en validation ranked groups, split by message_tree_id",
            "model": f"all-MiniLM-L6-v2 + BertClsReward head (pooling={args.pooling}), full fine-tune",
            "train_groups": len(train), "heldout_groups": len(held), "heldout_pairs": len(eval_sets["pairs"]),
            "held_out_fraction_of_trees": args.held_out, "epochs": args.epochs, "batch_groups": args.batch,
            "learning_rate": args.lr, "max_length": args.max_length, "runs": runs}


def _timed_run(trainer, loss: str, seed: int, accuracy_key: str) -> dict:
    """Train, then the held-out figures of one (loss, seed) run with its training wall-clock."""
    start = time.perf_counter()
    trainer.train()
    run = {"loss": loss, "seed": seed, "train_seconds": round(time.perf_counter() - start, 1),
           **_held_out_metrics(trainer, accuracy_key)}
    print(run, flush=True)
    return run


def run_dpo(args) -> dict:
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_ext.scripts.assets import smollm2_path
    from trl_ext import DPOConfig, DPOTrainer, load_preference_file

    data = load_preference_file(REPO_ROOT / "recipes" / "data" / "arithmetic_ranked.jsonl")
    train = data.filter(lambda s: s == "train", input_columns="split").remove_columns("split")
    held = data.filter(lambda s: s == "test", input_columns="split").remove_columns("split")
    train = train.select(range(min(args.max_groups or len(train), len(train))))
    held = held.select(range(min(args.eval_groups, len(held))))
    eval_sets = _eval_sets(held)
    path = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    runs = []
    for seed in args.seeds:
        for loss in LOSSES:
            torch.manual_seed(seed)  # same LoRA initialisation for both losses
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
            config = DPOConfig(
                output_dir=tempfile.mkdtemp(), ranked_loss=loss, num_train_epochs=args.epochs,
                per_device_train_batch_size=args.batch, per_device_eval_batch_size=8, learning_rate=args.lr,
                beta=0.1, max_length=128, bf16=False, report_to=[], save_strategy="no", logging_steps=1000,
                activation_checkpointing=False, seed=seed, disable_tqdm=True)
            trainer = DPOTrainer(model, args=config, train_dataset=train, eval_dataset=eval_sets,
                                 processing_class=tokenizer,
                                 peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                        task_type="CAUSAL_LM"))
            runs.append(_timed_run(trainer, loss, seed, "rewards/accuracies"))
    return {"data": "recipes/data/arithmetic_ranked.jsonl (K=4 ranked completions; train / test split)",
            "model": "SmolLM2-135M-Instruct (fp32) + LoRA r=16 all-linear, reference = adapter disabled",
            "train_groups": len(train), "heldout_groups": len(held), "heldout_pairs": len(eval_sets["pairs"]),
            "epochs": args.epochs, "batch_groups": args.batch, "learning_rate": args.lr, "beta": 0.1, "runs": runs}


def _summaries(runs: list[dict]) -> dict[str, dict]:
    keys = [k for k in runs[0] if k not in ("loss", "seed")]
    return {loss: {k: round(statistics.mean(r[k] for r in runs if r["loss"] == loss), 4) for k in keys}
            for loss in LOSSES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("rm", "dpo"), required=True)
    parser.add_argument("--seeds", default="0", help="Comma-separated seeds; results are averaged over them.")
    parser.add_argument("--epochs", type=float, default=None, help="Default: rm 2, dpo 1.")
    parser.add_argument("--batch", type=int, default=None, help="Groups per batch. Default: rm 8, dpo 2.")
    parser.add_argument("--lr", type=float, default=None, help="Default: rm 5e-5, dpo 1e-4.")
    parser.add_argument("--max_groups", type=int, default=None, help="Train on the first N groups (dpo default 48).")
    parser.add_argument("--eval_groups", type=int, default=40, help="dpo: held-out test groups.")
    parser.add_argument("--max_length", type=int, default=256, help="rm only.")
    parser.add_argument("--pooling", default="mean", choices=("cls", "mean"), help="rm only.")
    parser.add_argument("--held_out", type=float, default=0.2, help="rm: fraction of trees held out.")
    parser.add_argument("--out", default=str(RESULTS_CPU))
    args = parser.parse_args()
    rm = args.part == "rm"
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.epochs = args.epochs or (2 if rm else 1)
    args.batch = args.batch or (8 if rm else 2)
    args.lr = args.lr or (5e-5 if rm else 1e-4)
    if not rm and args.max_groups is None:
        args.max_groups = 48
    torch.set_num_threads(os.cpu_count() or 1)

    result = {**environment("python -m benchmarks.listwise " + " ".join(sys.argv[1:])),
              **(run_rm(args) if rm else run_dpo(args))}
    result["mean_over_seeds"] = _summaries(result["runs"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"listwise_{args.part}.json").write_text(json.dumps(result, indent=2) + "\n")

    metrics = [k for k in result["mean_over_seeds"][LOSSES[0]] if k != "train_seconds"]
    lines = ["| loss | " + " | ".join(metrics) + " | train s |", "|---" * (len(metrics) + 2) + "|"]
    for loss, values in result["mean_over_seeds"].items():
        lines.append(f"| {loss} | " + " | ".join(f"{values[k]:.3f}" for k in metrics)
                     + f" | {values['train_seconds']} |")
    table = "\n".join(lines)
    what = "reward model" if rm else "DPO"
    (out / f"listwise_{args.part}.md").write_text(
        f"# Bradley-Terry vs Plackett-Luce: {what}\n\n{result['data']}; {result['model']}.\n"
        f"{result['train_groups']} training groups, {result['heldout_groups']} held-out groups "
        f"({result['heldout_pairs']} pairs); {args.epochs} epoch(s) each, seeds {args.seeds} (means shown); "
        f"device {result['device']}, {result['torch_threads']} threads.\n\n{table}\n\n"
        f"Command: `{result['command']}`\n")
    bar_plot(out / f"listwise_{args.part}.png", f"Held-out ranking quality, {what}", metrics,
             {loss: [result["mean_over_seeds"][loss][k] for k in metrics] for loss in LOSSES}, "held-out value")
    print(table)


if __name__ == "__main__":
    main()
