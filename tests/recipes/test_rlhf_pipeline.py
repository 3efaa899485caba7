"""recipes/rlhf_pipeline.py on tiny models: all stages end to end (each artefact written and reloaded by the next),
the diagnosis (best-of-n, on-policy RM accuracy, gold-reward RL, the RM formatting check), the KL-budget checkpoint,
the --stages resume path, options checked before any model loads, the ground truth kept out of training, and the r1
order."""

from __future__ import annotations

import json
import math
import sys

import pytest

from tests.helpers import REPO_ROOT
from tests.helpers import run_script as _run

RECIPE = str(REPO_ROOT / "recipes" / "rlhf_pipeline.py")
TINY = ["--dtype", "float32", "--max_train_samples", "16", "--judge_prompts", "4", "--judge_every", "1",
        "--judge_samples", "2", "--best_of_n", "1,2,4", "--kl_budget", "1e6",
        "--judge_max_new_tokens", "4", "--sft.max_steps", "2", "--rm.max_steps", "2", "--ppo.max_steps", "2",
        "--ppo.max_completion_length", "4", "--ppo.logging_steps", "1", "--grpo.max_steps", "1",
        "--grpo.max_completion_length", "4", "--max_eval_samples", "4", "--rm_policy_samples", "2"]


def _tiny(policy, encoder, out, *extra):
    return [sys.executable, RECIPE, "--model_name_or_path", policy, "--rm_model", encoder, "--output_dir", str(out),
            *TINY, *extra]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, tiny_llama_causal_dir, tiny_bert_dir):
    out = tmp_path_factory.mktemp("pipeline")
    proc = _run(_tiny(tiny_llama_causal_dir, tiny_bert_dir, out), cwd=out)
    return out, proc


def test_all_stages_write_their_artefacts_and_figures(pipeline_run):
    out, proc = pipeline_run
    assert (out / "sft" / "adapter_config.json").exists()
    assert (out / "rm" / "config.json").exists() and (out / "rm" / "tokenizer_config.json").exists()
    for mode in ("fixed", "adaptive"):
        assert (out / f"rl_{mode}" / "adapter_config.json").exists()
        assert (out / f"rl_{mode}" / "value_head.safetensors").exists()
    assert (out / "over_optimisation.png").stat().st_size > 0
    results = json.loads((out / "pipeline.json").read_text())
    assert set(results["seconds"]) == set(results["load_average"]) == {"sft", "rm", "diagnose", "rl_fixed",
                                                                       "rl_adaptive"}
    assert results["judge_prompts"] == 4 and results["sft"]["judge"]["samples"] == 2
    assert results["rm"]["accuracy"]["after"] is not None and results["rm"]["rm/kendall_tau"]["after"] is not None
    for mode in ("fixed", "adaptive"):
        run = results["rl"][mode]
        assert run["kl_control"] == mode and run["steps"] == 2
        steps = [p["step"] for p in run["points"]]
        assert steps == [0, 1, 2]  # the SFT policy, every judge_every=1 steps, and the end (not twice)
        # step 0 is the SFT policy as the diagnosis measured it (every sample of every held-out prompt)
        assert run["points"][0]["true_score"] == results["diagnose"]["best_of_n"][0]["true_score"]
        assert run["points"][0]["source"] == "diagnose: 4 samples per prompt" and run["points"][0]["kl"] == 0.0
        for point in run["points"]:
            assert {"learned_reward", "kl", "true_score", "true_score_ci95"} <= point.keys()
            assert 0.0 <= point["true_score"] <= 1.0 and point["true_score_ci95"] >= 0.0
        assert abs(run["points"][1]["kl"]) < 50  # judged against the frozen SFT reference
        # the chosen checkpoint: the highest learned reward within the KL budget (here every judgement), saved
        top = max(p["learned_reward"] for p in run["points"])
        assert run["chosen"]["learned_reward"] == top and run["kl_budget"] == 1e6
        if run["chosen"]["step"] > 0:
            assert (out / f"rl_{mode}" / "best" / "adapter_config.json").exists()
    assert results["rl"]["fixed"]["beta_end"] == results["rl"]["fixed"]["beta_start"]
    assert "reward model held-out accuracy" in proc.stdout and "  adaptive: learned_reward" in proc.stdout


