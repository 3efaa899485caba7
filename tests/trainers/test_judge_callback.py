"""JudgeCallback and its pure figures: best-of-n (exact estimator, analytic KL), on-policy RM accuracy, 95 % interval,
the prefix-sharing sampler (log-probs as a teacher-forced forward, KL exactly 0 against itself), and `judge/*` in a
plain GRPOTrainer run on a tiny model."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest
import torch
from datasets import Dataset

import trl_ext
from tests.helpers import reward_a
from trl_ext.trainer.judge_callback import (JudgeCallback, best_of_n_expectation, best_of_n_kl, mean_ci95,
                                            onpolicy_pair_accuracy, sample_completions)

# --------------------------------------------------------------------------------------------------------------------
# Pure figures against brute force (float64)
# --------------------------------------------------------------------------------------------------------------------


def _brute_best_of_n(scores, values, n):
    """Every n-subset equally likely; the best score wins, a tie shared uniformly."""
    total, count = 0.0, 0
    for subset in itertools.combinations(range(len(scores)), n):
        top = max(scores[i] for i in subset)
        winners = [i for i in subset if scores[i] == top]
        total += sum(values[i] for i in winners) / len(winners)
        count += 1
    return total / count


@pytest.mark.parametrize("scores,values", [
    ([0.3, -1.0, 2.5, 0.7, 1.1, -0.2], [1, 0, 0, 1, 1, 0]),
    ([1.0, 1.0, 0.5, 2.0, 2.0, 2.0, -3.0], [1, 0, 1, 0, 1, 1, 0]),  # ties: blocks of 2 and 3
    ([0.0] * 5, [1, 0, 0, 1, 0.5]),  # all tied: every n gives the mean
])
def test_best_of_n_expectation_is_exact(scores, values):
    for n in range(1, len(scores) + 1):
        assert best_of_n_expectation(scores, values, n) == pytest.approx(_brute_best_of_n(scores, values, n),
                                                                          abs=1e-12)
    assert best_of_n_expectation(scores, values, 1) == pytest.approx(sum(values) / len(values))


def test_best_of_n_bad_inputs():
    with pytest.raises(ValueError, match=r"n must be an integer in \[1, 3\]"):
        best_of_n_expectation([1, 2, 3], [0, 1, 0], 4)
    with pytest.raises(ValueError, match="Got 3 scores but 2 values"):
        best_of_n_expectation([1, 2, 3], [0, 1], 1)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        best_of_n_kl(0)


def test_best_of_n_kl_formula():
    assert best_of_n_kl(1) == 0.0
    for n in (2, 4, 8, 16):
        assert best_of_n_kl(n) == pytest.approx(math.log(n) - (n - 1) / n)
    assert best_of_n_kl(16) == pytest.approx(1.835, abs=1e-3)


def test_onpolicy_pair_accuracy_counts_only_pairs_whose_gold_differs():
    # prompt 0: gold (1, 0, 0): pairs (0,1) agree, (0,2) disagree; prompt 1: pair tied in score -> 0 (not a win);
    # prompt 2: all gold equal -> no pair
    accuracy, pairs = onpolicy_pair_accuracy([[2.0, 1.0, 3.0], [0.5, 0.5], [9.0, 1.0]],
                                             [[1, 0, 0], [1, 0], [1, 1]])
    assert pairs == 3 and accuracy == pytest.approx((1 + 0 + 0) / 3)
    accuracy, pairs = onpolicy_pair_accuracy([[1.0, 2.0]], [[0.0, 0.0]])
    assert pairs == 0 and math.isnan(accuracy)
    with pytest.raises(ValueError, match="prompt 0: 2 scores but 1 gold values"):
        onpolicy_pair_accuracy([[1.0, 2.0]], [[1.0]])


def test_mean_ci95_is_the_normal_interval():
    values = [1, 0, 1, 1, 0, 1, 1, 1]
    mean, half = mean_ci95(values)
    assert mean == pytest.approx(statistics.mean(values))
    assert half == pytest.approx(1.96 * statistics.stdev(values) / math.sqrt(len(values)))
    assert mean_ci95([0.25]) == (0.25, 0.0)
    with pytest.raises(ValueError):
        mean_ci95([])


# --------------------------------------------------------------------------------------------------------------------
# The sampler
# --------------------------------------------------------------------------------------------------------------------


def _teacher_forced_logps(model, tokenizer, prompt_text, completion):
    prompt = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].double()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion)[:, None]).sum().item()


@pytest.fixture(scope="module")
def tiny_policy(tiny_llama_causal_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_causal_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_llama_causal_dir)


@pytest.mark.parametrize("prompts", [
    ["say abc", "hello there, say a longer thing", [{"role": "user", "content": "hi"}]],
    # a common start ("say "), encoded once and shared, then padding between it and each prompt's own tokens
    ["say abc", "say a much longer thing", "say x"],
])
def test_sampler_logps_match_a_teacher_forced_forward_with_shared_prompts(tiny_policy, prompts):
    """Prompts of different lengths (padding) and 3 samples sharing one prompt cache: each completion's summed
    log-prob equals a plain forward over prompt + completion, and the reference (the same model) gives KL 0."""
    model, tok = tiny_policy
    side, state = tok.padding_side, torch.random.get_rng_state()
    samples = sample_completions(model, tok, prompts, num_samples=3, max_new_tokens=6, temperature=1.0,
                                 batch_size=16, seed=1, reference=model)
    assert tok.padding_side == side and torch.equal(torch.random.get_rng_state(), state)  # nothing of ours changed
    assert len(samples.texts) == 9 and samples.num_samples == 3
    assert samples.kl == [0.0] * 9
    assert any(len(ids) < 6 for ids in samples.completion_ids)  # some stopped at EOS: the mask after it matters
    for k, ids in enumerate(samples.completion_ids):
        prompt = prompts[k // 3]
        prompt_text = prompt if isinstance(prompt, str) else tok.apply_chat_template(prompt, tokenize=False,
                                                                                      add_generation_prompt=True)
        assert samples.logps[k] == pytest.approx(_teacher_forced_logps(model, tok, prompt_text, ids), abs=1e-4)


def test_sampler_drops_finished_rows_from_the_batch(tiny_policy):
    """A completion that reached EOS costs no forward afterwards: the decode steps forward Σ (length − 1) rows in
    all, not rows × steps."""
    model, tok = tiny_policy
    rows_per_call = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: rows_per_call.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    try:
        samples = sample_completions(model, tok, ["say abc", "hello there, say a longer thing",
                                                  [{"role": "user", "content": "hi"}]], num_samples=3,
                                     max_new_tokens=6, batch_size=16, seed=1)
    finally:
        hook.remove()
    lengths = [len(ids) for ids in samples.completion_ids]
    assert min(lengths) < max(lengths)  # some stopped early (else this checks nothing)
    decode = [shape[0] for shape in rows_per_call if shape[1] == 1]
    assert sum(decode) == sum(n - 1 for n in lengths)
    assert decode == sorted(decode, reverse=True)


def test_sampler_is_seeded_and_temperature_scales_the_logps(tiny_policy):
    model, tok = tiny_policy
    a = sample_completions(model, tok, ["say abc"] * 4, max_new_tokens=5, seed=3)
    b = sample_completions(model, tok, ["say abc"] * 4, max_new_tokens=5, seed=3)
    assert a.texts == b.texts and a.logps == b.logps
    hot = sample_completions(model, tok, ["say abc"] * 4, max_new_tokens=5, seed=3, temperature=2.0)
    assert hot.logps != a.logps
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sample_completions(model, tok, ["x"], temperature=0.0)


# --------------------------------------------------------------------------------------------------------------------
# The callback in a plain GRPOTrainer run
# --------------------------------------------------------------------------------------------------------------------


def _gold(completions, target, **kwargs):
    """A gold function with a column: 1 when the completion contains the row's target letter."""
    return [float(t in (c if isinstance(c, str) else c[-1]["content"])) for c, t in zip(completions, target)]


