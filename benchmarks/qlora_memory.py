# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Where a QLoRA policy's memory goes, against bf16 LoRA, measured on CPU.

    python -m benchmarks.qlora_memory                      # both parts -> benchmarks/results/cpu/qlora_memory.{json,md}
    python -m benchmarks.qlora_memory --part held          # bytes held by the policy, by dtype (SmolLM2-135M shape)
    python -m benchmarks.qlora_memory --part profile       # one DPO step's memory by category (scaled 1B shape)

Three policies, each loaded by `trl_ext.load_policy` from the same random-weight checkpoint: bf16 LoRA, 4-bit QLoRA
with peft's fp32 upcast of the unquantised parameters (`upcast_norms_and_embeddings=True`, what `load_policy` did
before), and 4-bit QLoRA as `load_policy` loads it (embeddings, head and norms in the bf16 compute dtype).

* `held`: parameters + buffers by kind (`benchmarks.measure.held_bytes_by_kind`) at SmolLM2-135M's shape, the base
  alone and with the r=16 all-linear LoRA adapter peft adds (fp32), and the ratio to bf16 LoRA.
* `profile`: trl_ext's DPOTrainer with `bf16=True` (autocast, as on a GPU) on the harness's `dpo_qlora` work scaled
  from the Llama-3.2-1B shape by 4 in hidden size, intermediate size, vocabulary and tokens
  (`llama-3.2-1b-quarter`, 2 pairs x 512 tokens instead of 8): weights (~H^2), activations (~tokens x H) and logits
  (~tokens x vocabulary) all shrink by 16, so their shares of the peak are those of the GPU shape. Two optimizer
  steps under `torch.profiler` (`profile_memory=True`): the memory timeline by category (parameters, optimizer state,
  inputs, temporaries, activations, gradients, autograd detail) at the step's peak; and the bytes autograd saves for
  backward in the second step, by dtype, the logits apart.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from benchmarks.common import RESULTS_CPU, environment  # noqa: E402
from benchmarks.measure import held_bytes_by_kind  # noqa: E402
from benchmarks.shapes import build_model  # noqa: E402

VARIANTS = {  # name -> (load_in_4bit, upcast_norms_and_embeddings)
    "bf16 LoRA": (False, False),
    "QLoRA, fp32 upcast (peft)": (True, True),
    "QLoRA (load_policy)": (True, False),
}
# The column order of torch.profiler's `export_memory_timeline(..json)` (torch 2.13): a leading 0, then these.
TIMELINE_CATEGORIES = ("parameter", "optimizer_state", "input", "temporary", "activation", "gradient",
                       "autograd_detail", "unknown")
MIB = 2**20


def _policy(path: str, quantized: bool, upcast: bool, lora_r: int = 16):
    from trl import ModelConfig

    from trl_ext import load_policy

    args = ModelConfig(model_name_or_path=path, load_in_4bit=quantized, use_peft=True, dtype="bfloat16",
                       lora_r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0, lora_target_modules=["all-linear"])
    return load_policy(args, activation_checkpointing=False, upcast_norms_and_embeddings=upcast)


def held(shape: str = "smollm2-135m") -> dict[str, Any]:
    """Bytes held by each policy, by kind, base alone and with its LoRA adapter."""
    from peft import get_peft_model

    built = build_model(shape, "causal_lm", torch.bfloat16)
    rows = {}
    for name, (quantized, upcast) in VARIANTS.items():
        model, peft_config = _policy(built.path, quantized, upcast)
        base = held_bytes_by_kind(model)
        policy = held_bytes_by_kind(get_peft_model(model, peft_config))
        rows[name] = {"base": base, "policy": policy, "base_mib": sum(base.values()) / MIB,
                      "policy_mib": sum(policy.values()) / MIB}
        del model
        gc.collect()
    ref = rows["bf16 LoRA"]
    for row in rows.values():
        row["base_ratio"] = row["base_mib"] / ref["base_mib"]
        row["policy_ratio"] = row["policy_mib"] / ref["policy_mib"]
    return {"shape": shape, "n_params": built.n_params, "lora_r": 16, "variants": rows}


