"""Ray job entry point: train one configuration (no sampling), tracked and registered like a one-trial search.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.train_one \
        jobs/configs/smoke.yaml method.lr=0.3
    promptfarm submit jobs/configs/smoke.yaml method.lr=0.3 --job train_one --address http://127.0.0.1:8265
    python -m jobs.train_one jobs/configs/smoke.yaml method.lr=0.3   # local Ray
"""

from __future__ import annotations

import sys

from pipeline.cli import app


def main(argv: list[str] | None = None) -> None:
    """Same arguments as `promptfarm train-one`."""
    app(["train-one", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