def _length_rm(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]


def _grpo(tmp_path, model_dir, peft=None, **overrides):
    base = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, max_completion_length=5,
                max_steps=4, learning_rate=0.05, beta=0.1, bf16=False, report_to=[], save_strategy="no",
                logging_steps=1, seed=0, disable_tqdm=True)
    base.update(overrides)
    train = Dataset.from_list([{"prompt": f"say {w}"} for w in ["abc", "dog", "cat", "zoo"] * 4])
    return trl_ext.GRPOTrainer(model_dir, reward_funcs=reward_a, args=trl_ext.GRPOConfig(**base),
                               train_dataset=train, peft_config=peft)


HELD_OUT = Dataset.from_list([{"prompt": f"say {w} now", "target": w[0]} for w in ["ant", "bee", "cow", "elk", "fox"]])


def test_judge_metrics_are_logged_at_judge_every(tiny_llama_causal_dir, tmp_path):
    trainer = _grpo(tmp_path, tiny_llama_causal_dir)
    judge = JudgeCallback(trainer, gold=_gold, reward_model=_length_rm, eval_dataset=HELD_OUT, judge_every=2,
                          num_samples=3)
    trainer.add_callback(judge)
    trainer.train()
    rows = [row for row in trainer.state.log_history if "judge/gold" in row]
    assert [row["step"] for row in rows] == [0, 2, 4]  # start, every 2 steps, and the end (not twice)
    for row in rows:
        assert {"judge/gold", "judge/gold_ci95", "judge/rm", "judge/kl", "judge/onpolicy_pairs"} <= row.keys()
        assert 0.0 <= row["judge/gold"] <= 1.0 and row["judge/rm"] >= 0.0
    assert rows[0]["judge/kl"] == pytest.approx(0.0, abs=1e-5)  # the starting policy is its reference
    assert [p["step"] for p in judge.points] == [0, 2, 4]
    # TRL's own per-step metrics are still logged at every logging step (the judge did not flush them)
    assert sum("reward" in row for row in trainer.state.log_history) == 4


