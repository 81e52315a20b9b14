"""The `mlops` console script (placeholder until the commands land)."""

from __future__ import annotations

import typer

app = typer.Typer(name="mlops", no_args_is_help=True)


@app.callback()
def root() -> None:
    """Operate the MLOps platform."""


def main() -> None:
    app()
