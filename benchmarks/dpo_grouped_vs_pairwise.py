"""CPU benchmark: grouped ranked DPO vs TRL's DPOTrainer on the same groups expanded to pairs.

    python benchmarks/dpo_grouped_vs_pairwise.py                  # SmolLM2-135M-Instruct + LoRA, bundled data
    python benchmarks/dpo_grouped_vs_pairwise.py --max_groups 24  # quicker

One epoch each over the same ranked groups (bundled arithmetic data, K=4), same LoRA initialisation:
* `trl_ext grouped`: each completion through the policy and the reference once, loss averaged per group.
* `trl pairwise`: plain `trl.DPOTrainer` on the C(K,2) pairs per group (2 policy + 2 reference rows per pair).
Rows through the model are counted with a forward hook (policy and reference passes share the base model: the
reference is the adapter-disabled base). Writes JSON + Markdown to benchmarks/results/cpu/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `benchmarks.common`

import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from peft import LoraConfig  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from benchmarks.common import REPO_ROOT  # noqa: E402
from model_assets import smollm2_path  # noqa: E402
from trl_ext import DPOConfig, DPOTrainer, load_preference_file, ranked_to_pairs  # noqa: E402


def _config(cls, batch: int, max_length: int):
    return cls(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=batch, num_train_epochs=1,
               learning_rate=1e-4, beta=0.1, max_length=max_length, bf16=False, report_to=[], save_strategy="no",
               logging_steps=1000, activation_checkpointing=False, seed=0, disable_tqdm=True)


def _run(name: str, trainer, groups: int) -> dict:
    rows = {"n": 0}
    base = trainer.model.get_base_model()
    hook = base.register_forward_hook(lambda m, a, kw, out: rows.__setitem__("n", rows["n"] + kw["input_ids"].shape[0]),
                                      with_kwargs=True)
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    hook.remove()
    return {"name": name, "epoch_seconds": round(seconds, 2), "rows_forwarded": rows["n"], "groups": groups,
            "train_rows": len(trainer.train_dataset), "train_loss": round(result.training_loss, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_groups", type=int, default=48)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--group_batch", type=int, default=4, help="Groups per grouped batch.")
    parser.add_argument("--pair_batch", type=int, default=4, help="Pairs per pairwise batch.")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "cpu"))
    args = parser.parse_args()

    data = load_preference_file(REPO_ROOT / "recipes" / "data" / "arithmetic_ranked.jsonl")
    data = data.filter(lambda s: s == "train", input_columns="split").remove_columns("split")
    groups = data.select(range(min(args.max_groups, len(data))))
    pairs, stats = ranked_to_pairs(groups)
    pairs = pairs.select_columns(["prompt", "chosen", "rejected"])
    path = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")

    results = []
    for name, cls, config_cls, dataset, batch in (
        ("trl_ext grouped", DPOTrainer, DPOConfig, groups, args.group_batch),
        ("trl pairwise", trl.DPOTrainer, trl.DPOConfig, pairs, args.pair_batch),
    ):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        trainer = cls(model, args=_config(config_cls, batch, args.max_length), train_dataset=dataset,
                      processing_class=tokenizer, peft_config=lora)
        results.append(_run(name, trainer, len(groups)))
        print(results[-1], flush=True)

    grouped, pairwise = results
    pairwise["forward_ratio_vs_grouped"] = round(pairwise["rows_forwarded"] / grouped["rows_forwarded"], 3)
    pairwise["speedup_of_grouped"] = round(pairwise["epoch_seconds"] / grouped["epoch_seconds"], 3)
    pairwise["speedup_over_forward_ratio"] = round(pairwise["speedup_of_grouped"] / pairwise["forward_ratio_vs_grouped"], 3)
    summary = {
        "device": "cpu", "cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
        "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
        "model": "SmolLM2-135M-Instruct (real, fp32) + LoRA r=16 all-linear",
        "data": "recipes/data/arithmetic_ranked.jsonl train groups", "groups": len(groups), "pairs": stats.pairs,
        "completions": sum(len(c) for c in groups["completions"]), "max_length": args.max_length,
        "command": f"python benchmarks/dpo_grouped_vs_pairwise.py --max_groups {args.max_groups} --group_batch "
                   f"{args.group_batch} --pair_batch {args.pair_batch} --max_length {args.max_length}",
        "group_batch": args.group_batch, "pair_batch": args.pair_batch, "runs": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "dpo_grouped_vs_pairwise.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = "\n".join([
        "| run | rows forwarded (policy + reference) | epoch s | forward ratio | speed-up of grouped | speed-up / forward ratio |",
        "|---|---|---|---|---|---|",
        f"| trl_ext grouped | {grouped['rows_forwarded']} | {grouped['epoch_seconds']} | 1.0 | 1.0 | - |",
        f"| trl pairwise | {pairwise['rows_forwarded']} | {pairwise['epoch_seconds']} | "
        f"{pairwise['forward_ratio_vs_grouped']} | {pairwise['speedup_of_grouped']} | {pairwise['speedup_over_forward_ratio']} |",
    ])
    (out / "dpo_grouped_vs_pairwise.md").write_text(
        f"# Grouped vs pairwise DPO (CPU, {summary['cpu_threads']} threads)\n\n{len(groups)} ranked groups "
        f"({summary['completions']} completions, {stats.pairs} pairs), SmolLM2-135M-Instruct + LoRA, 1 epoch each; "
        f"batches of {args.group_batch} groups ({args.group_batch * 6} pairs) vs {args.pair_batch} pairs.\n\n"
        f"{table}\n\nCommand: `{summary['command']}`\n")
    print(table)


if __name__ == "__main__":
    main()
