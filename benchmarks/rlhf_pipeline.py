# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Figures of the RLHF pipeline recipe (SFT -> reward model -> diagnosis -> PPO against it, judged by the exact
answer).

    python -m benchmarks.rlhf_pipeline                          # runs `accelerate launch recipes/rlhf_pipeline.py`
    python -m benchmarks.rlhf_pipeline -- --rl grpo             # anything after `--` goes to the recipe
    python -m benchmarks.rlhf_pipeline --from_dir outputs/rlhf_pipeline   # report a finished run instead
    python -m benchmarks.rlhf_pipeline --from_dir outputs/rlhf_pipeline \
        --also "r1=outputs/rlhf_pipeline_r1=accelerate launch recipes/rlhf_pipeline.py --pipeline r1 ..."

Reads the recipe's `pipeline.json` and writes, from it alone, `rlhf_pipeline.json` (device, versions, command, every
figure and the goals), `rlhf_pipeline.md` (wall-clock and load average per stage, the reward model's held-out metrics
and formatting check, the diagnosis: best-of-n and on-policy RM accuracy, true score / learned reward / KL at every
judgement of each RL run with its chosen checkpoint, the gold-reward upper bound, the r1 order's stages, the goals)
and `rlhf_pipeline.png` (true score and learned reward against sqrt(KL), Gao et al. 2022's figure). `--also
NAME=DIR=COMMAND` adds another run of the recipe (e.g. `--pipeline r1`, or other settings) to the same files: its
figures under `also.NAME` in the JSON and its tables in a section of the Markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import REPO_ROOT, RESULTS_CPU, environment, load_recipe

RECIPE = "recipes/rlhf_pipeline.py"


def _recipe():
    return load_recipe("rlhf_pipeline")


def _f(value, spec: str = ".3f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _score(figures: dict) -> str:
    return f"{_f(figures.get('true_score'))} ± {_f(figures.get('true_score_ci95'))}"


def _run_table(name: str, run: dict) -> list[str]:
    lines = ["", f"{name} ({run['algo']}, β {run['beta_start']} -> {run['beta_end']:.4g}, KL target "
                 f"{run['kl_target']}, rewards {', '.join(run['reward_funcs'])}):", "",
             "| step | learned reward | KL (nats / completion) | true score | β | 95 % interval ± |",
             "|---|---|---|---|---|---|"]
    for p in run["points"]:
        lines.append(f"| {p['step']} | {_f(p.get('learned_reward'))} | {_f(p.get('kl'))} | {_f(p['true_score'])} | "
                     f"{_f(p.get('beta'), '.4g')} | {_f(p.get('true_score_ci95'))} |")
    chosen = run.get("chosen") or {}
    if "true_score" in chosen:
        lines += ["", f"Chosen checkpoint (highest learned reward within the KL budget of {run['kl_budget']:.2f} "
                      f"nats): step {chosen['step']}, KL {_f(chosen.get('kl'))}, true score {_score(chosen)}."]
    return lines


def markdown(figures: dict, command: str) -> str:
    """The report's Markdown: one table per part of the pipeline."""
    seconds, cpu, load = figures.get("seconds", {}), figures.get("cpu_seconds", {}), figures.get("load_average", {})
    lines = ["# RLHF pipeline: SFT -> reward model -> RL against it", ""]
    if "judge_prompts" in figures:
        lines += [f"Every judgement: {figures['judge_prompts']} held-out prompts (questions never trained on); true "
                  "score = share of exact answers, with the half-width of its 95 % interval over prompts.", ""]
    lines += ["| stage | wall-clock s | CPU s | load average (1 / 5 / 15 min, at the end) |", "|---|---|---|---|"]
    extra = set(_recipe().EXTRA_STAGES.get(figures.get("pipeline", "rlhf"), ()))  # not in the default run
    lines += [f"| {name}{' (extra, not in the total)' if name in extra else ''} | {value:.0f} | "
              f"{_f(cpu.get(name), '.0f')} | {' / '.join(f'{x:.2f}' for x in load.get(name, [])) or '-'} |"
              for name, value in seconds.items()]
    default_cpu = [v for k, v in cpu.items() if k not in extra]
    lines.append(f"| total | {sum(v for k, v in seconds.items() if k not in extra):.0f} | "
                 f"{_f(sum(default_cpu) if default_cpu else None, '.0f')} | |")
    if "torch_threads" in figures:
        lines += ["", f"torch threads in the recipe's process: {figures['torch_threads']} (CPU s: the process's CPU "
                      "time, all its threads)."]
    if "sft" in figures:
        sft = figures["sft"]
        base = f"{sft['base']['true_score']:.3f} -> " if "base" in sft else ""
        lines += ["", f"SFT ({sft['examples']} examples): held-out true score {base}{sft['after']['true_score']:.3f}"
                      + (f" ± {_f(sft['after'].get('true_score_ci95'))}." if "true_score_ci95" in sft["after"]
                         else ".")]
    if "rm" in figures:
        rm = figures["rm"]
        own = rm.get("policy_samples")
        if own:
            lines += ["", f"Reward-model data: {rm['train_groups']} ranked groups and {own['groups']} groups of the "
                          f"SFT policy's own samples ({own['per_prompt']} per training prompt, ranked by the training "
                          f"answer; {own['right']:.3f} of them right; {own['all_tied']} of {own['prompts']} prompts "
                          "left out, their samples all right or all wrong)."]
        lines += ["", f"Reward model, {rm['heldout_groups']} held-out ranked groups:", "",
                  "| metric | before | after |", "|---|---|---|"]
        lines += [f"| {k} | {v['before']:.3f} | {v['after']:.3f} |" for k, v in rm.items()
                  if isinstance(v, dict) and v.get("after") is not None and "before" in v]
        check = rm.get("format_check")
        if check:
            lines += ["", f"Formatting check: the RL stage's `TextRewardModel` encodes {check['identical']} of "
                          f"{check['checked']} training completions to the token ids RM training used"
                      + (f" (first difference: {check['first_difference']})." if check.get("first_difference")
                         else ".")]
    if "diagnose" in figures:
        d = figures["diagnose"]
        lines += ["", f"Diagnosis on the SFT policy ({d['prompts']} held-out prompts x {d['samples_per_prompt']} "
                      "samples): best-of-n with the learned RM (exact estimator), KL = log n - (n-1)/n.", "",
                  "| n | KL (nats) | sqrt KL | true score | 95 % interval ± | learned reward |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['n']} | {r['kl']:.3f} | {math.sqrt(r['kl']):.3f} | {r['true_score']:.3f} | "
                  f"{r['true_score_ci95']:.3f} | {r['learned_reward']:.3f} |" for r in d["best_of_n"]]
        lines += ["", f"On-policy RM accuracy: {_f(d['onpolicy_rm_accuracy'])} over {d['onpolicy_pairs']} pairs of "
                      "one prompt's SFT samples whose true scores differ (the RM's held-out accuracy on the ranked "
                      f"data: {_f(figures.get('rm', {}).get('accuracy', {}).get('after'))}). "
                      f"{d['answer_format_rate']:.1%} of the samples are in the answer format (`a + b = c.`); of "
                      f"those, {_f(d.get('true_score_in_format'))} are exact."]
    for mode, run in figures.get("rl", {}).items():
        lines += _run_table(f"RL `{mode}` against the learned RM", run)
    if "rl_gold" in figures:
        lines += _run_table("Upper bound: RL `rl_gold` with the gold reward (same settings, fixed β)",
                            figures["rl_gold"])
    r1 = figures.get("r1", {})
    if r1:
        lines += ["", "DeepSeek-R1's order (`--pipeline r1`): true score after each stage.", "",
                  "| stage | true score | 95 % interval ± | learned reward |", "|---|---|---|---|"]
        if "sft" in figures and figures.get("pipeline") == "r1":
            lines.append(f"| sft (cold start) | {_f(figures['sft']['after']['true_score'])} | "
                         f"{_f(figures['sft']['after'].get('true_score_ci95'))} | "
                         f"{_f(figures['sft']['after'].get('learned_reward'))} |")
        for name, run in r1.items():
            end = run["after"] if "after" in run else run["points"][-1]
            lines.append(f"| {name} | {_f(end['true_score'])} | {_f(end.get('true_score_ci95'))} | "
                         f"{_f(end.get('learned_reward'))} |")
    goals = figures.get("goals") or {}
    if goals:
        lines += ["", "Goals:", ""]
        for name, g in goals.items():
            if name == "best_of_n":
                apart = g.get("intervals_apart")
                lines.append(f"- best-of-{g['n']} above SFT: {g['best']:.3f} vs {g['sft']:.3f} "
                             f"({g['gain']:+.3f}"
                             + ("" if apart is None else f", intervals {'apart' if apart else 'overlap'}")
                             + f"): {'met' if g['met'] else 'NOT met'}")
            else:
                lines.append(f"- {name}: chosen step {g['chosen_step']} (KL {_f(g['chosen_kl'])}) true score "
                             f"{g['chosen']:.3f} ± {g['chosen_ci95']:.3f} vs SFT {g['sft']:.3f} ± "
                             f"{g['sft_ci95']:.3f} "
                             f"({g['gain']:+.3f}, intervals {'apart' if g['intervals_apart'] else 'overlap'}); "
                             f"SFT + 0.10 with the intervals apart: {'met' if g['met'] else 'NOT met'}")
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def main() -> None:
    argv = sys.argv[1:]
    recipe_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from_dir", default=None, help="A finished run's output_dir: report it, run nothing.")
    parser.add_argument("--command", default=None,
                        help="The recipe command the run directory came from (default: the default run's).")
    parser.add_argument("--also", action="append", default=[], metavar="NAME=DIR=COMMAND",
                        help="Another finished run of the recipe to report in the same files (repeatable).")
    parser.add_argument("--out", default=str(RESULTS_CPU))
    args = parser.parse_args(own)
    also = {}
    for item in args.also:
        name, _, rest = item.partition("=")
        folder, _, other_command = rest.partition("=")
        if not name or not folder or not other_command:
            parser.error(f"--also {item!r}: expected NAME=DIR=COMMAND")
        also[name] = {"command": other_command, **json.loads((Path(folder) / "pipeline.json").read_text())}
    command = args.command or " ".join(["accelerate launch", RECIPE, *recipe_args])
    if args.from_dir:
        run_dir = Path(args.from_dir)
    else:
        run_dir = Path(tempfile.mkdtemp(prefix="rlhf_pipeline_"))
        subprocess.run(["accelerate", "launch", RECIPE, *recipe_args, "--output_dir", str(run_dir)],
                       cwd=REPO_ROOT, check=True)
    figures = json.loads((run_dir / "pipeline.json").read_text())
    recipe = _recipe()
    figures["goals"] = recipe.goals(figures)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {**environment(command), **figures}
    if "diagnose" in figures:  # the issue's keys at the top level too
        result["best_of_n"] = figures["diagnose"]["best_of_n"]
        result["onpolicy_rm_accuracy"] = figures["diagnose"]["onpolicy_rm_accuracy"]
    text = markdown(figures, command)
    for name, other in also.items():
        other["goals"] = recipe.goals(other)
        body = markdown(other, other["command"]).split("\n", 2)[2]  # without the title
        text += f"\n## Also: {name}\n\n{body}"
    if also:
        result["also"] = also
    (out / "rlhf_pipeline.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "rlhf_pipeline.md").write_text(text)
    recipe.plot_figures(figures, out / "rlhf_pipeline.png")
    print((out / "rlhf_pipeline.md").read_text())


if __name__ == "__main__":
    main()
