"""`python -m pipeline.cli ...`: the `promptfarm` command."""

from pipeline.cli import main

main()
