"""The package's layout rules: a lazy public API, and TRL/transformers internals reached only through _trl_compat."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import trl_ext

PACKAGE = Path(trl_ext.__file__).resolve().parent
COMPAT = PACKAGE / "_trl_compat.py"


def _fresh_modules(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_light_import_loads_no_trainer_and_no_bitsandbytes():
    modules = _fresh_modules("from trl_ext import ranked_to_pairs")
    assert not any(m.startswith("trl_ext.trainer") for m in modules)
    assert not any(m.startswith(("bitsandbytes", "trl.trainer", "torch")) for m in modules)
    assert "trl_ext.data.ranked" in modules


def test_a_trainer_is_imported_when_its_name_is_used():
    modules = _fresh_modules("import trl_ext\ntrl_ext.DPOConfig")
    assert "trl_ext.trainer.dpo_config" in modules
    assert "trl_ext.trainer.reward_trainer" not in modules and "trl_ext.trainer.ppo_trainer" not in modules


def test_public_api_resolves_and_is_declared_once():
    for name in trl_ext.__all__:
        assert getattr(trl_ext, name) is not None, name
    assert trl_ext.rewards.final_number_reward  # submodules reachable after a plain `import trl_ext`
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        trl_ext.not_a_name  # noqa: B018
    declaring = [p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py") if "__all__" in p.read_text()]
    assert declaring == [Path("__init__.py")]


# --------------------------------------------------------------------------------------------------------------------
# Private TRL / transformers names only in _trl_compat.py
# --------------------------------------------------------------------------------------------------------------------


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_names_defined(trees: dict[Path, ast.AST]) -> set[str]:
    """Private names trl_ext defines itself: functions, classes, class attributes, attributes it assigns."""
    defined = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                defined.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                defined.add(node.target.id)
    return {name for name in defined if _is_private(name)}


def private_uses(source: str, own_private: set[str]) -> list[str]:
    """Uses in `source` of TRL/transformers internals: imports from TRL's submodules, imports of underscore names from
    trl/transformers, and private attributes trl_ext does not define itself."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            root = node.module.split(".")[0]
            if root == "trl" and node.module != "trl":
                problems.append(f"line {node.lineno}: from {node.module} import ...")
            if root in ("trl", "transformers"):
                problems += [f"line {node.lineno}: imports {alias.name} from {node.module}"
                             for alias in node.names if _is_private(alias.name)]
        elif isinstance(node, ast.Import):
            problems += [f"line {node.lineno}: import {alias.name}" for alias in node.names
                         if alias.name.startswith("trl.")]
        elif isinstance(node, ast.Attribute) and _is_private(node.attr) and node.attr not in own_private:
            problems.append(f"line {node.lineno}: .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and _is_private(node.args[1].value) and node.args[1].value not in own_private):
            problems.append(f"line {node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
    return problems


def _package_trees() -> dict[Path, ast.AST]:
    return {path: ast.parse(path.read_text()) for path in PACKAGE.rglob("*.py") if path != COMPAT}


def _library_private_names() -> set[str]:
    """Private names TRL and transformers' Trainer define: assigning or reading one of them is a private use even
    though trl_ext's code assigns it too (`self._step += 1`)."""
    import transformers
    import trl

    sources = [*Path(trl.__file__).parent.rglob("*.py"), Path(transformers.__file__).parent / "trainer.py"]
    return _private_names_defined({path: ast.parse(path.read_text()) for path in sources})


def test_only_the_compat_module_reaches_trl_internals():
    from trl_ext import _trl_compat as compat

    trees = _package_trees()
    hooks = {hook for hooks in compat.HOOKS.values() for hook in hooks}
    own = (_private_names_defined(trees) - _library_private_names()) | hooks
    problems = {str(path.relative_to(PACKAGE)): private_uses(path.read_text(), own) for path in trees}
    assert {path: found for path, found in problems.items() if found} == {}


@pytest.mark.parametrize("line", [
    "from trl.data_utils import _tokenize",
    "from trl.trainer.utils import pad",
    "import trl.trainer.utils",
    "from transformers.configuration_utils import _private",
    "def f(trainer):\n    return trainer._metrics",
    "def f(config):\n    return getattr(config, '_name_or_path', None)",
])
def test_the_checker_catches_private_uses(line):
    assert private_uses(line, own_private={"_own"}), line
    assert not private_uses("def f(x):\n    return x._own", own_private={"_own"})


def test_the_package_holds_no_project_plumbing():
    """No module of the installed package imports the repository's recipes, tests or benchmarks, or points at the
    project's data folder: none of them exists in a wheel."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            problems += [f"{path.name}: import {name}" for name in names
                         if name.split(".")[0] in {"recipes", "tests", "benchmarks", "model_assets", "recipe_utils"}]
        if "shared/data" in text or "../shared" in text:
            problems.append(f"{path.name}: mentions the shared data folder")
    assert problems == []
