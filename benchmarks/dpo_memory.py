"""CPU peak memory (RSS) of DPO with a QLoRA (4-bit NF4) vs bf16 vs fp32 LoRA policy, SmolLM2-135M-Instruct.

    python benchmarks/dpo_memory.py

Each variant runs in its own process (peak RSS is per process): load the policy with `trl_ext.load_policy`,
run a few DPO steps on the bundled arithmetic data, and report `ru_maxrss` plus the step time.
Writes benchmarks/results/cpu/dpo_memory.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `benchmarks.common`

VARIANTS = {"qlora_4bit": ["--load_in_4bit", "true"], "lora_bf16": ["--dtype", "bfloat16"],
            "lora_fp32": ["--dtype", "float32"]}


def child(variant: str, steps: int) -> None:
    import torch
    from transformers import AutoTokenizer
    from trl import ModelConfig

    from benchmarks.common import REPO_ROOT
    from model_assets import smollm2_path
    from trl_ext import DPOConfig, DPOTrainer, is_4bit, load_policy, load_preference_file

    path = smollm2_path()
    model_args = ModelConfig(model_name_or_path=path, use_peft=True, lora_r=16, lora_alpha=32,
                             load_in_4bit=variant == "qlora_4bit",
                             dtype={"lora_bf16": "bfloat16", "lora_fp32": "float32"}.get(variant, "bfloat16"))
    model, peft_config = load_policy(model_args, activation_checkpointing=False)
    data = load_preference_file(REPO_ROOT / "recipes" / "data" / "arithmetic_ranked.jsonl").select(range(4 * steps))
    args = DPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=4, max_steps=steps, bf16=False,
                     report_to=[], save_strategy="no", activation_checkpointing=False, disable_tqdm=True, max_length=128)
    trainer = DPOTrainer(model, args=args, train_dataset=data.remove_columns("split"),
                         processing_class=AutoTokenizer.from_pretrained(path), peft_config=peft_config)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    print(json.dumps({"variant": variant, "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "steps": steps, "seconds_per_step": round(seconds / steps, 2), "base_is_4bit": is_4bit(trainer.model),
                      "param_dtype": str(next(p for n, p in trainer.model.named_parameters() if "lora" not in n).dtype),
                      "torch_threads": torch.get_num_threads()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--child", choices=list(VARIANTS))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "cpu"))
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps)
        return
    from model_assets import smollm2_path

    smollm2_path()  # dequantise/cache once, outside the measured processes
    results = []
    for variant in VARIANTS:
        proc = subprocess.run([sys.executable, __file__, "--child", variant, "--steps", str(args.steps)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{variant} failed:\n{proc.stderr[-3000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    fp32 = next(r for r in results if r["variant"] == "lora_fp32")["peak_rss_mib"]
    for r in results:
        r["rss_vs_fp32_lora"] = round(r["peak_rss_mib"] / fp32, 3)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"device": "cpu", "model": "SmolLM2-135M-Instruct (134.5M params) + LoRA r=16 all-linear",
               "note": "peak RSS of the whole process (Python, torch, tokenizer, data and model)",
               "command": "python benchmarks/dpo_memory.py", "runs": results}
    (out / "dpo_memory.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["| variant | peak RSS MiB | vs fp32 LoRA | s/step |", "|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['peak_rss_mib']} | {r['rss_vs_fp32_lora']} | {r['seconds_per_step']} |" for r in results]
    (out / "dpo_memory.md").write_text("# DPO peak memory on CPU\n\n" + summary["model"] + ", batch 4 groups, "
                                       f"{args.steps} steps.\n\n" + "\n".join(lines) + f"\n\nCommand: `{summary['command']}`\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