def test_judge_at_start_false_skips_the_starting_point(tiny_llama_causal_dir, tmp_path):
    trainer = _grpo(tmp_path, tiny_llama_causal_dir)
    judge = JudgeCallback(trainer, gold=_gold, eval_dataset=HELD_OUT, judge_every=2, judge_at_start=False)
    trainer.add_callback(judge)
    trainer.train()
    assert [p["step"] for p in judge.points] == [2, 4]
    assert [row["step"] for row in trainer.state.log_history if "judge/gold" in row] == [2, 4]


def test_kl_budget_saves_the_best_checkpoint_within_it(tiny_llama_causal_dir, tmp_path):
    from peft import LoraConfig

    peft = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = _grpo(tmp_path / "run", tiny_llama_causal_dir, peft=peft, max_steps=2)
    best = tmp_path / "best"
    judge = JudgeCallback(trainer, gold=_gold, reward_model=_length_rm, eval_dataset=HELD_OUT, judge_every=1,
                          kl_budget=1e6, best_model_dir=str(best))
    trainer.add_callback(judge)
    trainer.train()
    assert judge.points[0]["kl"] == 0.0  # PEFT: the reference is the policy with its adapter off, exactly
    top = max(p["rm"] for p in judge.points)  # all within the budget: the highest learned reward, the later on a tie
    assert judge.best["step"] == max(p["step"] for p in judge.points if p["rm"] == top)
    assert (best / "adapter_config.json").exists()


