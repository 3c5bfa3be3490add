"""Ray job entry point: the travel probe, how far each method's own parts move in a short run in units of the
backbone's embedding scale (see pipeline.bench.travel).

    python -m jobs.bench_travel jobs/configs/study-travel-smollm2.yaml --out docs/results/travel   # ~20 min
"""

from __future__ import annotations

import sys

from pipeline.cli import app


def main(argv: list[str] | None = None) -> None:
    """Same arguments as `promptfarm bench-travel`: CONFIG [key=value ...] [--out DIR]."""
    app(["bench-travel", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
