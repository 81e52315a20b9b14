"""`mlops status`: is the stack up, and is every service ready?"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Annotated

import httpx
import typer
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.table import Table

from shared.cli.common import UNREACHABLE, CliError, CliSettings, cli_settings
from shared.kafka.config import client_config
from shared.kafka.topics import TopicCatalog
from shared.settings import SERVICE_PORTS, PlatformSettings

out = Console()


@dataclass(frozen=True)
class Check:
    component: str
    address: str
    ok: bool
    detail: str
    reachable: bool = True


def check_kafka(settings: PlatformSettings) -> Check:
    address = settings.kafka_bootstrap_servers
    try:
        metadata = AdminClient(client_config(settings, "mlops-status")).list_topics(timeout=5)
    except KafkaException as error:
        return Check("kafka", address, False, str(error.args[0]), reachable=False)
    catalog = TopicCatalog.load()
    missing = [
        s.name
        for s in catalog.specs.values()
        if s.full_name(settings.namespace) not in metadata.topics
    ]
    detail = f"{len(metadata.brokers)} broker(s); namespace {settings.namespace!r}: "
    detail += f"{len(catalog.specs) - len(missing)}/{len(catalog.specs)} topics"
    return Check(
        "kafka", address, not missing, detail + (f", missing {missing}" if missing else "")
    )


def check_http(component: str, url: str, timeout_s: float = 3.0) -> Check:
    try:
        response = httpx.get(url, timeout=timeout_s)
    except httpx.TransportError as error:
        return Check(
            component, url, False, f"unreachable ({type(error).__name__})", reachable=False
        )
    ok = response.status_code == 200
    detail = "ready" if ok else f"{response.status_code} {not_ready_reason(response)}"
    return Check(component, url, ok, detail)


def not_ready_reason(response: httpx.Response, limit: int = 300) -> str:
    """What a service's /ready says is failing ("check: reason; ..."), else its text."""
    try:
        failing = response.json().get("failing")
    except (ValueError, AttributeError):
        failing = None
    if isinstance(failing, dict) and failing:
        text = "; ".join(f"{check}: {reason}" for check, reason in failing.items())
    else:
        text = response.text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def checks(platform: PlatformSettings, cli: CliSettings) -> list[Check]:
    scheme = "https" if platform.s3_secure else "http"
    found = [
        check_kafka(platform),
        check_http("minio", f"{scheme}://{platform.s3_endpoint}/minio/health/live"),
        check_http("jaeger", f"{platform.jaeger_query_url.rstrip('/')}/api/services"),
    ]
    found += [check_http(name, f"{cli.service_url(name)}/ready") for name in SERVICE_PORTS]
    return found


def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per component.")] = False,
) -> None:
    """The stack (Kafka and the namespace's topics, MinIO, Jaeger) and every service's /ready.
    Exit 3 when anything is unreachable, 1 when all answer but something is not ready."""
    results = checks(PlatformSettings(), cli_settings())
    if as_json:
        print(json.dumps([asdict(check) for check in results], indent=2))
    else:
        table = Table("component", "address", "state", "detail")
        for check in results:
            state = (
                "[green]ready[/green]"
                if check.ok
                else "[yellow]not ready[/yellow]"
                if check.reachable
                else "[red]DOWN[/red]"
            )
            table.add_row(check.component, check.address, state, check.detail)
        out.print(table)
    down = [check.component for check in results if not check.reachable]
    if down:
        raise CliError(f"unreachable: {', '.join(down)}", UNREACHABLE)
    waiting = [check.component for check in results if not check.ok]
    if waiting:
        raise CliError(f"not ready: {', '.join(waiting)}")
