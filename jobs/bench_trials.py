"""Ray job entry point: a search's per-trial fixed overhead, warm in-process trials against a worker group per trial
(see pipeline.bench.trials).

    python -m jobs.bench_trials jobs/configs/smoke.yaml --out bench-trials           # tiny LLaMA, about 2 min
    python -m jobs.bench_trials jobs/configs/sst2-smollm2.yaml train.max_steps=60 search.num_samples=3
    promptfarm submit jobs/configs/smoke.yaml --job bench_trials --address http://HEAD:8265
"""

from __future__ import annotations

import sys

from pipeline.cli import app


def main(argv: list[str] | None = None) -> None:
    """Same arguments as `promptfarm bench-trials`: CONFIG [key=value ...] [--out DIR]."""
    app(["bench-trials", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
