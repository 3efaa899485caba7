"""Each trainer's `__init__` has its TRL parent's signature: every parameter of TRL's `__init__` with the same name,
order, kind, default and (resolved) type, and trl_ext's own additions, if any, keyword-only after them."""

from __future__ import annotations

import inspect
import sys

import pytest
import trl

import trl_ext

# trl_ext trainer -> the TRL class whose `__init__` it keeps (PPO is built on GRPO's machinery)
PARENTS = {"RewardTrainer": "RewardTrainer", "DPOTrainer": "DPOTrainer", "GRPOTrainer": "GRPOTrainer",
           "RLOOTrainer": "RLOOTrainer", "PPOTrainer": "GRPOTrainer"}
# Parameters whose annotation is a trl_ext subclass of TRL's type: PPO needs its own config (its critic's fields).
NARROWED = {("PPOTrainer", "args"): (trl_ext.PPOConfig, trl.GRPOConfig)}


def _resolved(function) -> dict[str, str]:
    """Each parameter's annotation as a string, evaluated in the function's module where it can be (TRL writes some
    as strings, trl_ext's modules use `from __future__ import annotations`): the same type prints the same."""
    namespace = vars(sys.modules[function.__module__])
    resolved = {}
    for name, parameter in inspect.signature(function).parameters.items():
        annotation = parameter.annotation
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)  # noqa: S307 - source text of an installed module
            except NameError:
                pass
        resolved[name] = inspect.formatannotation(annotation)
    return resolved


def _trl_trainer(name: str) -> type:
    """The TRL class our trainer extends, from its MRO (a test elsewhere may rebind `trl.<Trainer>` to ours)."""
    return next(cls for cls in getattr(trl_ext, name).__mro__
                if cls.__module__.startswith("trl.") and cls.__name__ == PARENTS[name])


@pytest.mark.parametrize("name", sorted(PARENTS))
def test_init_has_trl_parents_signature(name):
    ours_init, trl_init = getattr(trl_ext, name).__init__, _trl_trainer(name).__init__
    ours, theirs = inspect.signature(ours_init).parameters, inspect.signature(trl_init).parameters
    assert list(ours)[:len(theirs)] == list(theirs), "TRL's parameters, in TRL's order, first"
    ours_types, trl_types = _resolved(ours_init), _resolved(trl_init)
    for parameter_name, theirs_parameter in theirs.items():
        mine = ours[parameter_name]
        assert mine.kind == theirs_parameter.kind, parameter_name
        assert mine.default == theirs_parameter.default, parameter_name
        if (name, parameter_name) in NARROWED:
            narrow, wide = NARROWED[name, parameter_name]
            assert issubclass(narrow, wide)
            assert ours_types[parameter_name] == inspect.formatannotation(narrow | None)
            assert trl_types[parameter_name] == inspect.formatannotation(wide | None)
        else:
            assert ours_types[parameter_name] == trl_types[parameter_name], parameter_name
            assert not trl_types[parameter_name].startswith("'"), f"{parameter_name}: unresolved"
    extra = list(ours)[len(theirs):]
    assert all(ours[p].kind is inspect.Parameter.KEYWORD_ONLY for p in extra), extra
    assert not any(p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
                   for p in ours.values()), "no *args / **kwargs: IDEs and help() show TRL's parameters"
