# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Host work of one training step: aten ops dispatched and host syncs, trl_ext's grouped Reward/DPO steps against
TRL's step on the expanded pairs, and trl_ext against TRL on plain pairs ("features off").

On a GPU the model of a small step is cheap and what the host does per step (every aten op is a kernel launch, every
`.item()` / `.tolist()` a device-to-host sync that drains the queue) sets the pace. Both are counted here with a
`TorchDispatchMode` on a tiny 2-layer Llama, so the figures are exact and need no GPU:

* **ops**: every aten op dispatched (forward, backward, optimizer, collator, metrics);
* **syncs**: `aten._local_scalar_dense` calls (`.item()`, `int(t)`, `bool(t)`, `float(t)` on a tensor) plus calls
  of `Tensor.tolist`, `.cpu` and `.numpy`, which dispatch nothing on a CPU tensor (on a GPU, each of them waits for
  the device).

A step is one optimizer step of `trainer.train()`: fetching and collating the batch, forward, backward, gradient
clipping, optimizer and scheduler step, plus the trainer's logging amortised over `logging_steps` (a run of
2 x `logging_steps` steps is counted from the end of step `logging_steps` to the end of the last step, so exactly one
logging step and no setup is inside the window). Same model, same tokens on both sides: 2 ranked groups of K = 4
(`ranked_training="grouped"`, Bradley-Terry or Plackett-Luce) against the C(4,2) x 2 = 12 pairs
`trl_ext.ranked_to_pairs(strategy="all")` gives, which TRL's trainer takes in one batch of 12.

    python -m benchmarks.host_work                        # benchmarks/results/cpu/host_work.{json,md,png}
    python -m benchmarks.host_work --trace dpo_bt         # where each host sync of one scenario comes from
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.common import RESULTS_CPU, build_char_tokenizer, environment

SYNC_OP = torch.ops.aten._local_scalar_dense.default

#: Two ranked groups of K = 4 (no ties: all C(4,2) = 6 pairs of each group are trained).
GROUPS = [
    {"prompt": "2+2=", "completions": [" 4", " 5", " 22", " four"], "ranks": [0, 2, 3, 1]},
    {"prompt": "3+1=", "completions": [" 4", " 31", " 5", " three"], "ranks": [0, 1, 3, 2]},
]

#: scenario -> (trainer kind, what trl_ext trains on, ranked_loss)
SCENARIOS = {
    "reward_bt": ("reward", "grouped", "bradley_terry"),
    "reward_pl": ("reward", "grouped", "plackett_luce"),
    "reward_off": ("reward", "pairs", None),
    "dpo_bt": ("dpo", "grouped", "bradley_terry"),
    "dpo_pl": ("dpo", "grouped", "plackett_luce"),
    "dpo_off": ("dpo", "pairs", None),
}

#: Goals (issue 24): a grouped step <= 1.1 x TRL's ops on the expanded pairs and <= TRL's syncs + 2; features off equal.
OPS_RATIO_GOAL = 1.1
SYNC_MARGIN_GOAL = 2


#: Tensor methods that read a tensor's memory from the host without dispatching an aten op on a CPU tensor (on an
#: accelerator each is a device-to-host copy, i.e. a sync): counted as syncs too.
HOST_READS = ("tolist", "cpu", "numpy")


class DispatchCounter(TorchDispatchMode):
    """Counts every aten op dispatched while active, and the host syncs: `aten._local_scalar_dense` (`.item()`,
    `int(t)`, `bool(t)`, `float(t)`) plus calls of `Tensor.tolist`, `Tensor.cpu` and `Tensor.numpy`, which on a CPU
    tensor read memory without dispatching anything. With `trace`, the Python frames (of trl_ext, TRL, transformers,
    accelerate) that issued each sync."""

    def __init__(self, trace: bool = False):
        super().__init__()
        self.ops = 0
        self.syncs = 0
        self.trace = trace
        self.sync_sites: collections.Counter = collections.Counter()
        self._originals: dict[str, Any] = {}

    def _sync(self) -> None:
        self.syncs += 1
        if self.trace:
            frames = [f for f in traceback.extract_stack()[:-2]
                      if any(p in f.filename for p in ("trl_ext", "/trl/", "transformers", "accelerate"))]
            site = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames[-3:]))
            self.sync_sites[site] += 1

    def __enter__(self):
        for name in HOST_READS:
            original = self._originals[name] = getattr(torch.Tensor, name)

            def counted(tensor, *args, _original=original, **kwargs):
                self._sync()
                return _original(tensor, *args, **kwargs)

            setattr(torch.Tensor, name, counted)
        return super().__enter__()

    def __exit__(self, *exc):
        for name, original in self._originals.items():
            setattr(torch.Tensor, name, original)
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        if func is SYNC_OP:
            self._sync()
        return func(*args, **(kwargs or {}))


