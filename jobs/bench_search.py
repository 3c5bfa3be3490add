"""Ray job entry point: whole searches measured, HF Trainer + PEFT's search against promptfarm's PT search over the
same learning rates, and promptfarm's ASHA search of every method against the same trials unstopped (see
pipeline.bench.search_bench).

    python -m jobs.bench_search jobs/configs/bench-search-tiny.yaml --out /tmp/bench-search          # minutes
    python -m jobs.bench_search jobs/configs/bench-search-smollm2.yaml --out docs/results/search     # see the config
    promptfarm submit jobs/configs/bench-search-smollm2.yaml --job bench_search --address http://HEAD:8265
"""

from __future__ import annotations

import sys

from pipeline.cli import app


def main(argv: list[str] | None = None) -> None:
    """Same arguments as `promptfarm bench-search`: CONFIG [key=value ...] [--out DIR]."""
    app(["bench-search", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
