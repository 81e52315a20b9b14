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


def _model_at_version(target: str) -> tuple[str, int]:
    name, at, number = target.partition("@")
    if at and number.isdigit() and int(number) >= 1:
        return name, int(number)
    raise typer.BadParameter(f"expected MODEL@VERSION (e.g. loans@3), got {target!r}")


def lineage(
    target: Annotated[str, typer.Argument(metavar="MODEL@VERSION", help="e.g. loans@3.")],
    version: Annotated[
        int | None,
        typer.Argument(min=1, help="Old form `lineage MODEL VERSION`: the training lineage only."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Everything about one model version: dataset, spec, offset ranges, data quality, features,
    the training run, what triggered it (the DriftDetected and its evidence, for a drift),
    every registry decision and every deployment, each with its trace id.

    The old form `mlops lineage MODEL VERSION` prints the training lineage alone, as JSON."""
    if version is not None and "@" not in target:
        print_json(registry().get(f"/models/{target}/versions/{version}/lineage"))
        return
    if version is not None:
        raise typer.BadParameter("give MODEL@VERSION, or MODEL and VERSION, not both")
    name, number = _model_at_version(target)
    document = registry().get(f"/lineage/{name}/{number}")
    if as_json:
        print_json(document)
        return
    print_lineage(document)


def print_lineage(document: dict[str, Any]) -> None:
    training, trigger = document["training"], document["trigger"]
    out.print(
        f"[bold]{document['model_name']} v{document['version']}[/]  dataset "
        f"{document['dataset']} spec v{document['spec_version']} "
        f"({str(document['spec_fingerprint'])[:12]}), {document['rows']} rows "
        f"+ {document['holdout_rows']} holdout"
    )
    metrics = training["evaluation"].get("metrics", {})
    out.print(
        f"run {training['run_id']} {training['estimator']} seed {training['seed']}, "
        f"trained {str(training['trained_at'])[:19]}, code {training['code_version']}, "
        f"trace {training['trace_id'] or '-'}"
    )
    out.print("metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    out.print(f"artifact {training['artifact']['uri']} sha256 {training['artifact']['sha256']}")
    _print_trigger(trigger)
    offsets = Table("topic", "partition", "offsets", title="data")
    for r in document["offsets"]:
        offsets.add_row(r["topic"], str(r["partition"]), f"{r['first_offset']}..{r['last_offset']}")
    out.print(offsets)
    out.print("features: " + ", ".join(document["feature_columns"]))
    decisions = Table("at", "action", "by", "alias", "reason", "trace", title="decisions")
    for d in document["decisions"]:
        decisions.add_row(
            str(d["at"])[:19],
            d["action"],
            d["actor"],
            d["alias"] or "-",
            d["reason"],
            d["trace_id"] or "-",
        )
    out.print(decisions)
    deployments = Table("at", "instance", "alias", "trace", title="deployments")
    for d in document["deployments"]:
        deployments.add_row(str(d["deployed_at"])[:19], d["instance"], d["alias"], d["trace_id"])
    out.print(deployments)


def _print_trigger(trigger: dict[str, Any]) -> None:
    line = f"trigger: {trigger['kind']}" + (f" ({trigger['reason']})" if trigger["reason"] else "")
    if trigger.get("requested_by"):
        line += f", by {trigger['requested_by']}"
    out.print(line)
    event = trigger.get("event")
    if event is not None:
        drift = event["data"]
        out.print(
            f"  {event['type']} {event['id']}: {drift['signal_kind']} {drift['signal']}, "
            f"{drift['detector']} at {drift['position']}, reference {drift['reference']}, "
            f"current {drift['current']}, trace {trigger['trace_id'] or '-'}"
        )
