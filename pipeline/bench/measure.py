"""Timing and memory of one training step / one inference forward, identical for every benchmark row.

A row is a `Subject`: a model called as `model(input_ids=, attention_mask=, labels=)` (PromptedModel and PEFT's
model share that call) plus the optimizer over its trainable parameters. One training step is forward + backward +
`optimizer.step()` + `zero_grad(set_to_none=True)`; inference is one forward under `torch.inference_mode()`.

Measurement protocol (`measure_rows`):
1. Rows are built one at a time inside a memory window, then run their warm-up steps. The window's peak above its
   start is the row's own memory: its parameters, optimizer state, activations and gradients. CUDA reads
   `max_memory_allocated` (reset per row). CPU reads the process's resident-set high-water mark (VmHWM), reset
   per row through /proc/self/clear_refs after returning freed heap pages to the OS (malloc_trim), so a row does
   not hide under memory an earlier row freed; where the kernel refuses the reset, VmHWM is process-wide and
   monotonic and the per-row figure is only a lower bound (recorded in `MemoryProbe.note`).
2. Timed steps run round-robin, one step of every row per round, so drift in machine load or clocks spreads
   evenly over all rows instead of biasing whichever ran last. CUDA is synchronised before and after each step.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

MiB = float(1 << 20)


@dataclass
class Subject:
    """One row under test: its model, optimizer and the batch it runs on."""

    model: torch.nn.Module
    """Called as model(input_ids=, attention_mask=, labels=) and returning an output with .loss."""
    optimizer: torch.optim.Optimizer | None
    """AdamW over the trainable parameters; None when there are none (the backbone alone)."""
    batch: dict[str, torch.Tensor]
    """Training inputs on the device: input_ids (B, L), attention_mask (B, L), labels."""
    infer_batch: dict[str, torch.Tensor]
    """Inference inputs: the same tokens without labels (plus decoder_input_ids for encoder-decoders)."""
    trainable_params: int
    """Elements over parameters that require grad."""

    def train_step(self) -> None:
        loss = self.model(**self.batch).loss
        loss.backward()
        if self.optimizer is not None:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

    def infer(self) -> None:
        with torch.inference_mode():
            self.model(**self.infer_batch)


@dataclass
class Measured:
    """Raw measurements of one row."""

    step_ms: list[float]
    """Wall time of each timed training step, ms."""
    infer_ms: list[float]
    """Wall time of each timed inference forward, ms."""
    mem_bytes: int
    """Peak memory above the row's start during its construction and warm-up, bytes."""
    trainable_params: int
    """The subject's trainable parameter elements."""

    @property
    def step_median_ms(self) -> float:
        return statistics.median(self.step_ms)

    @property
    def infer_median_ms(self) -> float:
        return statistics.median(self.infer_ms)


def _status_bytes(key: str) -> int:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {key} field")


class MemoryProbe:
    """Current and peak memory of the device: CUDA allocated bytes, or the process's RSS on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.kind = "cuda max_memory_allocated" if self.cuda else "process RSS high-water mark (VmHWM)"
        self.note = ""
        libc_name = None if self.cuda else ctypes.util.find_library("c")
        self._libc = ctypes.CDLL(libc_name) if libc_name else None

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def current(self) -> int:
        """Memory held now, bytes (after releasing what the allocators cache, so rows start comparably)."""
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.memory_allocated()
        if self._libc is not None and hasattr(self._libc, "malloc_trim"):
            self._libc.malloc_trim(0)  # give freed heap pages back, or RSS would still count them
        return _status_bytes("VmRSS")

    def reset_peak(self) -> None:
        """Start a new peak window at the current level."""
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # Linux >= 4.0: reset VmHWM to the current RSS
        except OSError:
            self.note = "VmHWM could not be reset (process-wide, monotonic): per-row memory is a lower bound"

    def peak(self) -> int:
        """Highest memory since `reset_peak`, bytes."""
        self.sync()
        return torch.cuda.max_memory_allocated() if self.cuda else _status_bytes("VmHWM")


def _timed(fn: Callable[[], None], probe: MemoryProbe) -> float:
    probe.sync()
    t0 = time.perf_counter()
    fn()
    probe.sync()
    return (time.perf_counter() - t0) * 1000.0


def measure_rows(makers: list[Callable[[], Subject]], probe: MemoryProbe, warmup: int, steps: int) -> list[Measured]:
    """Build each row (lazily, inside its memory window), warm it up, then time all rows round-robin."""
    subjects, mems = [], []
    for make in makers:
        start = probe.current()
        probe.reset_peak()
        subject = make()
        subject.model.train()
        for _ in range(warmup):
            subject.train_step()
        mems.append(max(0, probe.peak() - start))
        subjects.append(subject)
    step_ms: list[list[float]] = [[] for _ in subjects]
    for _ in range(steps):
        for times, subject in zip(step_ms, subjects, strict=True):
            times.append(_timed(subject.train_step, probe))
    infer_ms: list[list[float]] = [[] for _ in subjects]
    for subject in subjects:
        subject.model.eval()
        for _ in range(warmup):
            subject.infer()
    for _ in range(steps):
        for times, subject in zip(infer_ms, subjects, strict=True):
            times.append(_timed(subject.infer, probe))
    return [Measured(s, i, m, subject.trainable_params)
            for s, i, m, subject in zip(step_ms, infer_ms, mems, subjects, strict=True)]
