"""pyproject.toml declares what the package and the recipes import, the Python they need, and caps only where
trl_ext reaches into a library's internals."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import trl_ext

REPO_ROOT = Path(trl_ext.__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _third_party_imports(root: Path, module_level_only: bool) -> dict[str, str]:
    """{top-level module: first file importing it}, standard library and trl_ext left out. `module_level_only`: the
    imports that run when the module is imported (not those inside functions, which may need an extra)."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        nodes = tree.body if module_level_only else ast.walk(tree)
        for node in nodes:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for top in (name.split(".")[0] for name in names):
                if top not in sys.stdlib_module_names and top not in {"trl_ext", "__future__"}:
                    found.setdefault(top, str(path.relative_to(root.parent)))
    return found


def _distribution(module: str) -> str:
    """The distribution that installs `module` (the module's own name where it is not installed here, e.g. an extra
    left out of this environment)."""
    return importlib.metadata.packages_distributions().get(module, [module])[0].lower().replace("_", "-")


def _missing(imports: dict[str, str], declared: set[str]) -> dict[str, str]:
    return {module: where for module, where in imports.items() if _distribution(module) not in declared}


CORE = {_name(r) for r in PROJECT["dependencies"]}
EXTRAS = {_name(r) for extra in PROJECT["optional-dependencies"].values() for r in extra} - {"trl-ext"}


def test_what_the_package_imports_at_module_level_is_a_core_dependency():
    assert _missing(_third_party_imports(REPO_ROOT / "trl_ext", module_level_only=True), CORE) == {}


def test_every_import_of_the_package_and_the_recipes_is_declared():
    for folder in ("trl_ext", "recipes"):
        assert _missing(_third_party_imports(REPO_ROOT / folder, module_level_only=False), CORE | EXTRAS) == {}, folder


def test_python_floor_and_caps():
    assert PROJECT["requires-python"] == ">=3.11"  # TRL 1.16 and transformers 5 need 3.11; the tests use tomllib
    requirements = PROJECT["dependencies"] + [r for extra in PROJECT["optional-dependencies"].values() for r in extra]
    capped = {_name(r) for r in requirements if "<" in r}
    # trl and transformers: trl_ext hooks their internals; bitsandbytes: an attribute of its Linear4bit (peft_utils)
    assert capped == {"trl", "transformers", "bitsandbytes"}
    assert "deepspeed" not in CORE and "deepspeed" in EXTRAS  # optional: the ZeRO launch configs only


def test_the_checker_sees_imports_inside_functions(tmp_path):
    (tmp_path / "m.py").write_text("import os\nimport yaml\n\ndef f():\n    import scipy.stats\n")
    assert set(_third_party_imports(tmp_path, module_level_only=True)) == {"yaml"}
    assert set(_third_party_imports(tmp_path, module_level_only=False)) == {"yaml", "scipy"}
