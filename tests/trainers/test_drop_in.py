"""Drop-in: every trainer works with `args=None` as TRL's do, and code that rebinds `trl.<Trainer>` to ours (as
patching libraries and trainer-swapping test harnesses do) keeps working."""

from __future__ import annotations

import pytest
import trl
from datasets import Dataset

import trl_ext
from tests.helpers import reward_a


@pytest.fixture
def cpu_defaults(monkeypatch):
    """TRL's configs default to bf16, which a CPU refuses unless `use_cpu` (TRL's own test suite does the same)."""
    from trl.trainer.base_config import _BaseConfig

    original = _BaseConfig.__post_init__

    def post_init(self):
        self.use_cpu = True
        original(self)

    monkeypatch.setattr(_BaseConfig, "__post_init__", post_init)


PAIRS = Dataset.from_list([{"prompt": "2+2=", "chosen": " 4", "rejected": " 5"}] * 2)
PROMPTS = Dataset.from_list([{"prompt": "say abc"}] * 8)  # one rollout of PPO's defaults (8 x 1)


@pytest.mark.parametrize("name,suffix,model_fixture,data", [
    ("DPOTrainer", "DPO", "tiny_llama_causal_dir", PAIRS), ("RewardTrainer", "Reward", "tiny_llama_seqcls_dir", PAIRS),
    ("GRPOTrainer", "GRPO", "tiny_llama_causal_dir", PROMPTS), ("RLOOTrainer", "RLOO", "tiny_llama_causal_dir", PROMPTS),
    ("PPOTrainer", "PPO", "tiny_llama_causal_dir", PROMPTS),
])
def test_args_none_builds_our_config_like_trl(cpu_defaults, request, tmp_path, monkeypatch, name, suffix,
                                              model_fixture, data):
    monkeypatch.chdir(tmp_path)
    model = request.getfixturevalue(model_fixture)
    kwargs = {"reward_funcs": reward_a} if "prompt" in data.column_names and "chosen" not in data.column_names else {}
    trainer = getattr(trl_ext, name)(model=model, train_dataset=data, **kwargs)
    config_cls = getattr(trl_ext, name.replace("Trainer", "Config"))
    assert isinstance(trainer.args, config_cls)
    assert trainer.args.output_dir.endswith(f"{model.rstrip('/').split('/')[-1]}-{suffix}")
    if name == "DPOTrainer":  # TRL's own test_tag_added
        assert {"dpo", "trl"} <= set(trainer.model.model_tags)


def test_rebinding_trl_dpo_trainer_to_ours_keeps_working(monkeypatch, tiny_llama_causal_dir, tmp_path):
    monkeypatch.setattr(trl, "DPOTrainer", trl_ext.DPOTrainer)
    monkeypatch.setattr(trl, "DPOConfig", trl_ext.DPOConfig)
    args = trl.DPOConfig(output_dir=str(tmp_path), bf16=False, report_to=[], max_steps=1)
    trainer = trl.DPOTrainer(tiny_llama_causal_dir, args=args, train_dataset=PAIRS)
    assert type(trainer) is trl_ext.DPOTrainer and trainer.train().training_loss > 0


def test_positional_calls_bind_as_trls_and_a_given_collator_is_kept(tiny_llama_causal_dir, tiny_llama_seqcls_dir,
                                                                    tmp_path):
    """TRL's parameter order: arguments passed by position land where TRL's would, and a `data_collator` passed by
    position is used as given (ours replaces TRL's default collator only)."""
    dpo_args = trl_ext.DPOConfig(output_dir=str(tmp_path / "dpo"), bf16=False, report_to=[])
    dpo = trl_ext.DPOTrainer(tiny_llama_causal_dir, None, dpo_args, None, PAIRS)
    assert dpo.args is dpo_args and type(dpo.data_collator) is trl_ext.DPODataCollator
    assert len(dpo.train_dataset) == len(PAIRS)

    def collator(examples):
        return examples

    reward_args = trl.RewardConfig(output_dir=str(tmp_path / "rm"), bf16=False, report_to=[])  # TRL's own config
    reward = trl_ext.RewardTrainer(tiny_llama_seqcls_dir, reward_args, collator, PAIRS)
    assert isinstance(reward.args, trl_ext.RewardConfig)  # upgraded, with trl_ext's defaults for our fields
    assert reward.data_collator is collator
    assert len(reward.train_dataset) == len(PAIRS)
