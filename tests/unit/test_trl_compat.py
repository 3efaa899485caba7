"""_trl_compat: the overridden TRL hooks still exist with the parameters our overrides take, every private TRL method
a trl_ext trainer overrides is listed, and the version check names what falls outside the tested range."""

from __future__ import annotations

import inspect
import sys
import warnings

import pytest
import trl

import trl_ext
from trl_ext import _trl_compat as compat

TRAINERS = ["RewardTrainer", "DPOTrainer", "GRPOTrainer", "RLOOTrainer", "PPOTrainer"]


@pytest.mark.parametrize("owner,hook", [(owner, hook) for owner, hooks in compat.HOOKS.items() for hook in hooks])
def test_each_overridden_hook_exists_with_the_parameters_we_override(owner, hook):
    assert compat.hook_parameters(owner, hook) == compat.HOOKS[owner][hook]


@pytest.mark.parametrize("owner,name", [(owner, name) for owner, names in compat.CLASS_ATTRIBUTES.items()
                                        for name in names])
def test_each_private_class_attribute_we_set_exists_on_the_library_class(owner, name):
    import importlib

    module, cls = owner.split(".")
    assert hasattr(getattr(importlib.import_module(module), cls), name)


def test_init_weights_as_uses_the_wrapped_models_own_initialisation():
    from torch import nn

    calls = []

    class Wrapped(nn.Module):
        def _init_weights(self, module):
            calls.append(module)

    layer = nn.Linear(2, 2)
    assert compat.init_weights_as(Wrapped(), layer) and calls == [layer]
    assert not compat.init_weights_as(nn.Module(), layer)


def _private_overrides(cls: type) -> dict[str, str]:
    """Private methods `cls` (or a trl_ext mixin) defines that a TRL/transformers base class also defines."""
    found = {}
    ours = [k for k in cls.__mro__ if k.__module__.startswith("trl_ext")]
    theirs = [k for k in cls.__mro__ if k.__module__.startswith(("trl.", "transformers."))]
    for klass in ours:
        for name, value in vars(klass).items():
            if name.startswith("_") and not name.startswith("__") and callable(value):
                owner = next((k for k in reversed(theirs) if name in vars(k)), None)
                if owner is not None:
                    found[name] = owner
    return {name: owner.__name__ for name, owner in found.items()}


@pytest.mark.parametrize("name", TRAINERS)
def test_every_private_override_is_listed_in_hooks(name):
    cls = getattr(trl_ext, name)
    listed = {hook for hooks in compat.HOOKS.values() for hook in hooks}
    missing = {hook: owner for hook, owner in _private_overrides(cls).items() if hook not in listed}
    assert missing == {}


def test_our_overrides_take_the_parameters_listed():
    for name in TRAINERS:
        cls = getattr(trl_ext, name)
        for hook in _private_overrides(cls):
            ours = tuple(inspect.signature(getattr(cls, hook)).parameters)
            listed = next(hooks[hook] for hooks in compat.HOOKS.values() if hook in hooks)
            assert ours == listed, (name, hook)


def test_version_check_warns_outside_the_tested_range(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compat.check_versions() == []  # the installed stack is inside the range
    monkeypatch.setattr(trl, "__version__", "1.17.0")
    # the module object check_versions reads: transformers may have swapped its lazy module in sys.modules since
    # this file imported it
    monkeypatch.setattr(sys.modules["transformers"], "__version__", "5.22.0")
    with pytest.warns(UserWarning, match=r"found trl 1\.17\.0 \(tested >=1\.16,<1\.17\); transformers 5\.22\.0"):
        assert len(compat.check_versions()) == 2


def test_pyproject_declares_the_tested_ranges():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(trl_ext.__file__).parents[1] / "pyproject.toml").read_text())["project"]
    declared = {dep.split(">=")[0]: dep for dep in project["dependencies"]}
    for name, spec in compat.TESTED_VERSIONS.items():
        assert declared[name] == name + spec
