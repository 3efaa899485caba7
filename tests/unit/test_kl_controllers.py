"""KL controllers: hand-computed updates, bounds, NaN handling, state, a simulated closed loop, config validation."""

from __future__ import annotations

import math
import warnings

import pytest

from trl_ext.kl_controllers import (
    AdaptiveKLController,
    FixedKLController,
    build_kl_controller,
    full_kl_per_token,
    kl_error,
)


def test_kl_error_is_clipped_proportional_error():
    assert kl_error(6.0, 6.0) == 0.0
    assert kl_error(6.6, 6.0) == pytest.approx(0.1)
    assert kl_error(12.0, 6.0) == pytest.approx(0.2)   # clipped
    assert kl_error(0.0, 6.0) == pytest.approx(-0.2)   # clipped
    assert kl_error(9.0, 6.0, clip=0.6) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="kl_target must be > 0"):
        kl_error(1.0, 0.0)


def test_adaptive_update_matches_hand_values():
    # Ziegler et al.: beta *= 1 + (n / horizon) * clip(KL / target - 1, -0.2, 0.2); old TRL: init 0.2, target 6
    ctl = AdaptiveKLController(init_beta=0.2, target=6.0, horizon=10_000)
    assert ctl.update(12.0, 256) == pytest.approx(0.2 * (1 + 0.0256 * 0.2))      # above target, error clipped 0.2
    b1 = 0.2 * (1 + 0.0256 * 0.2)
    assert ctl.update(3.0, 256) == pytest.approx(b1 * (1 - 0.0256 * 0.2))        # below target, clipped -0.2
    b2 = b1 * (1 - 0.0256 * 0.2)
    assert ctl.update(6.6, 256) == pytest.approx(b2 * (1 + 0.0256 * 0.1))        # inside the clip
    assert ctl.last_kl == 6.6 and ctl.last_error == pytest.approx(0.1)
    assert ctl.update(6.0, 256) == pytest.approx(b2 * (1 + 0.0256 * 0.1))        # on target: unchanged


def test_beta_bounds_are_enforced():
    ctl = AdaptiveKLController(init_beta=1.0, target=1.0, horizon=1.0, min_beta=0.5, max_beta=1.5)
    for _ in range(10):
        ctl.update(100.0, 1)
    assert ctl.value == 1.5
    for _ in range(10):
        ctl.update(0.0, 1)
    assert ctl.value == 0.5
    with pytest.raises(ValueError, match=r"starting beta 5.0 is outside \[kl_min_beta, kl_max_beta\] = \[0.0, 2.0\]"):
        AdaptiveKLController(init_beta=5.0, target=1.0, max_beta=2.0)  # not silently clamped
    with pytest.raises(ValueError, match="starting beta 0.1 is outside"):
        AdaptiveKLController(init_beta=0.1, target=1.0, min_beta=0.3)


@pytest.mark.parametrize("horizon,n,ok", [(0.5, 4, False), (0.8, 4, False), (0.81, 4, True), (400, 16, True)])
def test_a_horizon_that_could_drive_beta_to_zero_is_refused(horizon, n, ok):
    # multiplier 1 + n/horizon * e with e = -clip (0.2) must stay > 0
    ctl = AdaptiveKLController(init_beta=0.3, target=1.0, horizon=horizon)
    if ok:
        ctl.check_horizon(n)
        assert ctl.update(0.0, n) > 0  # the largest downward step keeps beta positive
    else:
        with pytest.raises(ValueError, match=rf"kl_horizon={horizon:g} is too short for {n} sequences per update.*"
                                             rf"use kl_horizon > {n * 0.2:g}"):
            ctl.update(0.0, n)


def test_non_finite_kl_never_reaches_beta_and_warns_once():
    ctl = AdaptiveKLController(init_beta=0.3, target=1.0, horizon=10.0)
    with pytest.warns(UserWarning, match="non-finite KL"):
        assert ctl.update(float("nan"), 8) == 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second skip is counted, not warned again
        assert ctl.update(float("inf"), 8) == 0.3
        assert ctl.update(None, 8) == 0.3
    assert ctl.skipped_updates == 3
    assert ctl.update(2.0, 8) == pytest.approx(0.3 * (1 + 0.8 * 0.2))
    fixed = FixedKLController(beta=0.1)
    assert fixed.update(float("nan"), 4) == 0.1 and fixed.skipped_updates == 1