def test_diagnosis_best_of_n_and_onpolicy_accuracy(pipeline_run):
    out, proc = pipeline_run
    diagnose = json.loads((out / "pipeline.json").read_text())["diagnose"]
    assert [row["n"] for row in diagnose["best_of_n"]] == [1, 2, 4] and diagnose["samples_per_prompt"] == 4
    for row in diagnose["best_of_n"]:
        assert row["kl"] == pytest.approx(math.log(row["n"]) - (row["n"] - 1) / row["n"])
        assert 0.0 <= row["true_score"] <= 1.0
    rm = [row["learned_reward"] for row in diagnose["best_of_n"]]
    assert rm == sorted(rm)  # the RM's own score of its pick can only grow with n
    assert diagnose["onpolicy_pairs"] >= 0 and (diagnose["onpolicy_pairs"] == 0 or
                                                0.0 <= diagnose["onpolicy_rm_accuracy"] <= 1.0)
    assert "best-of-4: KL 0.636" in proc.stdout and "on-policy RM accuracy" in proc.stdout


def test_rm_scoring_encodes_what_rm_training_saw(tmp_path, tiny_llama_causal_dir, tiny_bert_dir):
    """The formatting check: with a max_length that truncates every prompt, RL's TextRewardModel must cut the same
    tokens as RewardTrainer did (it takes RM training's max_length), or the RM scores inputs it never saw."""
    out = tmp_path / "fmt"
    _run(_tiny(tiny_llama_causal_dir, tiny_bert_dir, out, "--stages", "rm", "--rm.max_length", "12",
               "--rm_policy_samples", "0"), cwd=tmp_path)
    check = json.loads((out / "pipeline.json").read_text())["rm"]["format_check"]
    assert check["checked"] == 16 * 4 and check["identical"] == check["checked"], check


class _FakeSamples:
    def __init__(self, texts):
        self.texts = texts


def _fake_policy_samples(monkeypatch, pipeline, texts_for):
    """Replace the SFT policy and its sampler: each prompt's samples come from `texts_for(prompt text)`; returns
    the prompts the sampler was asked for."""
    import torch

    import trl_ext.trainer.judge_callback as judge_callback

    asked = []

    def sample(model, tokenizer, prompts, *, num_samples, **kwargs):
        asked.extend(prompts)
        return _FakeSamples([t for p in prompts for t in texts_for(p[0]["content"])[:num_samples]])

    monkeypatch.setattr(judge_callback, "sample_completions", sample)
    monkeypatch.setattr(pipeline, "_policy", lambda ctx, config, adapter: (torch.nn.Linear(1, 1), None, None))
    return asked


def _context(tmp_path, tiny_llama_causal_dir, tiny_bert_dir, *extra):
    sys.path.insert(0, str(REPO_ROOT / "recipes"))
    import rlhf_pipeline as pipeline

    out = tmp_path / "out"
    args, model_args, configs = pipeline.parse_pipeline(_tiny(tiny_llama_causal_dir, tiny_bert_dir, out, *extra)[2:])
    splits = pipeline.load_splits(args, pipeline.DEFAULT_DATA, 42)
    (out / "sft").mkdir(parents=True)
    (out / "sft" / "adapter_config.json").write_text("{}")  # the sampler is replaced: only its presence matters
    return pipeline, pipeline.Context(args, model_args, configs, splits, out, {}, 42)


def test_rm_learns_from_the_sft_policys_own_samples_ranked_by_the_training_answer(
        monkeypatch, tmp_path, tiny_llama_causal_dir, tiny_bert_dir):
    """--rm_policy_samples: the SFT policy's samples on the training prompts (never the held-out ones), right
    above wrong by the training answer, join the RM's training groups; all-right / all-wrong prompts are left out."""
    pipeline, ctx = _context(tmp_path, tiny_llama_causal_dir, tiny_bert_dir, "--rm_policy_samples", "3")
    from trl_ext.rewards.maths import prompt_answer_dataset

    train = prompt_answer_dataset(ctx.splits["train"])
    answers = {p[0]["content"]: a for p, a in zip(train["prompt"], train["answer"])}
    # prompt i: i % 3 == 0 all right, i % 3 == 1 one right of three, i % 3 == 2 all wrong
    kinds = {p[0]["content"]: i % 3 for i, p in enumerate(train["prompt"])}

    def texts_for(question):
        right, wrong = f"x = {answers[question]}.", f"x = {answers[question]}1."
        return {0: [right] * 3, 1: [wrong, right, wrong], 2: [wrong] * 3}[kinds[question]]

    asked = _fake_policy_samples(monkeypatch, pipeline, texts_for)
    groups, counts = pipeline.policy_sample_groups(ctx, ctx.configs["sft"])
    held_out = {p[0]["content"] for p in ctx.held_out()[0]}
    assert [p[0]["content"] for p in asked] == list(answers) and not held_out & set(answers)
    mixed = [q for q, k in kinds.items() if k == 1]
    assert [g["prompt"][0]["content"] for g in groups] == mixed and all(g["ranks"] == [1, 0, 1] for g in groups)
    assert counts == {"per_prompt": 3, "prompts": 16, "groups": len(mixed), "all_tied": 16 - len(mixed),
                      "right": pytest.approx((6 * 3 + 5) / 48)}
    assert groups[0]["completions"][1] == [{"role": "assistant", "content": texts_for(mixed[0])[1]}]

    pipeline.stage_rm(ctx)  # the RM trains on both; RL's scorer encodes every training completion as training did
    rm = ctx.results["rm"]
    assert rm["policy_samples"] == counts and rm["train_groups"] == 16
    assert rm["format_check"]["checked"] == 16 * 4 + 3 * len(mixed) == rm["format_check"]["identical"]