class SavedForBackward:
    """Bytes autograd keeps for backward while active, by dtype; each storage once, parameters excluded (they are
    held anyway). Tensors whose last dimension is the vocabulary are counted apart as logits."""

    def __init__(self, model: torch.nn.Module, vocab: int) -> None:
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.vocab = vocab
        self.seen: set[int] = set()
        self.by_dtype: dict[str, int] = {}
        self.logits = 0

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in self.seen and key not in self.params and tensor.device.type != "meta":
            self.seen.add(key)
            if tensor.dim() and tensor.shape[-1] == self.vocab:
                self.logits += storage.nbytes()
            else:
                dtype = str(tensor.dtype).removeprefix("torch.")
                self.by_dtype[dtype] = self.by_dtype.get(dtype, 0) + storage.nbytes()
        return tensor

    @staticmethod
    def unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor


def _trainer(path: str, quantized: bool, upcast: bool, pairs: int, prompt_len: int, completion_len: int):
    from transformers import AutoTokenizer

    import trl_ext
    from benchmarks.scenarios import expanded_pairs, ranked_groups

    model, peft_config = _policy(path, quantized, upcast)
    data = expanded_pairs(ranked_groups(pairs * 3, 2, prompt_len, completion_len))
    # bf16=True on CPU: the Trainer's bf16 autocast, as on a GPU (use_cpu lets TrainingArguments accept it here).
    args = trl_ext.DPOConfig(output_dir=tempfile.mkdtemp(prefix="qlora_memory_"), per_device_train_batch_size=pairs,
                             max_steps=2, learning_rate=1e-5, bf16=True, use_cpu=True, report_to=[],
                             save_strategy="no", logging_steps=10**6, disable_tqdm=True, dataloader_num_workers=0,
                             activation_checkpointing=False, max_length=prompt_len + completion_len + 8, beta=0.1,
                             seed=0)
    return trl_ext.DPOTrainer(model, args=args, train_dataset=data, peft_config=peft_config,
                              processing_class=AutoTokenizer.from_pretrained(path))


def _timeline_at_peak(path: str) -> dict[str, Any]:
    times, sizes = json.loads(Path(path).read_text())
    totals = [sum(row[1:]) for row in sizes]
    peak = max(range(len(totals)), key=totals.__getitem__)
    at_peak = dict(zip(TIMELINE_CATEGORIES, sizes[peak][1:]))
    maxima = {cat: max(row[1 + i] for row in sizes) for i, cat in enumerate(TIMELINE_CATEGORIES)}
    return {"peak_mib": totals[peak] / MIB, "at_peak_mib": {k: v / MIB for k, v in at_peak.items()},
            "max_mib": {k: v / MIB for k, v in maxima.items()}}


