"""Launched by tests/trainers/test_nothing_silent.py under 2-process CPU DDP: both ranks build a grouped RewardTrainer
(last-token head) on the same ranked JSON file, loaded with `datasets` (so map results are cached on disk, as for any
file or hub data set). Every call of the per-row functions trl_ext's own maps run (validation, tokenisation) appends
`call <rank> <time>` to `<out_dir>/events.txt`, and entering the ranked preparation appends `enter <rank> <time>`
(CLOCK_MONOTONIC nanoseconds, one clock for both processes); each rank writes its prepared training set to
`<out_dir>/prepared_rank<k>.json`.

So that the outcome does not depend on which process happens to get there first, the two processes meet on a FIFO
(`<out_dir>/meet`, made by the test): rank 0 opens it in its first validation call, inside the first map; rank 1 opens
it when it enters `_prepare_dataset`, before any map. Without a main-process-first guard, rank 1 then runs the same map
at the same time (before rank 0 could cache anything) and records calls; with the guard it waits for rank 0 and reads
rank 0's cached results. Usage: prepare_ddp_worker.py MODEL_DIR DATA_FILE OUT_DIR"""

import json
import os
import sys
import time
from pathlib import Path

from datasets import load_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

import trl_ext  # noqa: E402
from trl_ext.trainer import ranked_data, reward_trainer  # noqa: E402

_validate, _encode = ranked_data.validate_ranked_example, reward_trainer.encode_for_head


def _meet() -> None:
    os.close(os.open(os.path.join(os.environ["PREPARE_CALLS_DIR"], "meet"),
                     os.O_RDONLY if os.environ["RANK"] == "0" else os.O_WRONLY))  # blocks until the other side opens
    os.environ["PREPARE_MET"] = "1"


def _event(kind: str) -> None:
    with open(os.path.join(os.environ["PREPARE_CALLS_DIR"], "events.txt"), "a") as handle:
        handle.write(f"{kind} {os.environ['RANK']} {time.monotonic_ns()}\n")


def _record() -> None:
    # state lives in os.environ and files, read at call time: the functions (and so the fingerprints of the maps that
    # use them) stay the same in every process
    if os.environ["RANK"] == "0" and "PREPARE_MET" not in os.environ:
        _meet()
    _event("call")


def counted_validate(*args, **kwargs):
    _record()
    return _validate(*args, **kwargs)


def counted_encode(*args, **kwargs):
    _record()
    return _encode(*args, **kwargs)


_prepare, _prepare_ranked = trl_ext.RewardTrainer._prepare_dataset, trl_ext.RewardTrainer._prepare_ranked


def prepare_ranked_recorded(self, *args, **kwargs):
    _event("enter")
    return _prepare_ranked(self, *args, **kwargs)


def prepare_after_meeting(self, *args, **kwargs):
    if os.environ["RANK"] != "0" and "PREPARE_MET" not in os.environ:
        _meet()
    return _prepare(self, *args, **kwargs)


ranked_data.validate_ranked_example = counted_validate
reward_trainer.encode_for_head = counted_encode
trl_ext.RewardTrainer._prepare_dataset = prepare_after_meeting
trl_ext.RewardTrainer._prepare_ranked = prepare_ranked_recorded

if __name__ == "__main__":
    model_dir, data_file, out_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    os.environ["PREPARE_CALLS_DIR"] = str(out_dir)
    data = load_dataset("json", data_files=data_file, split="train", cache_dir=str(out_dir / "cache"))
    args = trl_ext.RewardConfig(output_dir=str(out_dir / "run"), bf16=False, report_to=[], max_length=64,
                                per_device_train_batch_size=2, save_strategy="no")
    trainer = trl_ext.RewardTrainer(model_dir, args=args, train_dataset=data)
    rank = trainer.accelerator.process_index
    (out_dir / f"prepared_rank{rank}.json").write_text(json.dumps({
        "world_size": trainer.accelerator.num_processes, "rows": trainer.train_dataset.to_list(),
        "stats": dict(trainer.ranking_stats["train"])}))
