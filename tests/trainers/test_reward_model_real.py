"""Integration tests on the real MiniLM encoder, the real shared data and the recipe (each a few steps)."""

import subprocess

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from tests.helpers import REPO_ROOT
from trl_ext import BertClsRewardModel, RewardConfig, RewardTrainer, load_hh_rlhf

pytestmark = pytest.mark.integration


def test_minilm_cls_rm_learns_on_real_hh_pairs(tmp_path, minilm_dir, shared_data):
    data, _ = load_hh_rlhf([shared_data / "hh-rlhf" / f"{n}_test.jsonl.gz" for n in ("helpful-base", "harmless-base")])
    data = data.shuffle(seed=0).select(range(32))
    args = RewardConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, per_device_eval_batch_size=32,
                        num_train_epochs=3, learning_rate=1e-4, max_length=64, bf16=False, report_to=[],
                        save_strategy="no", activation_checkpointing=False, seed=0, disable_tqdm=True)
    trainer = RewardTrainer(minilm_dir, args=args, train_dataset=data, eval_dataset=data)
    assert isinstance(trainer.model, BertClsRewardModel) and trainer.reward_head == "cls"
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    assert after < before - 0.05, (before, after)


def test_same_trainer_accepts_trl_format_pairwise_data(tmp_path, minilm_dir):
    """TRL's documented preference formats, unchanged: implicit prompt and conversational explicit prompt."""
    from datasets import Dataset

    implicit = Dataset.from_list([{"chosen": "Q: capital of France? A: Paris.", "rejected": "Q: capital of France? A: Rome."}] * 4)
    conversational = Dataset.from_list([{
        "prompt": [{"role": "user", "content": "What color is the sky?"}],
        "chosen": [{"role": "assistant", "content": "It is blue."}],
        "rejected": [{"role": "assistant", "content": "It is green."}],
    }] * 4)
    for data in (implicit, conversational):
        args = RewardConfig(output_dir=str(tmp_path), max_steps=1, bf16=False, report_to=[], save_strategy="no",
                            activation_checkpointing=False, disable_tqdm=True)
        trainer = RewardTrainer(minilm_dir, args=args, train_dataset=data)
        row = trainer.train_dataset[0]
        sep = row["chosen_ids"].index(trainer.processing_class.sep_token_id)
        assert row["chosen_token_type_ids"][sep + 1] == 1  # the response is the second segment
        assert trainer.train().training_loss > 0


def test_reward_model_recipe_short_run(tmp_path, minilm_dir):
    out = tmp_path / "rm"
    cmd = ["accelerate", "launch", "--num_processes", "1", "--cpu", str(REPO_ROOT / "recipes" / "reward_model.py"),
           "--max_steps", "3", "--max_train_samples", "24", "--max_eval_samples", "8", "--output_dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "held-out accuracy" in proc.stdout and "held-out rm/kendall_tau" in proc.stdout
    reloaded = AutoModelForSequenceClassification.from_pretrained(out)
    assert isinstance(reloaded, BertClsRewardModel)
    assert reloaded(input_ids=torch.tensor([[101, 2054, 102, 2003, 102]])).logits.shape == (1, 1)
