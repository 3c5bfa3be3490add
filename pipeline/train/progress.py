"""Progress inside a trial: rank 0 prints one line every N steps or T seconds and logs the interval's train loss.

A real-model trial on CPU takes seconds per step and minutes per evaluation; without this the driver shows
nothing between "trial started" and the first evaluation. Lines go to the worker's stdout, which Ray forwards
to the driver (and to `ray job logs` for submitted jobs), prefixed so they can be grepped.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def _echo(line: str) -> None:
    print(line, flush=True)  # looked up at call time: Ray swaps builtins.print in its worker processes


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


class Progress:
    """Accumulates per-step losses and token counts; `step()` says when a line is due and prints it."""

    def __init__(self, label: str, start_step: int, max_steps: int, every: int, seconds: float,
                 log: Callable[[dict, int], None] | None = None, echo: Callable[[str], None] | None = None) -> None:
        self.label, self.max_steps, self.every, self.seconds = label, max_steps, every, seconds
        self.log, self.echo = log, echo or _echo
        self.t0 = self.last_t = time.perf_counter()
        self.first_step = self.last_step = start_step
        self.losses: list[float] = []
        self.tokens = 0

    def add(self, loss: float, tokens: int) -> None:
        """One micro-batch: its loss and its number of real (unpadded) tokens."""
        self.losses.append(loss)
        self.tokens += tokens

    def step(self, step: int) -> str | None:
        """After optimizer step `step`: print (and log) a line if `every` steps or `seconds` have passed."""
        now = time.perf_counter()
        if not self.losses or (step % self.every and now - self.last_t < self.seconds and step != self.max_steps):
            return None
        dt, steps = now - self.last_t, step - self.last_step
        loss = sum(self.losses) / len(self.losses)
        rate = (step - self.first_step) / max(now - self.t0, 1e-9)  # steps/s since the trial (re)started
        eta = (self.max_steps - step) / rate if rate > 0 else float("inf")
        line = (f"[promptfarm] {self.label} step {step}/{self.max_steps} train_loss {loss:.4f} "
                f"{steps / max(dt, 1e-9):.3f} steps/s {self.tokens / max(dt, 1e-9):,.0f} tokens/s ETA {_duration(eta)}")
        self.echo(line)
        if self.log is not None:
            self.log({"train_loss_interval": loss, "steps_per_s": steps / max(dt, 1e-9)}, step)
        self.losses, self.tokens, self.last_t, self.last_step = [], 0, now, step
        return line


class EvalProgress:
    """Prints '[promptfarm] LABEL eval k/n examples' at most every `seconds` while an evaluation runs."""

    def __init__(self, label: str, total: int, seconds: float = 10.0,
                 echo: Callable[[str], None] | None = None) -> None:
        self.label, self.total, self.seconds, self.echo = label, total, seconds, echo or _echo
        self.t0 = self.last = time.perf_counter()

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last >= self.seconds:
            self.echo(f"[promptfarm] {self.label} eval {done}/{self.total} examples, {now - self.t0:.0f}s")
            self.last = now
