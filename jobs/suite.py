"""Ray job entry point: one ASHA search per task of a suite, then the methods x tasks table.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m jobs.suite jobs/configs/suite-tiny.yaml
    python -m jobs.suite jobs/configs/suite-smollm2.yaml            # local Ray; add --resume SUITE_ID to finish one
"""

from __future__ import annotations

import sys

from pipeline.cli import app


def main(argv: list[str] | None = None) -> None:
    """Same arguments as `promptfarm suite`."""
    app(["suite", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
