"""Rule-based maths rewards and the prompt/answer data they read."""

from __future__ import annotations

import pytest

from trl_ext.rewards import completion_text, final_number_reward, format_reward, last_number, make_format_reward


def test_last_number():
    assert last_number("7 + 5 = 12.") == 12.0
    assert last_number("it costs 1,234.5 dollars, not 3") == 3.0
    assert last_number("-4") == -4.0
    assert last_number("no digits") is None


def test_final_number_reward_text_and_conversational():
    completions = ["7 + 5 = 12.", [{"role": "assistant", "content": "The answer is 13"}], "twelve", "#### 72"]
    assert final_number_reward(completions, answer=["12", 12, "12", "Natalia sold 72 clips.\n#### 72"]) == [
        1.0, 0.0, 0.0, 1.0]


def test_final_number_reward_bad_inputs():
    with pytest.raises(ValueError, match="needs an 'answer' column"):
        final_number_reward(["1"])
    with pytest.raises(ValueError, match="2 completions but 1 answers"):
        final_number_reward(["1", "2"], answer=["1"])
    with pytest.raises(ValueError, match="row 1, field 'answer'"):
        final_number_reward(["1", "2"], answer=["1", "none"])
    with pytest.raises(TypeError, match="text or a list of messages"):
        completion_text(42)


def test_format_reward():
    assert format_reward(["7 + 5 = 12.", "7 + 5 = 12", "The answer is 12", "7 + 5 = 12. Hope this helps!",
                          "a\n= 3"]) == [1.0, 1.0, 0.0, 0.0, 0.0]
    boxed = make_format_reward(r".*\\boxed\{-?\d+\}", name="boxed")
    assert boxed.__name__ == "boxed" and boxed(["so \\boxed{4}", "4"]) == [1.0, 0.0]