def test_policy_sample_rows_take_the_ranked_datas_columns():
    sys.path.insert(0, str(REPO_ROOT / "recipes"))
    from rlhf_pipeline import as_data_rows

    from trl_ext.data import validate_ranked_example

    group = {"prompt": [{"role": "user", "content": "What is 2 + 2?"}],
             "completions": [[{"role": "assistant", "content": t}] for t in ("5.", "4.", "3.")], "ranks": [1, 0, 1]}
    (ranked,) = as_data_rows([group], ["prompt", "completions", "ranks", "split"])
    assert ranked == {**group, "split": None}
    (scored,) = as_data_rows([group], ["prompt", "completions", "scores"])
    assert scored["scores"] == [0.0, 1.0, 0.0] and "ranks" not in scored
    assert validate_ranked_example(scored, 0) == [1, 0, 1]  # the right answer above both wrong ones


def test_goals_read_from_the_figures():
    sys.path.insert(0, str(REPO_ROOT / "recipes"))
    from rlhf_pipeline import goals

    sft = {"step": 0, "true_score": 0.332, "true_score_ci95": 0.031}
    figures = {"rl": {"fixed": {"points": [sft], "chosen": {"step": 12, "kl": 1.66, "true_score": 0.52,
                                                            "true_score_ci95": 0.061}},
                      "adaptive": {"points": [sft], "chosen": {"step": 6, "kl": 0.9, "true_score": 0.42,
                                                               "true_score_ci95": 0.06}}},
               "diagnose": {"best_of_n": [{"n": 1, **sft}, {"n": 16, "true_score": 0.379, "true_score_ci95": 0.06}]}}
    out = goals(figures)
    assert out["rl_fixed"]["met"] and out["rl_fixed"]["intervals_apart"]
    assert out["rl_fixed"]["gain"] == pytest.approx(0.188)
    assert not out["rl_adaptive"]["met"] and not out["rl_adaptive"]["intervals_apart"]  # +0.088, overlapping
    assert out["best_of_n"]["met"] and not out["best_of_n"]["intervals_apart"]  # above SFT as a point only
    figures["diagnose"]["best_of_n"][1].update(true_score=0.45, true_score_ci95=0.05)
    assert goals(figures)["best_of_n"]["intervals_apart"]
    figures["diagnose"]["best_of_n"][1]["true_score"] = 0.30
    assert not goals(figures)["best_of_n"]["met"]