def profile(shape: str = "llama-3.2-1b-quarter", pairs: int = 2, prompt_len: int = 256,
            completion_len: int = 256) -> dict[str, Any]:
    """One profiled DPO run (2 steps) per policy at `shape`: memory timeline by category and saved tensors."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from benchmarks.shapes import SHAPES

    built = build_model(shape, "causal_lm", torch.bfloat16)
    vocab = SHAPES[shape]["vocab_size"]
    rows = {}
    for name, (quantized, upcast) in VARIANTS.items():
        trainer = _trainer(built.path, quantized, upcast, pairs, prompt_len, completion_len)
        saved = SavedForBackward(trainer.model, vocab)
        compute_loss = trainer.compute_loss
        calls = []

        def counted_compute_loss(*args, _compute_loss=compute_loss, _saved=saved, **kwargs):
            calls.append(1)
            if len(calls) < 2:  # the first step warms up (optimizer state is created in it)
                return _compute_loss(*args, **kwargs)
            with torch.autograd.graph.saved_tensors_hooks(_saved.pack, _saved.unpack):
                return _compute_loss(*args, **kwargs)

        trainer.compute_loss = counted_compute_loss
        held_kinds = held_bytes_by_kind(trainer.model)
        with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                           with_stack=True) as prof:
            trainer.train()
        timeline = os.path.join(tempfile.mkdtemp(prefix="qlora_memory_"), "timeline.json")
        prof.export_memory_timeline(timeline, device="cpu")
        rows[name] = {"held_mib": {k: v / MIB for k, v in held_kinds.items()},
                      "saved_for_backward_mib": {k: v / MIB for k, v in saved.by_dtype.items()},
                      "saved_logits_mib": saved.logits / MIB, **_timeline_at_peak(timeline)}
        print(f"{name}: peak {rows[name]['peak_mib']:.0f} MiB; saved for backward "
              f"{ {k: round(v) for k, v in rows[name]['saved_for_backward_mib'].items()} } MiB + logits "
              f"{rows[name]['saved_logits_mib']:.0f} MiB", flush=True)
        del trainer, prof
        gc.collect()
    ref = rows["bf16 LoRA"]["peak_mib"]
    for row in rows.values():
        row["peak_ratio"] = row["peak_mib"] / ref
    return {"shape": shape, "n_params": built.n_params, "pairs_per_step": pairs,
            "tokens_per_sequence": prompt_len + completion_len, "variants": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = ["# QLoRA memory on CPU: where the bytes go", "", f"Command: `{result['command']}`  ",
             "Weights are random (public architecture configs); see `benchmarks/qlora_memory.py` (`python -m benchmarks.qlora_memory`) for the method.", ""]
    if "held" in result:
        held_result = result["held"]
        lines += [f"## Bytes held by the policy ({held_result['shape']}, {held_result['n_params'] / 1e6:.1f}M "
                  "parameters; adapter: LoRA r=16 on all linear layers, fp32)", "",
                  "| policy | 4-bit MiB | quant state MiB | bf16 MiB | fp32 MiB | base MiB (x bf16 LoRA) | "
                  "with adapter MiB (x bf16 LoRA) |", "|---|---|---|---|---|---|---|"]
        for name, row in held_result["variants"].items():
            kinds = row["policy"]
            lines.append(f"| {name} | {kinds.get('4bit', 0) / MIB:.1f} | {kinds.get('quant_state', 0) / MIB:.1f} | "
                         f"{kinds.get('bfloat16', 0) / MIB:.1f} | {kinds.get('float32', 0) / MIB:.1f} | "
                         f"{row['base_mib']:.1f} ({row['base_ratio']:.3f}) | "
                         f"{row['policy_mib']:.1f} ({row['policy_ratio']:.3f}) |")
        lines.append("")
    if "profile" in result:
        prof = result["profile"]
        cats = ("parameter", "optimizer_state", "gradient", "activation", "temporary", "autograd_detail", "input",
                "unknown")
        lines += [f"## One DPO step by category ({prof['shape']}, {prof['n_params'] / 1e6:.1f}M parameters, "
                  f"{prof['pairs_per_step']} pairs x {prof['tokens_per_sequence']} tokens, bf16 autocast)", "",
                  "At the step's peak (torch.profiler memory timeline, MiB). `model side`: everything but the "
                  "temporaries and unattributed bytes (parameters, 4-bit weights, which the profiler files as inputs, "
                  "optimizer state, gradients, activations); the temporaries at the peak are TRL's chunked "
                  "log-probability head on CPU, the same in every variant (on a GPU TRL runs it as a Triton "
                  "kernel).", "",
                  "| policy | peak MiB (x bf16 LoRA) | model side MiB (x bf16 LoRA) | " + " | ".join(cats) + " |",
                  "|---|---|---|" + "---|" * len(cats)]
        model_side = {name: sum(v for k, v in row["at_peak_mib"].items() if k not in ("temporary", "unknown"))
                      for name, row in prof["variants"].items()}
        ref_side = model_side.get("bf16 LoRA") or 1.0
        for name, row in prof["variants"].items():
            lines.append(f"| {name} | {row['peak_mib']:.0f} ({row['peak_ratio']:.3f}) | "
                         f"{model_side[name]:.0f} ({model_side[name] / ref_side:.3f}) | "
                         + " | ".join(f"{row['at_peak_mib'].get(c, 0):.0f}" for c in cats) + " |")
        lines += ["", "Saved for backward in one step (MiB, parameters excluded):", "",
                  "| policy | bfloat16 | float32 | other | logits |", "|---|---|---|---|---|"]
        for name, row in prof["variants"].items():
            saved = row["saved_for_backward_mib"]
            other = sum(v for k, v in saved.items() if k not in ("bfloat16", "float32"))
            lines.append(f"| {name} | {saved.get('bfloat16', 0):.0f} | {saved.get('float32', 0):.0f} | {other:.0f} | "
                         f"{row['saved_logits_mib']:.0f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("all", "held", "profile"), default="all")
    parser.add_argument("--out", default=str(RESULTS_CPU), help="Results folder.")
    parser.add_argument("--name", default="qlora_memory", help="Stem of the output files.")
    parser.add_argument("--from_json", default=None, help="Rewrite the Markdown of an earlier run's JSON, run nothing.")
    args = parser.parse_args(argv)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        Path(args.from_json).with_suffix(".md").write_text(markdown(result))
        return result
    command = "python -m benchmarks.qlora_memory " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    result: dict[str, Any] = {**environment(command.strip()), "command": command.strip()}
    if args.part in ("all", "held"):
        result["held"] = held()
    if args.part in ("all", "profile"):
        result["profile"] = profile()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
