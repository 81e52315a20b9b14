"""`mlops train`: ask the training service for a run, optionally wait for its outcome.

With --wait it prints the run's ModelTrained and exits 0, or prints the reason of its
TrainingFailed (refused or failed) on stderr and exits 1, as soon as the run ends."""

from __future__ import annotations

import getpass
import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console

from shared.cli.common import CliError, ServiceClient, cli_settings

err = Console(stderr=True)
FAILED_TYPE = "mlops.TrainingFailed"


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`max_depth=4` -> {"max_depth": 4}: the value is JSON when it parses, else a string."""
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{pair!r}: expected name=value", param_hint="--param")
        try:
            params[name] = json.loads(text)
        except json.JSONDecodeError:
            params[name] = text
    return params


def parse_since(text: str) -> datetime:
    """An ISO 8601 time; without an offset it is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 time (e.g. 2024-05-01T12:00:00+00:00)",
            param_hint="--since",
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def train(
    model: Annotated[str, typer.Argument(help="The model to train (its registry name).")],
    dataset: Annotated[str, typer.Option(help="Its dataset spec's name.")],
    reason: Annotated[str, typer.Option(help="Why; kept in the model's lineage.")] = "mlops train",
    seed: Annotated[int | None, typer.Option(min=0, help="Default: the service's.")] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="name=value overriding the spec's (repeatable).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Train only on records from this time on (ISO 8601; no offset: UTC)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="Wait for the run; exit 1 with the reason when it fails.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 600.0,
) -> None:
    """Ask for a training run: a TrainModel command confirmed on training.requests."""
    settings = cli_settings()
    client = ServiceClient("training", settings)
    body: dict[str, Any] = {
        "model_name": model,
        "dataset": dataset,
        "reason": reason,
        "params": parse_params(param or []),
    }
    if seed is not None:
        body["seed"] = seed
    if since is not None:
        body["since"] = parse_since(since).isoformat()
    headers = {"X-Requested-By": f"cli:{getpass.getuser()}"}
    answer = client.request("POST", "/train", body, headers=headers)
    command_id = answer["command_id"]
    print(command_id)
    if not wait:
        return
    finished = wait_for_run(client, command_id, timeout)
    data = finished.get("data", {})
    if finished.get("type") == FAILED_TYPE:
        raise CliError(
            f"training of {data.get('model_name')} {data.get('outcome', 'failed')} "
            f"({data.get('error')}): {data.get('reason')}"
        )
    err.print(f"run {data.get('run_id')} of {data.get('model_name')} finished")
    print(json.dumps(finished, indent=2, default=str))


def wait_for_run(client: ServiceClient, command_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    with err.status(f"training {command_id} ..."):
        while time.monotonic() < deadline:
            response = client.send("GET", f"/runs/{command_id}")
            if response.status_code == 200:
                result: dict[str, Any] = response.json()
                return result
            if response.status_code not in (202, 404):  # running, not started yet
                raise CliError(f"training: {response.status_code} {response.text[:300]}")
            time.sleep(1.0)
    raise CliError(f"the run of {command_id} did not finish within {timeout_s:.0f}s")
