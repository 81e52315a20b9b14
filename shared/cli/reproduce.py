"""`mlops reproduce MODEL@VERSION`: ask the training service to rebuild a registered version
from the Kafka offsets it was trained on, retrain it with its recorded parameters and seed,
and compare (POST /reproductions), then wait for the outcome (GET /reproductions/{id}) and
print it: a table of the checks, then `identical` (exit 0) or `differs: <what>` (exit 1), or
`failed: <reason>` (exit 1).

The work is the training service's (it asks the feature store for the training set): the CLI
and the console call the same endpoint, and the CLI holds no pandas or scikit-learn.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from shared.cli.common import CliError, ServiceClient, Unreachable, cli_settings

out = Console()
err = Console(stderr=True)
_TARGET = re.compile(r"^(?P<name>[a-z][a-z0-9_-]{0,99})(@(?P<version>[1-9][0-9]*))?$")
IDENTICAL = "identical"
OUTCOMES = ("identical", "differs", "failed")
POLL_S = 0.5


def parse_target(target: str, latest: bool) -> tuple[str, int | None]:
    """`loans@3` -> ("loans", 3); `loans` with --latest -> ("loans", None)."""
    match = _TARGET.match(target.strip())
    if match is None:
        raise typer.BadParameter(f"{target!r}: expected MODEL@VERSION, e.g. loans@3")
    name, version = match.group("name"), match.group("version")
    if version is not None and latest:
        raise typer.BadParameter(f"{target!r}: give a version or --latest, not both")
    if version is None and not latest:
        raise typer.BadParameter(f"{target!r}: name a version (MODEL@VERSION) or add --latest")
    return name, int(version) if version is not None else None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CliError(f"{path}: not a readable JSON file ({error})") from None


def request_body(name: str, number: int | None, lineage: Any | None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": name}
    if number is None:
        body["latest"] = True
    else:
        body["version"] = number
    if lineage is not None:
        body["lineage"] = lineage
    return body


def verdict_line(answer: dict[str, Any]) -> str:
    """The last line: `identical`, `differs: <what>` or `failed: <reason>`."""
    status = answer.get("status")
    if status == IDENTICAL:
        return IDENTICAL
    reason = answer.get("reason") or "no reason given"
    if status == "differs" and not str(reason).startswith("differs"):
        return f"differs: {reason}"
    return str(reason) if status == "differs" else f"failed: {reason}"


def title_of(answer: dict[str, Any]) -> str:
    summary = answer.get("summary") or {}
    title = f"{answer.get('model')} v{answer.get('version')}"
    if "feature_events" in summary:
        title += (
            f": {summary['feature_events']} feature and {summary.get('label_events', 0)} label "
            f"events rebuilt from Kafka in {summary.get('read_s', 0):.1f}s, retrained in "
            f"{summary.get('retrain_s', 0):.1f}s"
        )
    return title


def report(answer: dict[str, Any]) -> str:
    """Prints the checks, the notes and the verdict line; returns the verdict line."""
    checks = answer.get("checks") or []
    if checks:
        table = Table("check", "registered", "reproduced", "", title=title_of(answer))
        for check in checks:
            mark = "[green]same[/green]" if check.get("same") else "[red]differs[/red]"
            table.add_row(
                str(check.get("name")),
                str(check.get("recorded")),
                str(check.get("reproduced")),
                mark,
            )
        out.print(table)
    for note in answer.get("notes") or []:
        out.print(note, highlight=False)
    line = verdict_line(answer)
    print(line)
    return line


def wait_for_outcome(
    client: ServiceClient, reproduction_id: str, timeout_s: float, poll_s: float = POLL_S
) -> dict[str, Any]:
    """Polls GET /reproductions/{id} until it ends (CliError after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    with err.status(f"reproducing ({reproduction_id})...") as status:
        while True:
            answer = client.get(f"/reproductions/{reproduction_id}")
            if answer.get("status") in OUTCOMES:
                return dict(answer)
            if time.monotonic() >= deadline:
                raise CliError(
                    f"reproduction {reproduction_id} still running after {timeout_s:.0f}s: "
                    f"GET {client.base}/reproductions/{reproduction_id} shows its outcome later"
                )
            started = answer.get("started_at", "")
            status.update(f"reproducing ({reproduction_id}, since {started})...")
            time.sleep(poll_s)


def reproduce(
    target: Annotated[str, typer.Argument(help="MODEL@VERSION, or MODEL with --latest.")],
    latest: Annotated[bool, typer.Option("--latest", help="The model's newest version.")] = False,
    lineage_file: Annotated[
        Path | None,
        typer.Option(
            help="Rebuild from this lineage (JSON, e.g. `mlops lineage MODEL VERSION`, edited) "
            "instead of the registered one; the result is still compared with the version.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the outcome.", min=1)
    ] = 1800.0,
) -> None:
    """Rebuild a model version bit for bit from the Kafka offsets in its lineage: the
    training set, the model (recorded params and seed) and its metrics, then compare with the
    registered version. The training service does the work (POST /reproductions). The last
    line is `identical`, or `differs: <what>` / `failed: <reason>` (exit 1)."""
    name, number = parse_target(target, latest)
    lineage = read_json(lineage_file) if lineage_file else None
    client = ServiceClient("training", cli_settings())
    response = client.send("POST", "/reproductions", request_body(name, number, lineage))
    if response.status_code == 503:
        raise Unreachable(f"training: {_detail(response)}")
    if response.status_code != 202:
        raise CliError(f"training: {response.status_code} {_detail(response)}")
    started = response.json()
    answer = wait_for_outcome(client, str(started["id"]), timeout)
    if report(answer) != IDENTICAL:
        raise typer.Exit(1)


def _detail(response: Any) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return str(response.text).strip()[:500]
    return detail if isinstance(detail, str) else json.dumps(detail)[:500]
