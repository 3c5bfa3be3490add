"""promptfarm command line.

    promptfarm search jobs/configs/smoke.yaml [key.path=value ...] [--resume SEARCH_ID]
    promptfarm train-one jobs/configs/smoke.yaml method.lr=0.3
    promptfarm suite jobs/configs/suite-tiny.yaml [--resume SUITE_ID]
    promptfarm register jobs/configs/smoke.yaml --search-id SEARCH_ID
    promptfarm evaluate sst2-tiny-llama@champion   |   promptfarm evaluate jobs/configs/smoke.yaml
    promptfarm submit jobs/configs/smoke.yaml --address http://HEAD:8265 --tracking-uri http://MLFLOW:5000
    promptfarm jobs list|logs ID|stop ID
    promptfarm bench jobs/configs/bench-tiny.yaml
    promptfarm bench-trials jobs/configs/smoke.yaml --out bench-trials
    promptfarm pull sst2-tiny-llama --alias champion --out ./prompt
    promptfarm predict ./prompt "a gripping, funny film"
    promptfarm methods
    promptfarm config [SECTION]
"""

from __future__ import annotations

# Importing a module registers its commands; `--help` lists them in import order (run first, cluster last).
# isort: off
from pipeline.cli import run  # noqa: F401
from pipeline.cli import prompts  # noqa: F401
from pipeline.cli import bench  # noqa: F401
from pipeline.cli import cluster  # noqa: F401
# isort: on
from pipeline.cli.common import app


def main() -> None:
    app()


__all__ = ["app", "main"]
