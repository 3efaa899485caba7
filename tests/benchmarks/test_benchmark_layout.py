"""The benchmarks are modules of the `benchmarks` package: each runs as `python -m benchmarks.<name>`, none imports
the tests or edits `sys.path`, and `benchmarks/results/` holds exactly the files its README lists."""

from __future__ import annotations

import ast
import itertools
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if "__main__" in p.read_text())


def _problems(source: str) -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(source)):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        problems += [f"line {node.lineno}: imports {name}" for name in names
                     if name.split(".")[0] in {"tests", "recipe_utils", "model_assets"}]
        # sys.path.insert(...) / .append(...) / sys.path[:0] = ... / sys.path = ...
        target = node.func.value if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            target = next((t.value if isinstance(t, ast.Subscript) else t for t in targets), None)
        if (isinstance(target, ast.Attribute) and target.attr == "path" and isinstance(target.value, ast.Name)
                and target.value.id == "sys"):
            problems.append(f"line {node.lineno}: edits sys.path")
    return problems


def test_no_benchmark_imports_the_tests_or_edits_sys_path():
    found = {p.name: _problems(p.read_text()) for p in sorted(BENCHMARKS.glob("*.py"))}
    assert {name: problems for name, problems in found.items() if problems} == {}


@pytest.mark.parametrize("source", [
    "import sys\nsys.path.insert(0, 'x')", "import sys\nsys.path[:0] = ['x']", "import sys\nsys.path.append('x')",
    "from tests.helpers import REPO_ROOT", "import tests.helpers", "from model_assets import smollm2_path",
])
def test_the_checker_catches(source):
    assert _problems(source)


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_benchmark_runs_as_a_module(name):
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr[-2000:]


def test_docs_run_the_benchmarks_as_modules():
    docs = [REPO_ROOT / "README.md", REPO_ROOT / "recipes" / "README.md", BENCHMARKS / "README.md",
            BENCHMARKS / "results" / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    found = {str(p.relative_to(REPO_ROOT)): re.findall(r"python3? benchmarks/\w+\.py", p.read_text()) for p in docs}
    assert {path: commands for path, commands in found.items() if commands} == {}


def _expand(pattern: str) -> list[str]:
    """`a_{x,y}.{json,md}` -> the four names."""
    parts = re.split(r"\{([^}]*)\}", pattern)
    choices = [[part] if i % 2 == 0 else part.split(",") for i, part in enumerate(parts)]
    return ["".join(combo) for combo in itertools.product(*choices)]


def test_results_hold_exactly_the_files_their_readme_lists():
    readme = (BENCHMARKS / "results" / "README.md").read_text()
    listed = {name for token in re.findall(r"`(cpu/[^`\s]+)`", readme) for name in _expand(token)}
    on_disk = {str(p.relative_to(BENCHMARKS / "results")) for p in (BENCHMARKS / "results").rglob("*")
               if p.is_file() and p.name != "README.md"}
    assert sorted(listed - on_disk) == [] and sorted(on_disk - listed) == []
