"""Run by tests/trainers/test_host_work.py, under 2-process CPU DDP and in the test's own single process: a
grouped RewardTrainer run with learning rate 0 on ranked groups of different sizes (2 logged training steps, then an
evaluation), writing the logged `rm/*` metrics of rank 0 to `<out_dir>/ranking_metrics_<world size>.json`.
Usage: ranking_ddp_worker.py MODEL_DIR OUT_DIR"""

import json
import os
import sys
from pathlib import Path

from datasets import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

import trl_ext  # noqa: E402

#: 8 groups of K = 2..5 with ties: each process sees groups of other sizes than the other process.
GROUPS = [
    {"prompt": "2+2=", "completions": [" 4", " 5", " 22", " four", " 3"], "ranks": [0, 2, 3, 1, 2]},
    {"prompt": "3+1=", "completions": [" 4", " 31"], "ranks": [0, 1]},
    {"prompt": "1+1=", "completions": [" 2", " 11", " two"], "ranks": [0, 1, 0]},
    {"prompt": "5-2=", "completions": [" 3", " 7", " 2", " three"], "ranks": [0, 3, 2, 1]},
    {"prompt": "2*3=", "completions": [" 6", " 5"], "ranks": [0, 1]},
    {"prompt": "9/3=", "completions": [" 3", " 6", " 27", " 1", " 0"], "ranks": [0, 1, 2, 2, 3]},
    {"prompt": "4+4=", "completions": [" 8", " 44", " 16"], "ranks": [0, 2, 1]},
    {"prompt": "7-7=", "completions": [" 0", " 14", " 7", " zero"], "ranks": [0, 2, 1, 0]},
]

def run(model_dir: str, out_dir: Path) -> dict:
    """Train 2 logged steps (4 groups each) and evaluate; rank 0 writes and every rank returns the `rm/*` metrics."""
    out_dir.mkdir(parents=True, exist_ok=True)
    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch; 4 groups per step in both runs
    args = trl_ext.RewardConfig(
        output_dir=str(out_dir), bf16=False, report_to=[], save_strategy="no", disable_tqdm=True, seed=0,
        per_device_train_batch_size=4 // world, per_device_eval_batch_size=2, max_steps=2, logging_steps=2,
        learning_rate=0.0, train_sampling_strategy="sequential", activation_checkpointing=False)
    data = Dataset.from_list(GROUPS)
    trainer = trl_ext.RewardTrainer(model_dir, args=args, train_dataset=data, eval_dataset=data)
    trainer.train()
    evaluation = trainer.evaluate()
    train_row = next(row for row in trainer.state.log_history if "rm/kendall_tau" in row)
    result = {"world_size": trainer.accelerator.num_processes,
              "train": {k: v for k, v in train_row.items() if k.startswith("rm/")},
              "eval": {k: v for k, v in evaluation.items() if k.startswith("eval_rm/")}}
    if trainer.accelerator.is_main_process:
        (out_dir / f"ranking_metrics_{result['world_size']}.json").write_text(json.dumps(result))
    return result


if __name__ == "__main__":
    run(sys.argv[1], Path(sys.argv[2]))
