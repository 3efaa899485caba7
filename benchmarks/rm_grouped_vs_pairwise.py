"""CPU benchmark: grouped ranked reward-model training vs TRL's RewardTrainer on the same groups expanded to pairs.

    python benchmarks/rm_grouped_vs_pairwise.py                  # OASST validation groups, real MiniLM BERT-CLS
    python benchmarks/rm_grouped_vs_pairwise.py --max_groups 40  # quicker

One epoch each, same model initialisation, same groups:
* `trl_ext grouped`: each completion forwarded once, loss averaged per group (InstructGPT).
* `trl_ext pairwise`: our trainer on the pairs from `ranked_to_pairs` (2 forwards per pair, same tokenization).
* `trl pairwise`: plain `trl.RewardTrainer` on the same pairs. TRL needs an EOS token, which BERT lacks, so it runs
  with `eos_token="[SEP]"` and encodes prompt+response as one sequence; pairs over `max_length` are dropped by TRL.
Forwards are counted with a forward hook (rows through the model). Writes JSON + Markdown to benchmarks/results/cpu/.
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

from benchmarks.common import REPO_ROOT, shared_data_dir  # noqa: E402
from model_assets import minilm_path  # noqa: E402
from trl_ext import BertClsRewardModel, RewardConfig, RewardTrainer, load_oasst_ranked, ranked_to_pairs  # noqa: E402


def _config(cls, out: str, batch: int, max_length: int, **extra):
    return cls(output_dir=out, per_device_train_batch_size=batch, num_train_epochs=1, learning_rate=5e-5,
               max_length=max_length, bf16=False, report_to=[], save_strategy="no", logging_steps=1000,
               activation_checkpointing=False, seed=0, disable_tqdm=True, **extra)


def _run(name: str, trainer, n_prompts: int) -> dict:
    rows = {"n": 0}
    hook = trainer.model.register_forward_hook(lambda m, a, kw, out: rows.__setitem__("n", rows["n"] + out.logits.shape[0]),
                                               with_kwargs=True)
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    hook.remove()
    return {"name": name, "epoch_seconds": round(seconds, 2), "forwards": rows["n"], "prompts": n_prompts,
            "train_rows": len(trainer.train_dataset), "train_loss": round(result.training_loss, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_groups", type=int, default=None, help="Use the first N OASST groups.")
    parser.add_argument("--max_length", type=int, default=256)
    parser.add_argument("--group_batch", type=int, default=8, help="Groups per grouped batch.")
    parser.add_argument("--pair_batch", type=int, default=11, help="Pairs per pairwise batch (≈ same rows/forward).")
    parser.add_argument("--skip_trl", action="store_true", help="Skip the plain-TRL baseline.")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "cpu"))
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    groups = load_oasst_ranked(shared_data_dir() / "oasst1" / "oasst1_en_validation.messages.jsonl", conversational=False)
    if args.max_groups:
        groups = groups.select(range(min(args.max_groups, len(groups))))
    pairs, stats = ranked_to_pairs(groups)
    encoder = str(minilm_path())
    torch.manual_seed(0)
    init = BertClsRewardModel.from_encoder(encoder).state_dict()

    def fresh_model():
        model = BertClsRewardModel.from_encoder(encoder)
        model.load_state_dict(init)
        return model

    results, tmp = [], tempfile.mkdtemp()
    trainer = RewardTrainer(fresh_model(), args=_config(RewardConfig, tmp, args.group_batch, args.max_length),
                            train_dataset=groups)
    results.append(_run("trl_ext grouped", trainer, len(groups)))
    trainer = RewardTrainer(fresh_model(), args=_config(RewardConfig, tmp, args.pair_batch, args.max_length),
                            train_dataset=pairs.select_columns(["prompt", "chosen", "rejected"]))
    results.append(_run("trl_ext pairwise", trainer, len(groups)))
    if not args.skip_trl:
        trainer = trl.RewardTrainer(
            fresh_model(), args=_config(trl.RewardConfig, tmp, args.pair_batch, args.max_length, eos_token="[SEP]"),
            train_dataset=pairs.select_columns(["prompt", "chosen", "rejected"]),
        )
        result = _run("trl pairwise", trainer, len(groups))
        result["pairs_dropped_by_trl"] = len(pairs) - result["train_rows"]
        results.append(result)

    grouped = results[0]
    summary = {
        "device": "cpu", "cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
        "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
        "model": "all-MiniLM-L6-v2 + BertClsReward head (real weights)", "data": "OASST1 en validation ranked groups",
        "groups": len(groups), "pairs": stats.pairs, "completions": sum(len(c) for c in groups["completions"]),
        "max_length": args.max_length, "command": "python benchmarks/rm_grouped_vs_pairwise.py "
        + (f"--max_groups {args.max_groups}" if args.max_groups else ""), "runs": results,
    }
    for run in results[1:]:
        run["forward_ratio_vs_grouped"] = round(run["forwards"] / grouped["forwards"], 3)
        run["speedup_of_grouped"] = round(run["epoch_seconds"] / grouped["epoch_seconds"], 3)
        run["speedup_over_forward_ratio"] = round(run["speedup_of_grouped"] / run["forward_ratio_vs_grouped"], 3)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rm_grouped_vs_pairwise.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["| run | forwards | epoch s | forward ratio | speed-up of grouped | speed-up / forward ratio |",
             "|---|---|---|---|---|---|"]
    for run in results:
        lines.append(f"| {run['name']} | {run['forwards']} | {run['epoch_seconds']} | "
                     f"{run.get('forward_ratio_vs_grouped', 1.0)} | {run.get('speedup_of_grouped', 1.0)} | "
                     f"{run.get('speedup_over_forward_ratio', '-')} |")
    table = "\n".join(lines)
    (out / "rm_grouped_vs_pairwise.md").write_text(
        f"# Grouped vs pairwise reward-model training (CPU, {summary['cpu_threads']} threads)\n\n"
        f"{summary['groups']} OASST groups, {summary['completions']} completions, {summary['pairs']} pairs, "
        f"MiniLM BERT-CLS, max_length {args.max_length}, 1 epoch each.\n\n{table}\n\nCommand: `{summary['command']}`\n")
    print(table)


if __name__ == "__main__":
    main()
