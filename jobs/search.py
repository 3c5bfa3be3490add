"""Ray job entry point: run an ASHA search and register the champion prompt.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.search jobs/configs/smoke.yaml
    python -m jobs.search jobs/configs/smoke.yaml train.zero_stage=3 search.num_samples=8   # local Ray
"""

from __future__ import annotations

import sys

from pipeline.cli import app


def main(argv: list[str] | None = None) -> None:
    """Same arguments as `promptfarm search`."""
    app(["search", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