def _step_marks(counter: DispatchCounter, marks: dict[int, tuple[int, int]]) -> Any:
    from transformers import TrainerCallback

    class StepMarks(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks[state.global_step] = (counter.ops, counter.syncs)

    return StepMarks()


def count_per_step(make_trainer: Callable[[int, int], Any], logging_steps: int,
                   trace: bool = False) -> dict[str, Any]:
    """Ops and syncs per optimizer step of `make_trainer(max_steps, logging_steps).train()`, counted over steps
    `logging_steps + 1 .. 2 * logging_steps` (one logging step inside, no setup)."""
    from transformers import PrinterCallback

    trainer = make_trainer(2 * logging_steps, logging_steps)
    trainer.remove_callback(PrinterCallback)  # the logs are not the point here (printing dispatches nothing)
    counter = DispatchCounter(trace)
    marks: dict[int, tuple[int, int]] = {}
    trainer.add_callback(_step_marks(counter, marks))
    with counter:
        trainer.train()
    (ops0, syncs0), (ops1, syncs1) = marks[logging_steps], marks[2 * logging_steps]
    result = {"ops": (ops1 - ops0) / logging_steps, "syncs": (syncs1 - syncs0) / logging_steps}
    if trace:
        result["sync_sites"] = dict(counter.sync_sites.most_common())
    return result


def _tiny_model(kind: str, tokenizer) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    return (LlamaForSequenceClassification if kind == "reward" else LlamaForCausalLM)(config)


def trainer_factories(scenario: str, output_dir: str) -> dict[str, Callable[[int, int], Any]]:
    """`{"trl": make, "trl_ext": make}` for a scenario; `make(max_steps, logging_steps)` builds a fresh trainer on a
    fresh copy of the same tiny model (seeded), CPU, float32."""
    import trl
    from datasets import Dataset, concatenate_datasets

    import trl_ext

    kind, data, ranked_loss = SCENARIOS[scenario]
    tokenizer = build_char_tokenizer()
    pairs = trl_ext.ranked_to_pairs(Dataset.from_list(GROUPS), pair_strategy="all")[0]
    pairs = pairs.select_columns(["prompt", "chosen", "rejected"])
    # Sequential batches of one copy of the data each (both sides train on the same tokens at every step), and more
    # copies than steps: no epoch boundary (sampler and dataloader restart) falls inside the counted window.
    common = dict(output_dir=output_dir, bf16=False, report_to=[], save_strategy="no", disable_tqdm=True,
                  activation_checkpointing=False, train_sampling_strategy="sequential")

    def make(library: str):
        ours = library == "trl_ext"
        module = trl_ext if ours else trl
        grouped = ours and data == "grouped"
        extra = {"ranked_loss": ranked_loss} if grouped else {}
        once = Dataset.from_list(GROUPS) if grouped else pairs
        batch = len(once)

        def build(max_steps: int, logging_steps: int):
            dataset = concatenate_datasets([once] * (max_steps + 2))
            config_cls = module.RewardConfig if kind == "reward" else module.DPOConfig
            args = config_cls(max_steps=max_steps, logging_steps=logging_steps, per_device_train_batch_size=batch,
                              **common, **extra)
            if kind == "reward":
                return module.RewardTrainer(_tiny_model(kind, tokenizer), args=args, train_dataset=dataset,
                                            processing_class=tokenizer)
            return module.DPOTrainer(_tiny_model(kind, tokenizer), ref_model=_tiny_model(kind, tokenizer), args=args,
                                     train_dataset=dataset, processing_class=tokenizer)

        return build

    return {"trl": make("trl"), "trl_ext": make("trl_ext")}


def count_library(scenario: str, library: str, logging_steps: int, trace: bool = False) -> dict[str, Any]:
    """Per-step ops and syncs of one side ("trl" | "trl_ext") of a scenario."""
    with tempfile.TemporaryDirectory() as tmp:
        return count_per_step(trainer_factories(scenario, tmp)[library], logging_steps, trace)


def compare(scenario: str, trl_counts: dict[str, Any], ext_counts: dict[str, Any]) -> dict[str, Any]:
    """The row of a scenario from both sides' counts: ratio of ops, difference of syncs, and whether the goal is met."""
    kind, data, ranked_loss = SCENARIOS[scenario]
    row = {"scenario": scenario, "trainer": kind, "trl_ext_data": data, "ranked_loss": ranked_loss,
           "trl": trl_counts, "trl_ext": ext_counts, "ops_ratio": ext_counts["ops"] / trl_counts["ops"],
           "extra_syncs": ext_counts["syncs"] - trl_counts["syncs"]}
    if data == "pairs":
        row["goal"] = "ops and syncs equal TRL's"
        row["goal_met"] = ext_counts["ops"] == trl_counts["ops"] and ext_counts["syncs"] == trl_counts["syncs"]
    else:
        row["goal"] = f"ops <= {OPS_RATIO_GOAL} x TRL, syncs <= TRL + {SYNC_MARGIN_GOAL}"
        row["goal_met"] = row["ops_ratio"] <= OPS_RATIO_GOAL and row["extra_syncs"] <= SYNC_MARGIN_GOAL
    return row


def measure(scenario: str, logging_steps: int, trace: bool = False) -> dict[str, Any]:
    """Per-step ops and syncs of TRL and trl_ext for one scenario, their ratio / difference, and the goal."""
    return compare(scenario, count_library(scenario, "trl", logging_steps, trace),
                   count_library(scenario, "trl_ext", logging_steps, trace))


def _describe(scenario: str) -> str:
    kind, data, ranked_loss = SCENARIOS[scenario]
    name = "Reward" if kind == "reward" else "DPO"
    if data == "pairs":
        return f"{name}, plain pairs (features off)"
    return f"{name} grouped, {'Bradley-Terry' if ranked_loss == 'bradley_terry' else 'Plackett-Luce'}"


def markdown(rows: list[dict], env: dict, logging_steps: int, before: dict[str, dict] | None = None,
             label: str | None = None, before_label: str | None = None) -> str:
    lines = [
        "# Host work per training step: trl_ext vs TRL",
        "",
        f"Command: `{env['command']}`; device {env['device']}, torch {env['versions']['torch']}, "
        f"trl {env['versions']['trl']}, transformers {env['versions']['transformers']}"
        + (f"; code: {label}" if label else "") + (f"; 'before' columns: {before_label}" if before_label else "")
        + ".",
        "",
        "Per optimizer step of `trainer.train()` on a tiny 2-layer Llama (collation, forward, backward, clipping, "
        f"optimizer, and one logging step every {logging_steps} steps), counted with a `TorchDispatchMode`: **ops** = "
        "aten ops dispatched, **syncs** = `aten._local_scalar_dense` (`.item()`, `int(t)`, ...) plus calls of "
        "`.tolist()`, `.cpu()`, `.numpy()`. "
        "Grouped: 2 ranked groups of K=4 (8 rows per step) against TRL on the 12 expanded pairs (24 rows); "
        "features off: the same 12 plain pairs through both classes.",
        "",
    ]
    header = "| scenario | TRL ops | trl_ext ops | ops ratio | TRL syncs | trl_ext syncs |"
    rule = "|---|---|---|---|---|---|"
    if before:
        header += " before: ops ratio | before: trl_ext syncs |"
        rule += "---|---|"
    lines += [header + " goal | met |", rule + "---|---|"]
    for row in rows:
        cells = [_describe(row["scenario"]), f"{row['trl']['ops']:.1f}", f"{row['trl_ext']['ops']:.1f}",
                 f"{row['ops_ratio']:.3f}", f"{row['trl']['syncs']:.2f}", f"{row['trl_ext']['syncs']:.2f}"]
        if before:
            old = before.get(row["scenario"])
            cells += [f"{old['ops_ratio']:.3f}", f"{old['trl_ext']['syncs']:.2f}"] if old else ["", ""]
        cells += [row["goal"], "yes" if row["goal_met"] else "**no**"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(path: Path, rows: list[dict], before: dict[str, dict] | None = None) -> None:
    """Two panels: trl_ext / TRL ops per step (goal line), and syncs per step of TRL and trl_ext (and before)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["scenario"] for r in rows]
    panels = [("aten ops per step, trl_ext / TRL", "%.2f", {"after": [r["ops_ratio"] for r in rows]}),
              ("host syncs per step", "%.1f", {"TRL": [r["trl"]["syncs"] for r in rows],
                                               "trl_ext": [r["trl_ext"]["syncs"] for r in rows]})]
    if before:
        panels[0][2]["before"] = [before[n]["ops_ratio"] if n in before else 0.0 for n in names]
        panels[1][2]["trl_ext before"] = [before[n]["trl_ext"]["syncs"] if n in before else 0.0 for n in names]
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
    for ax, (title, fmt, series) in zip(axes, panels):
        width = 0.8 / len(series)
        for i, (label, values) in enumerate(series.items()):
            xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(names))]
            ax.bar_label(ax.bar(xs, values, width, label=label), fmt=fmt, fontsize=6)
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_title(title)
    axes[0].axhline(OPS_RATIO_GOAL, color="grey", linestyle="--", linewidth=1, label=f"goal {OPS_RATIO_GOAL}")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle("Host work per training step, trl_ext vs TRL (tiny 2-layer Llama, aten ops counted)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--logging_steps", type=int, default=10, help="TRL's default; the window is this many steps.")
    parser.add_argument("--out", default=str(RESULTS_CPU), help="Folder for host_work.{json,md,png}.")
    parser.add_argument("--name", default="host_work", help="File stem of the outputs.")
    parser.add_argument("--label", default=None, help="What code was measured (e.g. a commit), kept in the JSON.")
    parser.add_argument("--before", default=None,
                        help="A JSON written by an earlier run (e.g. of older code) shown beside these figures.")
    parser.add_argument("--trace", default=None, choices=list(SCENARIOS),
                        help="Print where each host sync of this scenario comes from, and write nothing.")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "disabled")
    torch.set_num_threads(1)  # op counts do not depend on threads; one thread keeps the run quiet beside others

    if args.trace:
        row = measure(args.trace, args.logging_steps, trace=True)
        for library in ("trl", "trl_ext"):
            print(f"{library}: {row[library]['ops']:.1f} ops, {row[library]['syncs']:.2f} syncs per step; "
                  f"syncs by site over {args.logging_steps} steps:")
            for site, n in row[library]["sync_sites"].items():
                print(f"  {n:5d}  {site}")
        return [row]

    env = environment("python -m benchmarks.host_work " + " ".join(argv if argv is not None else sys.argv[1:]))
    rows = []
    for scenario in args.scenarios:
        rows.append(measure(scenario, args.logging_steps))
        r = rows[-1]
        print(f"{scenario:11s} TRL {r['trl']['ops']:7.1f} ops {r['trl']['syncs']:5.2f} syncs | trl_ext "
              f"{r['trl_ext']['ops']:7.1f} ops {r['trl_ext']['syncs']:5.2f} syncs | ratio {r['ops_ratio']:.3f} "
              f"extra syncs {r['extra_syncs']:+.2f} | goal met: {r['goal_met']}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    before = None
    if args.before:
        before = {row["scenario"]: row for row in json.loads(Path(args.before).read_text())["rows"]}
    (out / f"{args.name}.json").write_text(json.dumps(
        {**env, "label": args.label, "logging_steps": args.logging_steps, "groups": GROUPS, "rows": rows,
         "before": {"file": args.before, "rows": list(before.values())} if before else None}, indent=2) + "\n")
    table = markdown(rows, env, args.logging_steps, before, args.label,
                     json.loads(Path(args.before).read_text()).get("label") if args.before else None)
    (out / f"{args.name}.md").write_text(table)
    plot(out / f"{args.name}.png", rows, before)
    print(table)
    return rows


if __name__ == "__main__":
    main()
