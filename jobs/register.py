"""Ray job entry point: register the best prompt of a finished search (found in MLflow) if it beats the champion.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.register \
        jobs/configs/smoke.yaml --search-id smoke-20261123-101500
    promptfarm submit jobs/configs/smoke.yaml --job register --address http://127.0.0.1:8265 -- --search-id ID
    python -m jobs.register jobs/configs/smoke.yaml --search-id smoke-20261123-101500
"""

from __future__ import annotations

import sys

from pipeline.cli import app


def main(argv: list[str] | None = None) -> None:
    """Same arguments as `promptfarm register`."""
    app(["register", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
