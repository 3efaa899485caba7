"""The bundled data files are exactly what their generators under scripts/ write (deterministic, stdlib only)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT


@pytest.mark.parametrize("script, bundled", [
    ("make_reward_data.py", "helpfulness_ranked.jsonl"),
    ("make_dpo_data.py", "arithmetic_ranked.jsonl"),
    ("make_rlhf_data.py", "arithmetic_rlhf.jsonl"),
])
def test_regenerating_gives_the_bundled_file_byte_for_byte(script, bundled, tmp_path):
    out = tmp_path / bundled
    subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / script), "--out", str(out)], cwd=tmp_path,
                   check=True, capture_output=True, timeout=120)
    assert out.read_bytes() == (REPO_ROOT / "recipes" / "data" / bundled).read_bytes()


def test_the_reward_topics_file_refuses_a_duplicate_task(tmp_path):
    sys.path.insert(0, str(REPO_ROOT / "scripts"))  # a script, not a module
    try:
        import make_reward_data
    finally:
        sys.path.remove(str(REPO_ROOT / "scripts"))
    path = tmp_path / "topics.json"
    path.write_text('{"cooking": {"boil an egg": ["a", "b", "c"], "boil an egg": ["d", "e", "f"]}}')
    with pytest.raises(ValueError, match=r"duplicate keys \['boil an egg'\]"):
        make_reward_data.load_topics(path)
    assert len(make_reward_data.TOPICS) == 56 and sum(len(tasks) for _, tasks in make_reward_data.TOPICS) == 224
