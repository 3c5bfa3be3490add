"""Ray job entry point: step time, tokens/s, peak memory, inference latency and trainable parameters of every
prompt method against the frozen backbone alone and HF PEFT's PromptTuning (see pipeline.bench).

    python -m jobs.benchmark jobs/configs/bench-tiny.yaml                         # tiny LLaMA on CPU, < 2 min
    python -m jobs.benchmark jobs/configs/bench-gpu.yaml steps=100 --out ./bench   # a 1B model on one GPU
    ray job submit --address http://HEAD:8265 --working-dir . -- python -m jobs.benchmark jobs/configs/bench-gpu.yaml
    promptfarm submit jobs/configs/bench-gpu.yaml --job benchmark --address http://HEAD:8265

Writes bench.md and bench.json to `out_dir` (or --out) and logs them to MLflow when `tracking_uri` or
$MLFLOW_TRACKING_URI is set.
"""

from __future__ import annotations

import sys

from pipeline.cli import app


def main(argv: list[str] | None = None) -> None:
    """Same arguments as `promptfarm bench`: CONFIG [key=value ...] [--out DIR]."""
    app(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
