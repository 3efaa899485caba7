# Copyright 2026 The trl_ext authors. Apache-2.0.
"""What the harness measures: step times, tokens processed, peak memory, FLOPs and the device's matmul peak.

Definitions (printed with every report):
* step time: wall-clock between consecutive `on_step_end` callbacks (so data collation, generation and the optimizer
  step are all inside), on GPU after a `torch.cuda.synchronize()`; median over the measured steps.
* tokens: non-padding tokens of every forward pass through a counted model with gradients enabled (the trained
  forward: prompt + completion tokens actually processed); forward-only tokens (reference model, generation, reward
  model) are counted separately. During generation each decode step counts one token per sequence.
* FLOPs per step: 6·N·train_tokens + 2·N·forward_only_tokens per counted model, N = its parameter count (embeddings
  included, tied weights once; for 4-bit models the unquantised count). MFU = FLOPs per second / peak.
"""

from __future__ import annotations

import gc
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainerCallback

# Dense bf16 tensor-core peaks from the vendors' datasheets (TFLOP/s, no sparsity).
DATASHEET_BF16_TFLOPS = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 NVL": 835.5,
    "H100 PCIe": 756.5,
    "H100": 989.4,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "A10G": 70.0,
    "RTX 4090": 165.2,
}


def datasheet_bf16_tflops(device_name: str) -> float | None:
    """The datasheet's dense bf16 peak for a GPU name such as 'NVIDIA H100 80GB HBM3' (None if unknown)."""
    name = device_name.upper()
    if "H100" in name and ("PCIE" in name):
        return DATASHEET_BF16_TFLOPS["H100 PCIe"]
    if "H100" in name and "NVL" in name:
        return DATASHEET_BF16_TFLOPS["H100 NVL"]
    for key, value in DATASHEET_BF16_TFLOPS.items():
        if key.upper() in name:
            return value
    return None


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure_matmul_peak_tflops(n: int = 8192, iters: int = 20, dtype: torch.dtype = torch.bfloat16) -> float | None:
    """Achieved TFLOP/s of an n×n×n bf16 matmul on the current GPU (best of 3 timed runs); None on CPU."""
    if not torch.cuda.is_available():
        return None
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):  # warm-up: cuBLAS heuristics, clocks
        a @ b
    best = float("inf")
    for _ in range(3):
        synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            a @ b
        synchronize()
        best = min(best, time.perf_counter() - start)
    del a, b
    torch.cuda.empty_cache()
    return 2 * n**3 * iters / best / 1e12


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


def device_slug(name: str) -> str:
    """A folder name for results: 'cpu', 'nvidia-h100-80gb-hbm3', ..."""
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def parameter_count(model: torch.nn.Module) -> int:
    """Parameters with tied weights counted once; 4-bit packed weights are counted by their unquantised shape."""
    seen: set[int] = set()
    total = 0
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        quant_state = getattr(param, "quant_state", None)
        total += int(torch.Size(quant_state.shape).numel()) if quant_state is not None else param.numel()
    return total


def held_bytes_by_kind(model: torch.nn.Module) -> dict[str, int]:
    """Bytes a model holds in its parameters and buffers, by kind: `"4bit"` (bitsandbytes' packed 4-bit weights,
    whatever their storage dtype), `"quant_state"` (their absmax and code tensors, nested ones included) and, for
    everything else, the dtype's name (`"bfloat16"`, `"float32"`, ...). Tensors sharing storage (tied embedding and
    LM head) are counted once."""
    out: dict[str, int] = {}
    seen: set[int] = set()

    def add(kind: str, tensor: torch.Tensor) -> None:
        key = tensor.untyped_storage().data_ptr()
        if key in seen or tensor.numel() == 0:
            return
        seen.add(key)
        out[kind] = out.get(kind, 0) + tensor.untyped_storage().nbytes()

    for tensor in [*model.parameters(), *model.buffers()]:
        quant_state = getattr(tensor, "quant_state", None)
        if type(tensor).__name__ == "Params4bit":
            add("4bit", tensor)
        else:
            add(str(tensor.dtype).removeprefix("torch."), tensor)
        if quant_state is not None:
            nested = getattr(quant_state, "state2", None)
            for extra in (quant_state.absmax, quant_state.code, getattr(quant_state, "offset", None),
                          getattr(nested, "absmax", None), getattr(nested, "code", None)):
                if isinstance(extra, torch.Tensor):
                    add("quant_state", extra)
    return out


class TokenCounter:
    """Counts tokens through a module's forward calls, split into gradient-enabled (trained) and forward-only."""

    def __init__(self, module: torch.nn.Module, name: str, n_params: int | None = None) -> None:
        self.name = name
        self.n_params = n_params if n_params is not None else parameter_count(module)
        self._train: list[Any] = []
        self._forward: list[Any] = []
        self._handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        if input_ids is None:
            embeds = kwargs.get("inputs_embeds")
            if embeds is None:
                return
            shape = embeds.shape[:2]
        else:
            shape = input_ids.shape
        # Prefill / training: count the mask (no padding). Decode steps (one new token per row, a longer mask) and
        # mask-less calls: every position. Masks are summed lazily (no GPU sync inside the step).
        if mask is not None and mask.dim() == 2 and mask.shape[-1] == shape[-1]:
            tokens: Any = mask.detach().sum()
        else:
            tokens = int(shape[0] * shape[-1])
        (self._train if torch.is_grad_enabled() else self._forward).append(tokens)

    def take(self) -> tuple[int, int]:
        """(train_tokens, forward_tokens) since the last call."""
        out = (sum(int(t) for t in self._train), sum(int(t) for t in self._forward))
        self._train, self._forward = [], []
        return out

    def remove(self) -> None:
        self._handle.remove()