def test_rm_policy_samples_need_the_sft_adapter_or_zero(tmp_path, tiny_llama_causal_dir, tiny_bert_dir):
    proc = _run(_tiny(tiny_llama_causal_dir, tiny_bert_dir, tmp_path / "o", "--stages", "rm"), cwd=tmp_path,
                check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "stage rm needs the SFT adapter (--rm_policy_samples 2 samples the SFT policy; 0: the ranked data " \
        "alone)" in proc.stderr


def test_the_reward_head_is_seeded(tmp_path, tiny_llama_causal_dir, tiny_bert_dir):
    """RewardTrainer builds the head before the Trainer seeds: the stage seeds first, so a rerun is the same RM."""
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        _run(_tiny(tiny_llama_causal_dir, tiny_bert_dir, out, "--stages", "rm", "--rm_policy_samples", "0"),
             cwd=tmp_path)
        runs.append((out / "rm" / "model.safetensors").read_bytes())
    assert runs[0] == runs[1]


def test_rm_format_check_reports_a_difference(tiny_bert_dir):
    from datasets import Dataset

    sys.path.insert(0, str(REPO_ROOT / "recipes"))
    from rlhf_pipeline import rm_format_check

    from trl_ext import RewardConfig, RewardTrainer, TextRewardModel

    groups = Dataset.from_list([{"prompt": [{"role": "user", "content": "What is 7 + 5 and a long tail of words?"}],
                                 "completions": [[{"role": "assistant", "content": "7 + 5 = 12."}],
                                                 [{"role": "assistant", "content": "I don't know."}]],
                                 "ranks": [0, 1]}] * 2)
    args = RewardConfig(output_dir="unused", max_length=12, bf16=False, report_to=[], reward_head="cls")
    trainer = RewardTrainer(tiny_bert_dir, args=args, train_dataset=groups)
    scorer = TextRewardModel(trainer.model, trainer.processing_class)  # default max_length: longer than training's
    check = rm_format_check(trainer, groups, scorer)
    assert check["checked"] == 4 and check["identical"] == 0 and "group 0, completion 0" in check["first_difference"]
    same = rm_format_check(trainer, groups, TextRewardModel(trainer.model, trainer.processing_class, max_length=12))
    assert same["identical"] == same["checked"] == 4


def test_gold_reward_rl_is_the_upper_bound_run(pipeline_run, tiny_llama_causal_dir, tiny_bert_dir):
    out, _ = pipeline_run
    proc = _run(_tiny(tiny_llama_causal_dir, tiny_bert_dir, out, "--stages", "rl_gold", "--ppo.max_steps", "1"),
                cwd=out)
    results = json.loads((out / "pipeline.json").read_text())
    gold = results["rl_gold"]
    assert gold["reward_funcs"] == ["final_number_reward"] and "answer" in gold["train_columns"]
    assert gold["kl_control"] == "fixed" and gold["steps"] == 1 and [p["step"] for p in gold["points"]] == [0, 1]
    assert results["rl"]["fixed"]["reward_funcs"] == ["reward_model"]  # the rlhf runs keep the RM as their reward
    assert "=== stage rl_gold ===" in proc.stdout and "=== stage rl_fixed ===" not in proc.stdout
    # the report: the upper bound in its own table, its time outside the default run's total; the keys
    report = out / "report"
    _run([sys.executable, "-m", "benchmarks.rlhf_pipeline", "--from_dir", str(out), "--out", str(report)],
         cwd=REPO_ROOT)
    table = (report / "rlhf_pipeline.md").read_text()
    default = [results["seconds"][s] for s in ("sft", "rm", "diagnose", "rl_fixed", "rl_adaptive")]
    assert "| rl_gold (extra, not in the total) |" in table and f"| total | {sum(default):.0f} |" in table
    assert "Upper bound: RL `rl_gold` with the gold reward" in table
    own = results["rm"]["policy_samples"]
    assert f"{own['groups']} groups of the SFT policy's own samples ({own['per_prompt']} per training prompt" in table
    result = json.loads((report / "rlhf_pipeline.json").read_text())
    assert result["best_of_n"] == results["diagnose"]["best_of_n"] and result["judge_prompts"] == 4
    assert result["onpolicy_rm_accuracy"] == results["diagnose"]["onpolicy_rm_accuracy"] or \
        math.isnan(result["onpolicy_rm_accuracy"])
    assert result["torch_threads"] == results["torch_threads"] >= 1


def test_the_true_score_never_enters_training(pipeline_run):
    out, _ = pipeline_run
    results = json.loads((out / "pipeline.json").read_text())
    assert set(results["rl"]) == {"fixed", "adaptive"}  # (the gold-reward upper bound is kept apart: rl_gold)
    for run in results["rl"].values():
        assert run["reward_funcs"] == ["reward_model"]  # the learned RM only: no rule reward
        assert run["train_columns"] == ["prompt"]  # and no answer a reward could read


def test_stages_rerun_the_rl_stage_from_the_saved_sft_adapter_and_rm(pipeline_run, tiny_llama_causal_dir,
                                                                     tiny_bert_dir):
    out, _ = pipeline_run
    sft_mtime = (out / "sft" / "adapter_model.safetensors").stat().st_mtime
    proc = _run(_tiny(tiny_llama_causal_dir, tiny_bert_dir, out, "--stages", "rl", "--kl_control", "adaptive",
                      "--ppo.max_steps", "1"), cwd=out)
    assert "=== stage sft ===" not in proc.stdout and "=== stage rl_adaptive ===" in proc.stdout
    assert (out / "sft" / "adapter_model.safetensors").stat().st_mtime == sft_mtime
    results = json.loads((out / "pipeline.json").read_text())
    assert results["rl"]["adaptive"]["steps"] == 1 and "sft" in results["seconds"]  # earlier figures kept
    assert results["rl"]["fixed"]["steps"] == 2  # and the RL run not rerun stays in the report and the plot


def test_a_missing_stage_artefact_or_a_bad_option_is_one_line(tmp_path, tiny_llama_causal_dir, tiny_bert_dir):
    proc = _run(_tiny(tiny_llama_causal_dir, tiny_bert_dir, tmp_path / "empty", "--stages", "rl"), cwd=tmp_path,
                check=False)
    assert proc.returncode == 2 and "stage rl needs the SFT adapter" in proc.stderr
    assert "Traceback" not in proc.stderr
    # a bad option as the command line shows it (the other bad options: in-process, below)
    proc = _run(_tiny(tiny_llama_causal_dir, tiny_bert_dir, tmp_path / "x", "--ppo.max_stepz", "3"), cwd=tmp_path,
                check=False)
    last = proc.stderr.strip().splitlines()[-1]  # (bitsandbytes may print a kernels notice on import first)
    assert proc.returncode == 2 and last.startswith("rlhf_pipeline.py: error: ") and "unknown option --max_stepz" in \
        last, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()


@pytest.mark.parametrize("bad,message", [
    (["--stages", "sft,ppo"], "not a stage of the rlhf pipeline"),
    (["--nope.lr", "1"], "unknown option section --nope."),
    (["--stages", ""], "--stages '': name the stages to run"),
    (["--stages", "sft,,rm"], "name the stages to run"),
    (["--stages", "sft,sft"], "['sft'] named twice"),
    (["--best_of_n", "1,x"], "--best_of_n '1,x': comma-separated integers"),
    (["--kl_budget", "nan"], "--kl_budget nan: must be a finite number"),
    (["--rm_policy_samples", "-1"], "--rm_policy_samples -1: must be >= 0"),
    # the horizon is used only by the adaptive run: checked as that run will run, before any model loads
    (["--ppo.kl_horizon", "0"], "section 'ppo' (run rl_adaptive): "),
    (["--ppo.kl_horizon", "3"], "kl_horizon=3 is too short for 16 sequences per update"),
    (["--kl_control", "adaptive", "--ppo.beta", "0"], "needs beta > 0"),
    (["--pipeline", "r1", "--grpo.reward_weights", "1"], "reward_weights=[1.0]: the grpo_rules run has 2 reward "),
])
def test_options_are_refused_before_any_model_loads(bad, message, tmp_path, capsys, tiny_llama_causal_dir,
                                                     tiny_bert_dir):
    sys.path.insert(0, str(REPO_ROOT / "recipes"))
    from rlhf_pipeline import parse_pipeline

    argv = _tiny(tiny_llama_causal_dir, tiny_bert_dir, tmp_path / "x", *bad)[2:]
    with pytest.raises(SystemExit) as exit_info:
        parse_pipeline(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "x").exists()  # nothing ran


def test_r1_order_runs_every_stage(tmp_path, tiny_llama_causal_dir, tiny_bert_dir):
    out = tmp_path / "r1"
    proc = _run(_tiny(tiny_llama_causal_dir, tiny_bert_dir, out, "--pipeline", "r1", "--rejection_samples", "2"),
                cwd=tmp_path)
    results = json.loads((out / "pipeline.json").read_text())
    assert list(results["seconds"]) == ["sft", "rm", "grpo_rules", "rejection_sft", "grpo_rm"]
    assert results["r1"]["grpo_rules"]["reward_funcs"] == ["final_number_reward", "format_reward"]
    assert results["r1"]["grpo_rm"]["reward_funcs"] == ["final_number_reward", "format_reward", "reward_model"]
    assert results["r1"]["rejection_sft"]["samples"] == 32
    assert (out / "grpo_rm" / "adapter_config.json").exists()
    assert "rejection sampling: kept" in proc.stdout
