# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Figures of the RLHF pipeline recipe (SFT -> reward model -> PPO against it, judged by the exact answer).

    python benchmarks/rlhf_pipeline.py                          # runs `accelerate launch recipes/rlhf_pipeline.py`
    python benchmarks/rlhf_pipeline.py -- --rl grpo             # anything after `--` goes to the recipe
    python benchmarks/rlhf_pipeline.py --from_dir outputs/rlhf_pipeline   # report a finished run instead

Reads the recipe's `pipeline.json` and `over_optimisation.png` and writes `rlhf_pipeline.json` (device, versions,
command, every figure), `rlhf_pipeline.md` (wall-clock per stage, the reward model's held-out metrics, and learned
reward / KL / true score at every judgement of each RL run) and `rlhf_pipeline.png` (the over-optimisation plot).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `benchmarks.common`

from benchmarks.common import REPO_ROOT, RESULTS_CPU, environment  # noqa: E402

RECIPE = "recipes/rlhf_pipeline.py"


def markdown(figures: dict, command: str) -> str:
    """The report's Markdown: one table per part of the pipeline."""
    seconds = figures.get("seconds", {})
    lines = ["# RLHF pipeline: SFT -> reward model -> RL against it", "",
             "| stage | wall-clock s |", "|---|---|"]
    lines += [f"| {name} | {value:.0f} |" for name, value in seconds.items()]
    lines.append(f"| total | {sum(seconds.values()):.0f} |")
    if "sft" in figures:
        sft = figures["sft"]
        lines += ["", f"SFT ({sft['examples']} examples): held-out true score {sft['base']['true_score']:.3f} -> "
                      f"{sft['after']['true_score']:.3f}."]
    if "rm" in figures:
        rm = figures["rm"]
        lines += ["", f"Reward model, {rm['heldout_groups']} held-out ranked groups:", "",
                  "| metric | before | after |", "|---|---|---|"]
        lines += [f"| {k} | {v['before']:.3f} | {v['after']:.3f} |" for k, v in rm.items()
                  if isinstance(v, dict) and v.get("after") is not None]
    for mode, run in figures.get("rl", {}).items():
        lines += ["", f"RL `{mode}` ({run['algo']}, β {run['beta_start']} -> {run['beta_end']:.4g}, KL target "
                      f"{run['kl_target']}, rewards {', '.join(run['reward_funcs'])}):", "",
                  "| step | learned reward | KL (nats / completion) | true score | β |", "|---|---|---|---|---|"]
        for p in run["points"]:
            lines.append(f"| {p['step']} | {p.get('learned_reward', float('nan')):.3f} | {p['kl']:.3f} | "
                         f"{p['true_score']:.3f} | {p.get('beta', float('nan')):.4g} |")
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def main() -> None:
    argv = sys.argv[1:]
    recipe_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from_dir", default=None, help="A finished run's output_dir: report it, run nothing.")
    parser.add_argument("--out", default=str(RESULTS_CPU))
    args = parser.parse_args(own)
    command = " ".join(["accelerate launch", RECIPE, *recipe_args])
    if args.from_dir:
        run_dir = Path(args.from_dir)
    else:
        run_dir = Path(tempfile.mkdtemp(prefix="rlhf_pipeline_"))
        subprocess.run(["accelerate", "launch", RECIPE, *recipe_args, "--output_dir", str(run_dir)],
                       cwd=REPO_ROOT, check=True)
    figures = json.loads((run_dir / "pipeline.json").read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {**environment(command), **figures}
    (out / "rlhf_pipeline.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "rlhf_pipeline.md").write_text(markdown(figures, command))
    if (run_dir / "over_optimisation.png").exists():
        shutil.copyfile(run_dir / "over_optimisation.png", out / "rlhf_pipeline.png")
    print((out / "rlhf_pipeline.md").read_text())


if __name__ == "__main__":
    main()