def test_checkpoint_choice_with_judgements_lacking_a_learned_reward(tiny_llama_causal_dir, tmp_path, monkeypatch):
    """A starting point given without a learned reward (or a judgement without one) must not break the choice
    (comparing a number with None raised TypeError): a measured reward beats none, a point without one never
    displaces a measured best, and the KL budget still excludes points beyond it."""
    from peft import LoraConfig

    peft = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = _grpo(tmp_path / "run", tiny_llama_causal_dir, peft=peft, max_steps=1)
    judge = JudgeCallback(trainer, gold=_gold, reward_model=_length_rm, eval_dataset=HELD_OUT, judge_every=1,
                          kl_budget=1.0, best_model_dir=str(tmp_path / "best"))
    saved = []
    monkeypatch.setattr(trainer, "save_model", lambda path: saved.append(path))
    judge.best = {"step": 0, "gold": 0.2, "rm": None, "kl": 0.0}  # e.g. the SFT point, judged without the RM
    judge._maybe_save_best({"step": 2, "gold": 0.3, "rm": 1.5, "kl": 0.4})
    assert judge.best["step"] == 2 and saved == [str(tmp_path / "best")]
    judge._maybe_save_best({"step": 3, "gold": 0.9, "kl": 0.5})  # no learned reward: keeps the measured best
    judge._maybe_save_best({"step": 4, "gold": 0.9, "rm": 9.0, "kl": 1.5})  # beyond the budget
    assert judge.best["step"] == 2 and len(saved) == 1
    judge._maybe_save_best({"step": 5, "gold": 0.1, "rm": 2.0, "kl": 0.9})  # higher reward within the budget
    assert judge.best["step"] == 5 and len(saved) == 2
    without_rm = JudgeCallback(trainer, gold=_gold, eval_dataset=HELD_OUT, judge_every=1, kl_budget=1.0,
                               best_model_dir=str(tmp_path / "best"))
    for step in (1, 2):  # no reward model: the latest judgement within the budget
        without_rm._maybe_save_best({"step": step, "gold": 0.5, "kl": 0.1})
    assert without_rm.best["step"] == 2


def test_bad_callback_arguments_are_refused(tiny_llama_causal_dir, tmp_path):
    trainer = _grpo(tmp_path, tiny_llama_causal_dir, max_steps=1)
    with pytest.raises(ValueError, match="needs held-out prompts"):
        JudgeCallback(trainer, gold=_gold, judge_every=1)
    with pytest.raises(ValueError, match="judge_every must be an integer >= 1"):
        JudgeCallback(trainer, gold=_gold, eval_dataset=HELD_OUT)
    with pytest.raises(ValueError, match="has no 'prompt' column"):
        JudgeCallback(trainer, gold=_gold, eval_dataset=HELD_OUT.rename_column("prompt", "q"), judge_every=1)
    with pytest.raises(ValueError, match="kl_budget and best_model_dir go together"):
        JudgeCallback(trainer, gold=_gold, eval_dataset=HELD_OUT, judge_every=1, kl_budget=1.0)
    with pytest.raises(ValueError, match="kl_budget needs the KL to the reference"):  # beta 0, no PEFT: no reference
        JudgeCallback(_grpo(tmp_path, tiny_llama_causal_dir, beta=0.0, max_steps=1), gold=_gold,
                      eval_dataset=HELD_OUT, judge_every=1, kl_budget=1.0, best_model_dir=str(tmp_path / "b"))


def test_a_gold_function_returning_none_names_the_completion(tiny_llama_causal_dir, tmp_path):
    trainer = _grpo(tmp_path, tiny_llama_causal_dir, max_steps=1)
    judge = JudgeCallback(trainer, gold=lambda completions, **kw: [None] * len(completions), eval_dataset=HELD_OUT,
                          judge_every=1)
    with pytest.raises(ValueError, match="gold function '<lambda>' returned None for completion 0"):
        judge.judge()