def test_state_dict_restores_the_same_beta_sequence():
    kls = [0.5, 3.0, 9.0, 7.0, 6.2, float("nan"), 5.0]
    full = AdaptiveKLController(init_beta=0.2, target=6.0, horizon=100.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        betas = [full.update(k, 16) for k in kls]
        first = AdaptiveKLController(init_beta=0.2, target=6.0, horizon=100.0)
        for k in kls[:3]:
            first.update(k, 16)
        resumed = AdaptiveKLController(init_beta=0.2, target=6.0, horizon=100.0)
        resumed.load_state_dict(first.state_dict())
        assert [resumed.update(k, 16) for k in kls[3:]] == betas[3:]
    assert resumed.skipped_updates == full.skipped_updates == 1


def test_closed_loop_converges_to_the_target():
    """A simulated policy whose KL responds to beta (KL = c / beta): the controller finds beta* = c / target."""
    c, target = 1.2, 6.0
    ctl = AdaptiveKLController(init_beta=1.0, target=target, horizon=10_000)
    errors = []
    for _ in range(400):
        kl = c / ctl.value
        errors.append(abs(kl / target - 1))
        ctl.update(kl, 1024)
    assert ctl.value == pytest.approx(c / target, rel=0.02)
    assert sum(errors[-100:]) / 100 < 0.02
    assert errors[0] == pytest.approx(0.8)
    # and from the other side (KL too high at the start)
    ctl = AdaptiveKLController(init_beta=0.05, target=target, horizon=10_000)
    for _ in range(400):
        ctl.update(c / ctl.value, 1024)
    assert ctl.value == pytest.approx(c / target, rel=0.02)


def test_bad_controller_arguments_are_rejected():
    with pytest.raises(ValueError, match="init_beta > 0"):
        AdaptiveKLController(init_beta=0.0, target=6.0)
    with pytest.raises(ValueError, match="kl_target must be > 0"):
        AdaptiveKLController(init_beta=0.1, target=-1.0)
    with pytest.raises(ValueError, match="kl_horizon must be > 0"):
        AdaptiveKLController(init_beta=0.1, target=1.0, horizon=0)
    with pytest.raises(ValueError, match="min_beta <= max_beta"):
        AdaptiveKLController(init_beta=0.1, target=1.0, min_beta=1.0, max_beta=0.5)
    with pytest.raises(ValueError, match="beta must be a finite number"):
        FixedKLController(beta=math.nan)


def test_configs_validate_kl_fields(tmp_path):
    from trl_ext import GRPOConfig, RLOOConfig

    with pytest.raises(ValueError, match="needs beta > 0"):
        GRPOConfig(output_dir=str(tmp_path), bf16=False, kl_control="adaptive", beta=0.0)
    with pytest.raises(ValueError, match="kl_control='pid' is not one of"):
        GRPOConfig(output_dir=str(tmp_path), bf16=False, kl_control="pid", beta=0.1)
    with pytest.raises(ValueError, match="kl_estimator='k3' is not one of"):
        GRPOConfig(output_dir=str(tmp_path), bf16=False, kl_estimator="k3")
    with pytest.raises(ValueError, match="kl_target_unit='nats'"):
        RLOOConfig(output_dir=str(tmp_path), bf16=False, kl_target_unit="nats")
    with pytest.raises(ValueError, match="kl_target must be > 0"):
        RLOOConfig(output_dir=str(tmp_path), bf16=False, kl_control="adaptive", beta=0.1, kl_target=0.0)
    args = GRPOConfig(output_dir=str(tmp_path), bf16=False, kl_control="adaptive", beta=0.05, kl_target=2.0, kl_horizon=500,
                      kl_max_beta=1.0, kl_min_beta=0.01, kl_error_clip=0.5)
    ctl = build_kl_controller(args)
    assert isinstance(ctl, AdaptiveKLController)
    assert (ctl.value, ctl.target, ctl.horizon, ctl.max_beta, ctl.min_beta, ctl.clip) == (0.05, 2.0, 500.0, 1.0, 0.01, 0.5)
    assert ctl.update(4.0, 500) == pytest.approx(0.05 * 1.5)  # error 1.0 clipped at kl_error_clip 0.5
    with pytest.raises(ValueError, match="error clip must be in"):
        GRPOConfig(output_dir=str(tmp_path), bf16=False, kl_control="adaptive", beta=0.1, kl_error_clip=1.5)
    assert isinstance(build_kl_controller(RLOOConfig(output_dir=str(tmp_path), bf16=False)), FixedKLController)


# ------------------------------------------------------------------------------------------ full-vocabulary KL
def test_full_kl_per_token_matches_a_float64_reference():
    import torch

    torch.manual_seed(0)
    logits, ref = torch.randn(2, 3, 7) * 2, torch.randn(2, 3, 7) * 2
    got = full_kl_per_token(logits, ref)
    assert got.shape == (2, 3) and got.dtype == torch.float32
    for b in range(2):
        for t in range(3):
            p = [math.exp(x) for x in logits[b, t].double().tolist()]
            q = [math.exp(x) for x in ref[b, t].double().tolist()]
            p, q = [x / sum(p) for x in p], [x / sum(q) for x in q]
            assert got[b, t].item() == pytest.approx(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)), rel=1e-5)
    # a softmax ignores a constant shift: the same distribution has KL 0, and KL is never negative
    assert full_kl_per_token(logits, logits + 3.0).abs().max().item() < 1e-6
    assert (got >= 0).all()
    # bf16 inputs are measured in float32
    assert full_kl_per_token(logits.bfloat16(), ref.bfloat16()).dtype == torch.float32


def test_full_kl_is_the_expectation_of_the_sampled_log_ratio():
    """The two estimators measure the same quantity: the mean of log π(a) − log π_ref(a) over a ~ π is the full KL."""
    import torch

    gen = torch.Generator().manual_seed(1)
    logits, ref = torch.randn(5, generator=gen), torch.randn(5, generator=gen)
    draws = torch.multinomial(logits.softmax(-1), 400_000, replacement=True, generator=gen)
    sampled = (logits.log_softmax(-1) - ref.log_softmax(-1))[draws].mean().item()
    assert sampled == pytest.approx(full_kl_per_token(logits, ref).item(), abs=0.01)


def test_full_kl_rejects_mismatched_shapes():
    import torch

    with pytest.raises(ValueError, match=r"logits \(2, 5\) and ref_logits \(2, 6\) differ"):
        full_kl_per_token(torch.zeros(2, 5), torch.zeros(2, 6))


def test_full_kl_estimator_rejects_image_batches():
    from trl_ext.trainer.kl_control import KLControlledTrainerMixin

    with pytest.raises(ValueError, match="kl_estimator='full' supports text-only models"):
        KLControlledTrainerMixin._full_kl_tokens(object(), {"pixel_values": [[0.0]]})
