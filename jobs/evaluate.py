"""Ray job entry point: re-evaluate the config's registered champion on its validation data; log it to MLflow.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.evaluate jobs/configs/smoke.yaml
    promptfarm submit jobs/configs/smoke.yaml --job evaluate --address http://127.0.0.1:8265
    python -m jobs.evaluate jobs/configs/smoke.yaml [k=v ...] [--alias champion] [--split validation]
"""

from __future__ import annotations

import sys

from pipeline.cli import app


def main(argv: list[str] | None = None) -> None:
    """Same arguments as `promptfarm evaluate CONFIG`."""
    app(["evaluate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
