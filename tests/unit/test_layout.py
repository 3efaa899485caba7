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


# Internals a user does not need at the top level, and the submodule that keeps each of them importable.
INTERNAL_NAMES = {
    "weighted_mean": "trl_ext.losses", "GROUPED_DPO_LOSS_TYPES": "trl_ext.losses", "kl_error": "trl_ext.kl_controllers",
    "full_kl_per_token": "trl_ext.kl_controllers", "PairEncoding": "trl_ext.modeling_bert_cls_reward",
    "render_messages": "trl_ext.modeling_bert_cls_reward", "encode_prompt_response": "trl_ext.modeling_bert_cls_reward",
    "is_encoder_config": "trl_ext.modeling_bert_cls_reward", "is_4bit": "trl_ext.peft_utils",
    "RunningMoments": "trl_ext.rewards", "ValueHead": "trl_ext.modeling_value_head", "kendall_tau": "trl_ext.metrics",
    "spearman": "trl_ext.metrics", "ndcg": "trl_ext.metrics", "pair_accuracy": "trl_ext.metrics",
    "pairwise_auc": "trl_ext.metrics", "top1_correct": "trl_ext.metrics", "group_ranking_metrics": "trl_ext.metrics",
    "rank_pairs": "trl_ext.data", "PAIR_STRATEGIES": "trl_ext.data",
    "RankedDataArguments": "trl_ext.trainer.ranked_data", "KLControlArguments": "trl_ext.trainer.kl_control",
    "sample_completions": "trl_ext.trainer.judge_callback", "onpolicy_pair_accuracy": "trl_ext.trainer.judge_callback",
}


def test_public_api_is_what_a_user_needs_and_internals_stay_in_their_submodules():
    import importlib

    assert len(trl_ext.__all__) <= 40, sorted(trl_ext.__all__)
    for trainer in ("Reward", "DPO", "GRPO", "RLOO", "PPO"):
        assert {f"{trainer}Trainer", f"{trainer}Config"} <= set(trl_ext.__all__)
    for name, module in INTERNAL_NAMES.items():
        assert name not in trl_ext.__all__, name
        with pytest.raises(AttributeError):
            getattr(trl_ext, name)
        assert getattr(importlib.import_module(module), name) is not None, (module, name)


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


_RECEIVERS_OF_OUR_OWN = ("self", "cls")


