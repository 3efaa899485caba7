"""Options and numbers that used to pass silently: each is now refused by name, warned about, or kept finite."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from trl_ext import DPOConfig, GRPOConfig, PPOConfig, RewardConfig, RLOOConfig
from trl_ext import _trl_compat as compat
from trl_ext.ppo_math import policy_loss

COMMON = dict(output_dir="unused", bf16=False, report_to=[])


# --------------------------------------------------------------------------------------------------------------------
# Ranked-data options
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config_cls", [RewardConfig, DPOConfig])
@pytest.mark.parametrize("field,extra", [("ranked_loss_top_k", {"ranked_loss": "plackett_luce"}), ("ndcg_k", {})])
def test_true_is_not_a_positive_integer(config_cls, field, extra):
    # bool is an int subclass: True passed the old check and meant k=1
    with pytest.raises(ValueError, match=rf"{config_cls.__name__}.{field} must be a positive integer or None, got "
                                         r"True"):
        config_cls(**COMMON, **extra, **{field: True})


@pytest.mark.parametrize("strategy", ["best_vs_rest", "adjacent"])
def test_a_pair_strategy_with_the_listwise_loss_is_refused(strategy):
    with pytest.raises(ValueError, match=rf"pair_strategy='{strategy}' has no effect with ranked_loss='plackett_luce'"):
        RewardConfig(**COMMON, ranked_loss="plackett_luce", pair_strategy=strategy)
    RewardConfig(**COMMON, ranked_loss="plackett_luce")  # the default strategy is fine


# --------------------------------------------------------------------------------------------------------------------
# KL control
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config_cls", [GRPOConfig, RLOOConfig, PPOConfig])
@pytest.mark.parametrize("control", ["fixed", "adaptive"])
@pytest.mark.parametrize("field,value", [("kl_target", math.inf), ("kl_horizon", math.inf), ("kl_target", math.nan),
                                         ("kl_horizon", -math.inf)])
def test_a_non_finite_kl_target_or_horizon_is_refused(config_cls, control, field, value):
    with pytest.raises(ValueError, match=rf"{config_cls.__name__}.{field}={value!r}: must be a finite number"):
        config_cls(**COMMON, beta=0.1, kl_control=control, **{field: value})


# --------------------------------------------------------------------------------------------------------------------
# PPO policy loss
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("log_ratio", [1e4, -1e4, 50.0, -50.0])
@pytest.mark.parametrize("advantage", [1.0, -1.0])
def test_policy_loss_has_a_finite_gradient_at_extreme_log_ratios(log_ratio, advantage):
    old = torch.zeros(2, 3, dtype=torch.float64)
    logprobs = torch.tensor([[log_ratio, 0.1, -0.2], [0.0, -0.3, 0.2]], dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 3, dtype=torch.float64)
    advantages = torch.full((2, 3), advantage, dtype=torch.float64)
    loss, stats = policy_loss(logprobs, old, advantages, mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logprobs.grad).all(), (loss, logprobs.grad)
    assert all(torch.isfinite(v) for v in stats.values())
    # the other tokens' gradients are those of the unclamped loss (clamping only touches |log ratio| > 20)
    reference = logprobs.detach().clone()[:, 1:].requires_grad_(True)
    ratio = torch.exp(reference)
    per_token = torch.max(-advantages[:, 1:] * ratio, -advantages[:, 1:] * ratio.clamp(0.8, 1.2))
    (per_token.sum() / 6).backward()
    assert torch.allclose(logprobs.grad[:, 1:], reference.grad)


def test_policy_loss_is_unchanged_inside_the_clamp():
    torch.manual_seed(0)
    logprobs = (torch.randn(4, 5, dtype=torch.float64) * 3).requires_grad_(True)
    old, advantages = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    mask = (torch.rand(4, 5) > 0.2).double()
    loss, _ = policy_loss(logprobs, old, advantages, mask)
    ratio = torch.exp(logprobs - old)
    expected = (torch.max(-advantages * ratio, -advantages * ratio.clamp(0.8, 1.2)) * mask).sum() / mask.sum()
    assert torch.allclose(loss, expected)


# --------------------------------------------------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------------------------------------------------


def test_an_unparsable_trl_version_warns(monkeypatch):
    import trl

    monkeypatch.setattr(trl, "__version__", "dev build")
    with pytest.warns(UserWarning, match=r"cannot read the version of trl \('dev build'\)"):
        outside = compat.check_versions()
    assert outside == ["trl 'dev build' (unreadable, tested >=1.16,<1.17)"]


def test_trl_ext_imports_with_an_unparsable_trl_version():
    code = ("import warnings, trl; trl.__version__ = 'main@abc123'\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    import trl_ext._trl_compat, trl_ext\n"
            "print([str(w.message) for w in caught if 'version of trl' in str(w.message)])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cannot read the version of trl ('main@abc123')" in proc.stdout


# --------------------------------------------------------------------------------------------------------------------
# A saved BERT-CLS reward model in a fresh interpreter
# --------------------------------------------------------------------------------------------------------------------


def test_a_saved_bert_cls_reward_model_says_how_to_load_it_without_trl_ext(tmp_path, tiny_bert_dir):
    import os

    from trl_ext import BertClsRewardModel

    saved, resaved = tmp_path / "rm", tmp_path / "rm2"
    BertClsRewardModel.from_encoder(tiny_bert_dir).save_pretrained(saved)
    code = ("import sys\n"
            "from transformers import AutoModelForSequenceClassification as Auto\n"
            "try:\n"
            f"    Auto.from_pretrained({str(saved)!r})\n"
            "except ValueError as err:\n"
            "    print('\\nERROR', ' '.join(str(err).split()))\n"
            "assert 'trl_ext' not in sys.modules\n"
            f"model = Auto.from_pretrained({str(saved)!r}, trust_remote_code=True)\n"
            "import trl_ext\n"
            "print('LOADED', type(model) is trl_ext.BertClsRewardModel, model.config.pooling)\n"
            # saved again after such a load: the checkpoint still points at the loader, not at a copy of trl_ext's code
            f"model.save_pretrained({str(resaved)!r})\n")
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                          stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    error = next(line for line in proc.stdout.splitlines() if line.startswith("ERROR"))
    assert "trust_remote_code=True" in error, error
    assert "LOADED True cls" in proc.stdout, proc.stdout
    shim = (saved / "trl_ext_bert_cls_reward.py").read_text()
    assert "import trl_ext" in shim and "from trl_ext.modeling_bert_cls_reward import" in shim
    assert sorted(p.name for p in resaved.glob("*.py")) == ["trl_ext_bert_cls_reward.py"]
