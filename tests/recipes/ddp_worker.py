"""Launched by tests/recipes/test_dpo_recipe.py under `accelerate launch --num_processes 2 --cpu`: runs the DPO recipe's
`main` and writes this rank's trained LoRA weights to `<output_dir>/rank<k>.pt` so the test can compare ranks."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))  # the recipe is a script, not a module

from dpo_lora import DEFAULT_CONFIG, DPOScriptArguments, main  # noqa: E402
from trl import ModelConfig  # noqa: E402

from trl_ext import DPOConfig  # noqa: E402
from trl_ext.scripts.utils import parse  # noqa: E402

if __name__ == "__main__":
    script_args, training_args, model_args = parse((DPOScriptArguments, DPOConfig, ModelConfig), None, DEFAULT_CONFIG)
    trainer = main(script_args, training_args, model_args)["trainer"]
    model = trainer.accelerator.unwrap_model(trainer.model)
    lora = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if "lora_" in n}
    rank = trainer.accelerator.process_index
    torch.save({"lora": lora, "world_size": trainer.accelerator.num_processes, "step": trainer.state.global_step},
               Path(training_args.output_dir) / f"rank{rank}.pt")
