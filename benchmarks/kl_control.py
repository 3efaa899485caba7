# Copyright 2026 The trl_ext authors. Apache-2.0.
"""GRPO or PPO on the real SmolLM2-135M-Instruct with adaptive vs fixed KL control: KL, β and reward per update.

    python -m benchmarks.kl_control --algo grpo --kl_control fixed    --steps 60 --out benchmarks/results/cpu
    python -m benchmarks.kl_control --algo grpo --kl_control adaptive --steps 60 --kl_target 0.1 --kl_horizon 16
    python -m benchmarks.kl_control --algo ppo  --kl_control adaptive --steps 80 --kl_target 1.0
    python -m benchmarks.kl_control --algo ppo --plot     # both runs' JSON -> ppo_kl_control.png / .md

Each run uses recipes/<algo>.py's defaults (LoRA, bundled arithmetic prompts, rule rewards) with `logging_steps=1`, and
writes `<algo>_kl_<mode>.json`: per KL measurement (GRPO: every step; PPO: every rollout) the KL in nats per
completion, β, reward; and the mean |KL/target − 1| over the second half of training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _device() -> str:
    import os

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "trl", "peft", "accelerate", "trl_ext")}


def run(args: argparse.Namespace) -> dict:
    from trl import ModelConfig, TrlParser

    from benchmarks.common import load_recipe
    from trl_ext import GRPOConfig, PPOConfig
    from trl_ext.scripts.utils import MathsRLScriptArguments, default_config_argv

    recipe = load_recipe(args.algo)
    # GRPO: completions per step = per-device batch; PPO: completions per rollout = batch x mini-batches
    per_device = args.completions_per_step // (args.ppo_mini_batches if args.algo == "ppo" else 1)

    argv = ["--kl_control", args.kl_control, "--kl_target", str(args.kl_target), "--kl_horizon", str(args.kl_horizon),
            "--kl_min_beta", str(args.kl_min_beta), "--kl_estimator", args.kl_estimator, "--per_device_train_batch_size", str(per_device), "--beta", str(args.beta), "--max_steps", str(args.steps), "--logging_steps", "1",
            "--learning_rate", str(args.learning_rate), "--max_eval_samples", str(args.eval_samples),
            "--output_dir", f"outputs/{args.algo}_kl_{args.kl_control}", "--seed", str(args.seed)]
    if args.algo == "ppo":
        argv += ["--steps_per_generation", str(args.ppo_mini_batches)]
    elif args.num_generations:
        argv += ["--num_generations", str(args.num_generations)]
    parser = TrlParser((MathsRLScriptArguments, PPOConfig if args.algo == "ppo" else GRPOConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config(
        args=default_config_argv(argv, recipe.DEFAULT_CONFIG))
    start = time.perf_counter()
    result = recipe.main(script_args, training_args, model_args)
    trainer = result["trainer"]
    rows = [r for r in trainer.state.log_history if "kl_ctl/kl" in r]
    def sampled_kl(r: dict) -> float | None:  # the trainer's sampled-token estimate, nats per completion
        if args.algo == "ppo":
            return r.get("objective/kl")
        return r["kl"] * r["completions/mean_length"] if "kl" in r and "completions/mean_length" in r else None

    steps = [{"step": r["step"], "kl": r["kl_ctl/kl"], "kl_sampled": sampled_kl(r), "beta": r["kl_ctl/beta"],
              "reward": r.get("reward"),
              "value_loss": r.get("ppo/value_loss"), "explained_variance": r.get("ppo/explained_variance"),
              "kl_token_mean": r.get("kl"), "completion_length": r.get("completions/mean_length")} for r in rows]
    second = steps[len(steps) // 2:]
    summary = {
        "algo": args.algo, "kl_control": args.kl_control, "kl_target": args.kl_target, "kl_target_unit": "sequence",
        "kl_horizon": args.kl_horizon, "kl_min_beta": args.kl_min_beta, "beta_start": args.beta, "learning_rate": args.learning_rate,
        "steps": args.steps, "completions_per_step": args.completions_per_step,
        "num_generations": training_args.num_generations, "wall_clock_s": round(time.perf_counter() - start, 1),
        "kl_estimator": args.kl_estimator,
        "mean_abs_rel_error_second_half": statistics.mean(abs(s["kl"] / args.kl_target - 1) for s in second),
        # the same run's KL as the sampled-token estimate measures it (what the controller sees with kl_estimator=sample)
        "mean_abs_rel_error_second_half_sampled_kl": statistics.mean(
            abs(s["kl_sampled"] / args.kl_target - 1) for s in second) if all(s["kl_sampled"] is not None for s in second) else None,
        "mean_kl_second_half": statistics.mean(s["kl"] for s in second),
        "mean_reward_first_quarter": statistics.mean(s["reward"] for s in steps[:max(1, len(steps) // 4)]),
        "mean_reward_last_quarter": statistics.mean(s["reward"] for s in steps[-max(1, len(steps) // 4):]),
        "accuracy_before": result["before"], "accuracy_after": result["after"],
        "model": "SmolLM2-135M-Instruct (real) + LoRA r=16", "device": _device(), "versions": _versions(),
        "command": "python -m benchmarks.kl_control "
        + " ".join(sys.argv[1:]), "per_step": steps,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.algo}_kl_{args.kl_control}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{args.kl_control}: mean |KL/target - 1| over the second half = "
          f"{summary['mean_abs_rel_error_second_half']:.3f}; beta {args.beta} -> {trainer.beta:.4g}")
    return summary


def plot(out: Path, algo: str, compare: tuple[str, ...] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {m: json.loads((out / f"{algo}_kl_{m}.json").read_text()) for m in ("adaptive", "fixed")
            if (out / f"{algo}_kl_{m}.json").exists()}
    for name in compare:  # earlier runs kept under their own names, e.g. the same settings with the sampled estimator
        runs[Path(name).stem.removeprefix(f"{algo}_kl_")] = json.loads((out / name).read_text())
    if not runs:
        raise SystemExit(f"no {algo}_kl_*.json in {out}")
    fig, (ax_kl, ax_beta, ax_reward) = plt.subplots(1, 3, figsize=(15, 5.5))
    for mode, run in runs.items():
        steps = [s["step"] for s in run["per_step"]]
        estimator = run.get("kl_estimator", "sample")
        error = run.get("mean_abs_rel_error_second_half")
        line, = ax_kl.plot(steps, [s["kl"] for s in run["per_step"]], label=f"{mode}, {estimator} KL, lr {run['learning_rate']:g} " + (
            f"(second-half |KL/target-1| {error:.3f})" if error is not None else f"(stopped at {run['stopped_at_step']})"))
        if estimator == "full" and error is not None and all(s.get("kl_sampled") is not None for s in run["per_step"]):
            ax_kl.plot(steps, [s["kl_sampled"] for s in run["per_step"]], color=line.get_color(), ls=":", lw=1,
                       label=f"{mode}, same rollouts, sampled KL ("
                             f"{run['mean_abs_rel_error_second_half_sampled_kl']:.3f})")
        ax_beta.plot(steps, [s["beta"] for s in run["per_step"]], label=mode)
        ax_reward.plot(steps, [s["reward"] for s in run["per_step"]], label=mode)
    target = next(iter(runs.values()))["kl_target"]
    ax_kl.axhline(target, color="k", ls="--", lw=1, label=f"target {target}")
    ax_kl.set(xlabel="optimizer step", ylabel="KL(pi || pi_ref), nats per completion", title="measured KL")
    ax_beta.set(xlabel="optimizer step", ylabel="beta", title="KL coefficient")
    ax_reward.set(xlabel="optimizer step", ylabel="mean reward of the rollout", title="reward")
    ax_reward.legend(fontsize=8)
    ax_kl.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))  # below the axes: no data hidden
    ax_beta.legend(fontsize=8)
    fig.suptitle(f"{algo.upper()}, SmolLM2-135M-Instruct + LoRA, bundled arithmetic prompts (CPU)")
    fig.tight_layout()
    fig.savefig(out / f"{algo}_kl_control.png", dpi=110)
    lines = ["| run | KL estimator | lr | target | horizon | β start -> end | mean KL, 2nd half | mean abs(KL/target - 1), 2nd half | "
             "greedy accuracy before -> after | wall-clock s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for mode, run in runs.items():
        # a fixed β ignores the horizon; printing the CLI default there reads as if it had been used
        horizon = "-" if run.get("kl_control") == "fixed" else run["kl_horizon"]
        if "mean_abs_rel_error_second_half" not in run:  # a run stopped by hand: only its rows were kept
            lines.append(f"| {mode} | {run.get('kl_estimator', 'sample')} | {run['learning_rate']:g} | {run['kl_target']} | {horizon} | "
                         f"{run['beta_start']} -> {run['per_step'][-1]['beta']:.4g} | stopped at step "
                         f"{run['stopped_at_step']} of {run['steps']} | | | |")
            continue
        lines.append(f"| {mode} | {run.get('kl_estimator', 'sample')} | {run['learning_rate']:g} | {run['kl_target']} | {horizon} | {run['beta_start']} -> "
                     f"{run['per_step'][-1]['beta']:.4g} | {run['mean_kl_second_half']:.4g} | "
                     f"{run['mean_abs_rel_error_second_half']:.3f} | {run['accuracy_before']:.3f} -> "
                     f"{run['accuracy_after']:.3f} | {run['wall_clock_s']} |")
    (out / f"{algo}_kl_control.md").write_text(f"# {algo.upper()} KL control on SmolLM2-135M (CPU)\n\n" + "\n".join(lines) + "\n\n"
                                           + "\n".join(f"* {m}: `{r['command']}`" for m, r in runs.items()) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=["grpo", "ppo"], default="grpo")
    parser.add_argument("--kl_control", choices=["adaptive", "fixed"], default="adaptive")
    parser.add_argument("--kl_target", type=float, default=0.5)
    parser.add_argument("--kl_horizon", type=float, default=16)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--kl_min_beta", type=float, default=0.0)
    parser.add_argument("--kl_estimator", choices=["sample", "full"], default="sample",
                        help="KL the controller sees: the sampled-token estimate, or the exact per-position KL.")
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--completions_per_step", type=int, default=8,
                        help="GRPO: prompts x num_generations per step; PPO: completions per rollout.")
    parser.add_argument("--num_generations", type=int, default=None,
                        help="GRPO: completions per prompt (default: recipes/grpo.yaml's 4). Fewer means more prompts "
                             "per step, and so less prompt-to-prompt noise in the measured KL.")
    parser.add_argument("--ppo_mini_batches", type=int, default=2, help="PPO: optimizer steps per rollout epoch.")
    parser.add_argument("--eval_samples", type=int, default=40)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cpu"))
    parser.add_argument("--plot", action="store_true", help="Only combine existing JSON into the plot and table.")
    parser.add_argument("--compare", nargs="*", default=[], help="With --plot: more run JSON files (in --out) to show.")
    cli = parser.parse_args()
    if cli.plot:
        plot(Path(cli.out), cli.algo, tuple(cli.compare))
    else:
        run(cli)
