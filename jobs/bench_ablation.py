"""Ray job entry point: the paired method ablation, arms scored on the same rows with each own part zeroed, McNemar's
test against the baseline arms, accuracy by input length and step cost (see pipeline.bench.ablation).

    python -m jobs.bench_ablation jobs/configs/study-ablation-smollm2.yaml --out docs/results/ablation   # ~65 min
    promptfarm submit jobs/configs/study-ablation-smollm2.yaml --job bench_ablation --address http://HEAD:8265
"""

from __future__ import annotations

import sys

from pipeline.cli import app


def main(argv: list[str] | None = None) -> None:
    """Same arguments as `promptfarm bench-ablation`: CONFIG [key=value ...] [--out DIR]."""
    app(["bench-ablation", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
