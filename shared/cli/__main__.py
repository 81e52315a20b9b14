"""python -m shared.cli: the same as the `mlops` console script."""

from shared.cli.app import main

main()
