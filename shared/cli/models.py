"""`mlops models list|show|promote|rollback` and `mlops lineage`: clients of the registry."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from shared.cli.common import ServiceClient, cli_settings

out = Console()
models_app = typer.Typer(
    no_args_is_help=True, help="Registered models: list, show, promote, rollback."
)

NameArg = Annotated[str, typer.Argument(help="The model's registered name.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the registry's answer as JSON.")]


def registry() -> ServiceClient:
    return ServiceClient("registry", cli_settings())


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


@models_app.command("list")
def list_models(as_json: AsJson = False) -> None:
    """Every registered model, its version count and aliases."""
    models = registry().get("/models")
    if as_json:
        print_json(models)
        return
    table = Table("model", "versions", "latest", "aliases")
    for model in models:
        aliases = ", ".join(f"{alias}={v}" for alias, v in sorted(model["aliases"].items()))
        table.add_row(model["name"], str(model["versions"]), str(model["latest_version"]), aliases)
    out.print(table)


@models_app.command("show")
def show(
    name: NameArg,
    version: Annotated[int | None, typer.Option(min=1, help="One version, in full.")] = None,
    as_json: AsJson = False,
) -> None:
    """A model's versions (metric, trigger, aliases), or one version in full with --version."""
    client = registry()
    if version is not None:
        print_json(client.get(f"/models/{name}/versions/{version}"))
        return
    model = client.get(f"/models/{name}")
    versions = client.get(f"/models/{name}/versions")
    if as_json:
        print_json({**model, "versions": versions})
        return
    table = Table(
        "version", "estimator", "metric", "value", "trigger", "created", "aliases", title=name
    )
    for v in versions:
        value = v["primary_metric_value"]
        table.add_row(
            str(v["version"]),
            v["estimator"],
            v["primary_metric"] or "-",
            f"{value:.4f}" if isinstance(value, float) else str(value),
            v["trigger"] or "-",
            str(v["created_at"])[:19],
            ", ".join(v["aliases"]),
        )
    out.print(table)


def _change(name: str, path: str, method: str, body: dict[str, Any]) -> None:
    settings = cli_settings()
    answer = ServiceClient("registry", settings).request(
        method, path, body, headers={"X-API-Key": settings.registry_key()}
    )
    if not answer.get("changed", True):
        out.print(f"{name}: nothing to change")
        return
    previous = answer.get("previous_version")
    out.print(
        f"{name}: {answer.get('alias')} -> version {answer.get('version')}"
        f"{f' (was {previous})' if previous is not None else ''}; "
        f"{answer.get('event_type')} {answer.get('event_id')}"
    )


@models_app.command()
def promote(
    name: NameArg,
    version: Annotated[int, typer.Argument(min=1, help="The version to give the alias.")],
    reason: Annotated[str, typer.Option(help="Why; kept in the audit trail.")],
    alias: Annotated[str, typer.Option(help="The alias to move.")] = "champion",
) -> None:
    """Point an alias (champion by default) at a version; serving swaps to it. Needs the
    registry API key."""
    _change(name, f"/models/{name}/aliases/{alias}", "PUT", {"version": version, "reason": reason})


@models_app.command()
def rollback(
    name: NameArg,
    reason: Annotated[str, typer.Option(help="Why; kept in the audit trail.")],
    alias: Annotated[str, typer.Option(help="The alias to return.")] = "champion",
) -> None:
    """Return an alias to the version that held it before. Needs the registry API key."""
    _change(name, f"/models/{name}/rollback", "POST", {"reason": reason, "alias": alias})


def lineage(
    name: NameArg,
    version: Annotated[int, typer.Argument(min=1, help="The version.")],
) -> None:
    """What a model version was trained on, and how: topic/partition/offset ranges, dataset
    spec, features, parameters and seed, library and code versions, trigger (JSON)."""
    print_json(registry().get(f"/models/{name}/versions/{version}/lineage"))
