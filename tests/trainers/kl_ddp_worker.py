"""Launched by tests/trainers/test_grpo_rloo.py and test_ppo_trainer.py under 2-process CPU DDP: a short adaptive-KL run of `trl_ext.<Trainer>`; each
rank writes the β it used after every optimizer step (and checksums of its trained weights) to
`<output_dir>/beta_rank<k>.json`. Usage: kl_ddp_worker.py MODEL_DIR OUT_DIR grpo|rloo|ppo[-full]
("-full": kl_estimator="full")."""

import json
import sys
from pathlib import Path

from datasets import Dataset
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for tests.helpers

import trl_ext  # noqa: E402
from tests.helpers import reward_a  # noqa: E402


class RecordBeta(TrainerCallback):
    def __init__(self, trainer):
        self.trainer, self.betas = trainer, []

    def on_step_end(self, args, state, control, **kwargs):
        self.betas.append(self.trainer.beta)


if __name__ == "__main__":
    model_dir, out_dir = sys.argv[1], Path(sys.argv[2])
    kind, _, estimator = sys.argv[3].partition("-")  # e.g. "grpo-full": kl_estimator="full"
    config_cls, trainer_cls = {"grpo": (trl_ext.GRPOConfig, trl_ext.GRPOTrainer),
                               "rloo": (trl_ext.RLOOConfig, trl_ext.RLOOTrainer),
                               "ppo": (trl_ext.PPOConfig, trl_ext.PPOTrainer)}[kind]
    extra = {}
    if kind == "ppo":  # shared-base critic: a second LoRA adapter, called outside the DDP wrapper
        from peft import LoraConfig

        extra["peft_config"] = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    args = config_cls(
        output_dir=str(out_dir), per_device_train_batch_size=4, num_generations=4, max_completion_length=6,
        max_steps=3, learning_rate=0.05, beta=0.1, kl_control="adaptive", kl_target=0.01, kl_horizon=10,
        bf16=False, report_to=[], save_strategy="no", logging_steps=1, seed=0, disable_tqdm=True,
        kl_estimator=estimator or "sample", **({"num_iterations": 1} if kind == "ppo" else {}),
    )
    prompts = Dataset.from_list([{"prompt": f"say {w} please"} for w in ["abc", "dog", "cat", "zoo"] * 6])
    trainer = trainer_cls(model_dir, reward_funcs=reward_a, args=args, train_dataset=prompts, **extra)
    recorder = RecordBeta(trainer)
    trainer.add_callback(recorder)
    trainer.train()
    rank = trainer.accelerator.process_index
    kls = [row["kl_ctl/kl"] for row in trainer.state.log_history if "kl_ctl/kl" in row]
    # trained weights after the run: identical on both ranks iff gradients (policy, critic adapter, head) were synced
    trained = {n: p.detach().double().sum().item() for n, p in trainer.accelerator.unwrap_model(
        trainer.model).named_parameters() if p.requires_grad}
    (out_dir / f"beta_rank{rank}.json").write_text(json.dumps(
        {"betas": recorder.betas, "kls": kls, "world_size": trainer.accelerator.num_processes, "trained": trained}))