class RssSampler:
    """Peak resident set size of this process while running (sampled every `interval` seconds by a thread)."""

    def __init__(self, interval: float = 0.02) -> None:
        import psutil

        self._proc = psutil.Process(os.getpid())
        self.interval = interval
        self.peak = self.start = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


@dataclass
class StepRecord:
    seconds: float
    train_tokens: dict[str, int] = field(default_factory=dict)
    forward_tokens: dict[str, int] = field(default_factory=dict)
    timers: dict[str, float] = field(default_factory=dict)


class StepTimer(TrainerCallback):
    """Records, per optimizer step, the wall-clock since the previous step end and the tokens each counter saw.

    `timers` are objects with a `take() -> float` (seconds spent inside, e.g. a timed reward function) read per step.
    """

    def __init__(self, counters: list[TokenCounter], timers: dict[str, Any] | None = None) -> None:
        self.counters = counters
        self.timers = timers or {}
        self.records: list[StepRecord] = []
        self._last = None

    def on_train_begin(self, args, state, control, **kwargs):
        synchronize()
        self._last = time.perf_counter()
        for counter in self.counters:
            counter.take()
        for timer in self.timers.values():
            timer.take()

    def on_step_end(self, args, state, control, **kwargs):
        synchronize()
        now = time.perf_counter()
        record = StepRecord(seconds=now - self._last)
        for counter in self.counters:
            record.train_tokens[counter.name], record.forward_tokens[counter.name] = counter.take()
        for name, timer in self.timers.items():
            record.timers[name] = timer.take()
        self.records.append(record)
        self._last = now


class TimedCall:
    """Wraps a callable (e.g. a reward function) and accumulates the wall-clock spent inside it."""

    def __init__(self, func: Any) -> None:
        self.func = func
        self.__name__ = getattr(func, "__name__", type(func).__name__)
        self.seconds = 0.0

    def __call__(self, *args, **kwargs):
        synchronize()
        start = time.perf_counter()
        try:
            return self.func(*args, **kwargs)
        finally:
            synchronize()
            self.seconds += time.perf_counter() - start

    def take(self) -> float:
        out, self.seconds = self.seconds, 0.0
        return out


def summarize(records: list[StepRecord], warmup: int, counters: list[TokenCounter], samples_per_step: float,
              peak_tflops: float | None) -> dict[str, Any]:
    """Figures over the measured steps (after `warmup`): median step time, throughput, FLOPs, MFU, timer shares."""
    measured = records[warmup:]
    if not measured:
        raise RuntimeError(f"No measured steps: {len(records)} steps ran, {warmup} were warm-up.")
    step_s = statistics.median(r.seconds for r in measured)
    total_s = sum(r.seconds for r in measured)
    train_tokens = sum(sum(r.train_tokens.values()) for r in measured)
    forward_tokens = sum(sum(r.forward_tokens.values()) for r in measured)
    flops = 0.0
    for counter in counters:
        flops += sum(6 * counter.n_params * r.train_tokens[counter.name] + 2 * counter.n_params * r.forward_tokens[counter.name]
                     for r in measured)
    out: dict[str, Any] = {
        "steps_measured": len(measured),
        "step_time_s_median": step_s,
        "step_time_s_all": [round(r.seconds, 4) for r in measured],
        "samples_per_step": samples_per_step,
        "samples_per_s": samples_per_step / step_s,
        "tokens_per_s": train_tokens / total_s,
        "train_tokens_per_step": train_tokens / len(measured),
        "forward_only_tokens_per_step": forward_tokens / len(measured),
        "all_tokens_per_s": (train_tokens + forward_tokens) / total_s,
        "flops_per_step": flops / len(measured),
        "achieved_tflops": flops / total_s / 1e12,
        "params": {c.name: c.n_params for c in counters},
        "mfu": (flops / total_s / 1e12) / peak_tflops if peak_tflops else None,
    }
    timer_names = measured[0].timers.keys()
    for name in timer_names:
        spent = sum(r.timers[name] for r in measured)
        out[f"{name}_s_per_step"] = spent / len(measured)
        out[f"{name}_share_of_step"] = spent / total_s
    return out


class PeakMemory:
    """Peak device memory over a block: CUDA allocated/reserved on GPU, process RSS on CPU (MiB)."""

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self._rss = None
        else:
            self._rss = RssSampler().__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if torch.cuda.is_available():
            synchronize()
            self.figures = {
                "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20,
                "peak_reserved_mib": torch.cuda.max_memory_reserved() / 2**20,
                "memory_kind": "cuda max_memory_allocated (reserved also given)",
            }
        else:
            self._rss.__exit__(*exc)
            self.figures = {
                "peak_memory_mib": self._rss.peak / 2**20,
                "rss_at_start_mib": self._rss.start / 2**20,
                "peak_rss_increase_mib": (self._rss.peak - self._rss.start) / 2**20,
                "memory_kind": "process peak RSS (sampled every 20 ms)",
            }