def _is_own_receiver(node: ast.AST) -> bool:
    """`self`, `cls` or `super()`: the object whose class trl_ext defines."""
    return ((isinstance(node, ast.Name) and node.id in _RECEIVERS_OF_OUR_OWN)
            or (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"))


def private_uses(source: str, own_private: set[str], library_private: frozenset[str] = frozenset(),
                 listed: frozenset[str] = frozenset()) -> list[str]:
    """Uses in `source` of TRL/transformers/torch internals:

    * imports from TRL's submodules, and imports of underscore names from trl/transformers;
    * reading a private attribute trl_ext does not define itself, on any object (`trainer._metrics`,
      `self.encoder._init_weights`), or, through `getattr`/`hasattr`, by name;
    * writing a private attribute on an object other than `self`/`cls` (a user's tokenizer, model or config), with
      `=` or `setattr`, even under a name of trl_ext's own;
    * a class body that sets a library's private class attribute or defines a library's private method
      (`_tag_names = [...]`, `def _init_weights`), unless `_trl_compat` lists it (`listed`: `HOOKS`,
      `CLASS_ATTRIBUTES`).

    `own_private`: underscore names trl_ext defines and no library does; `library_private`: those TRL,
    transformers' Trainer/PreTrainedModel/configs/tokenizers and torch's `nn.Module` define."""
    problems = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
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
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            if isinstance(node.ctx, ast.Load):
                if node.attr not in own_private and not (node.attr in listed and _is_own_receiver(node.value)):
                    problems.append(f"line {node.lineno}: reads {ast.unparse(node)}")
            elif not _is_own_receiver(node.value):
                problems.append(f"line {node.lineno}: writes {ast.unparse(node)} on an object that is not self")
            elif node.attr not in own_private:
                problems.append(f"line {node.lineno}: writes {ast.unparse(node)}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and _is_private(node.args[1].value)):
            name = node.args[1].value
            if node.func.id in ("setattr", "delattr") and not _is_own_receiver(node.args[0]):
                problems.append(f"line {node.lineno}: {node.func.id}({ast.unparse(node.args[0])}, {name!r}) on an "
                                "object that is not self")
            elif name not in own_private:
                problems.append(f"line {node.lineno}: {node.func.id}(..., {name!r})")
        elif isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names = [statement.name]
                elif isinstance(statement, ast.Assign):
                    names = [t.id for t in statement.targets if isinstance(t, ast.Name)]
                elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    names = [statement.target.id]
                else:
                    names = []
                problems += [f"line {statement.lineno}: class {node.name} sets {name}, a library's private name"
                             for name in names if _is_private(name) and name in library_private and name not in listed]
    return problems


def _package_trees() -> dict[Path, ast.AST]:
    return {path: ast.parse(path.read_text()) for path in PACKAGE.rglob("*.py") if path != COMPAT}


def _library_private_names() -> frozenset[str]:
    """Private names TRL, transformers' Trainer, PreTrainedModel, configs, tokenizers and callbacks, and torch's
    `nn.Module` define: assigning or reading one of them is a private use even though trl_ext's code assigns it too
    (`self._step += 1`)."""
    import torch
    import transformers
    import trl

    library = Path(transformers.__file__).parent
    sources = [*Path(trl.__file__).parent.rglob("*.py"),
               *(library / name for name in ("trainer.py", "modeling_utils.py", "configuration_utils.py",
                                             "tokenization_utils_base.py", "trainer_callback.py", "training_args.py")),
               Path(torch.__file__).parent / "nn" / "modules" / "module.py"]
    return frozenset(_private_names_defined({path: ast.parse(path.read_text()) for path in sources}))


def _listed_in_compat() -> frozenset[str]:
    from trl_ext import _trl_compat as compat

    return frozenset({name for names in compat.HOOKS.values() for name in names}
                     | {name for names in compat.CLASS_ATTRIBUTES.values() for name in names})


def test_only_the_compat_module_reaches_trl_internals():
    trees = _package_trees()
    library, listed = _library_private_names(), _listed_in_compat()
    own = _private_names_defined(trees) - library
    problems = {str(path.relative_to(PACKAGE)): private_uses(path.read_text(), own, library, listed)
                for path in trees}
    assert {path: found for path, found in problems.items() if found} == {}


@pytest.mark.parametrize("line", [
    "from trl.data_utils import _tokenize",
    "from trl.trainer.utils import pad",
    "import trl.trainer.utils",
    "from transformers.configuration_utils import _private",
    "def f(trainer):\n    return trainer._metrics",
    "def f(config):\n    return getattr(config, '_name_or_path', None)",
    # attribute access on an object other than self, of a library's private name we also define
    "class M:\n    def f(self, module):\n        self.encoder._init_weights(module)",
    "def f(model):\n    return hasattr(model, '_init_weights')",
    # a library's private class attribute or method set in a class body
    "class T:\n    _tag_names = ['trl']",
    "class T:\n    _no_split_modules: list = []",
    "class M:\n    def _init_weights(self, module):\n        pass",
    # attributes written on a user's object, even under a name of our own
    "def f(tokenizer):\n    tokenizer._own = True",
    "def f(tokenizer):\n    setattr(tokenizer, '_own', True)",
])
def test_the_checker_catches_private_uses(line):
    library = frozenset({"_tag_names", "_no_split_modules", "_init_weights", "_metrics", "_name_or_path"})
    assert private_uses(line, own_private={"_own"}, library_private=library), line


@pytest.mark.parametrize("line", [
    "def f(x):\n    return x._own",  # reading trl_ext's own private name
    "class C:\n    _own = 1\n    def f(self):\n        self._own = 2\n        return super()._own",
    "class M:\n    def _init_weights(self, module):\n        pass",  # listed in _trl_compat
])
def test_the_checker_lets_our_own_and_listed_names_pass(line):
    library = frozenset({"_init_weights"})
    assert not private_uses(line, own_private={"_own"}, library_private=library, listed=frozenset({"_init_weights"}))


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
