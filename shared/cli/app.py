"""The `mlops` console script. One sub-module per command group; each registers its
commands here.

Exit codes: 0 done; 1 the operation failed (not found, refused, incomplete, differs);
2 bad usage; 3 Kafka or a service is unreachable.
"""

from __future__ import annotations

import sys

import typer

from shared.cli import models, reproduce, status, topics, training
from shared.cli.common import CliError

EPILOG = (
    "Exit codes: 0 done; 1 the operation failed (not found, refused, incomplete, differs); "
    "2 bad usage; 3 Kafka or a service is unreachable. Settings: the services' own (MLOPS_*, "
    ".local/stack.env); service URLs MLOPS_CLI_INGESTION_URL, MLOPS_CLI_REGISTRY_URL, ... "
    "(one per service)."
)

app = typer.Typer(
    name="mlops",
    no_args_is_help=True,
    epilog=EPILOG,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command(epilog=EPILOG)(topics.publish)
app.command(epilog=EPILOG)(topics.tail)
app.command(epilog=EPILOG)(topics.replay)
app.add_typer(models.models_app, name="models", epilog=EPILOG)
app.command(epilog=EPILOG)(models.lineage)
app.command(epilog=EPILOG)(training.train)
app.command(epilog=EPILOG)(status.status)
app.command(epilog=EPILOG)(reproduce.reproduce)


@app.callback()
def root() -> None:
    """Operate the MLOps platform: topics, replays, models, training, the stack's health."""


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, prog_name="mlops")
    except CliError as error:
        print(f"mlops: {error}", file=sys.stderr)
        sys.exit(error.code)
