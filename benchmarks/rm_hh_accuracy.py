"""Held-out accuracy of the MiniLM BERT-CLS reward model on Anthropic HH-RLHF (helpful-base + harmless-base).

    python benchmarks/rm_hh_accuracy.py                 # full fine-tune and frozen-encoder variant, 1 epoch each

Uses the real shared HH files (../shared/data/hh-rlhf), holds out 10 % (seed 42) for evaluation, trains 1 epoch and
reports held-out accuracy, AUC and wall-clock. Writes benchmarks/results/cpu/rm_hh_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `benchmarks.common`

import torch  # noqa: E402

from benchmarks.common import REPO_ROOT, shared_data_dir  # noqa: E402
from model_assets import minilm_path  # noqa: E402
from trl_ext import RewardConfig, RewardTrainer, load_hh_rlhf  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--variants", default="full,frozen")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "cpu"))
    args = parser.parse_args()

    data, hh_stats = load_hh_rlhf([shared_data_dir() / "hh-rlhf" / f"{n}_test.jsonl.gz"
                                   for n in ("helpful-base", "harmless-base")])
    splits = data.train_test_split(test_size=0.1, seed=42)
    results = {"data": "HH-RLHF helpful-base + harmless-base test files", "hh_loader_stats": hh_stats,
               "train_pairs": len(splits["train"]), "heldout_pairs": len(splits["test"]), "max_length": args.max_length,
               "model": "all-MiniLM-L6-v2 (real) + BertClsReward head", "device": "cpu",
               "cpu_threads": torch.get_num_threads(), "command": "python benchmarks/rm_hh_accuracy.py", "runs": []}
    for variant in args.variants.split(","):
        frozen = variant == "frozen"
        config = RewardConfig(
            output_dir=tempfile.mkdtemp(), num_train_epochs=1, per_device_train_batch_size=args.batch,
            per_device_eval_batch_size=64, learning_rate=1e-3 if frozen else 5e-5, warmup_steps=20,
            max_length=args.max_length, freeze_encoder=frozen, bf16=False, report_to=[], save_strategy="no",
            logging_steps=50, activation_checkpointing=False, seed=42, disable_tqdm=True,
        )
        trainer = RewardTrainer(str(minilm_path()), args=config, train_dataset=splits["train"],
                                eval_dataset=splits["test"])
        before = trainer.evaluate()
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
        after = trainer.evaluate()
        run = {"variant": variant, "learning_rate": config.learning_rate, "train_seconds": round(train_seconds, 1),
               "accuracy_before": round(before["eval_accuracy"], 4), "accuracy_after": round(after["eval_accuracy"], 4),
               "auc_before": round(before["eval_rm/auc"], 4), "auc_after": round(after["eval_rm/auc"], 4),
               "truncated_responses": trainer.ranking_stats["train"]["truncated_responses"]}
        results["runs"].append(run)
        print(run, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rm_hh_accuracy.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
