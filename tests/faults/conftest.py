"""The fault suite: one platform (the seven services as processes in a namespace of their own,
with a first model of loans and one of a regression dataset served) under a steady load while a dependency or a service fails. It runs
on a stack of its own (`make test-faults`: Kafka, PostgreSQL, MinIO and Jaeger under
.local/faults on the ports of infra/stack/faults.env), since it stops and kills that stack's
components; `make test` runs it beside the other tests, which use the main stack. Each scenario adds a row to the fault matrix, printed at the end of the
run and written to .local/fault-matrix.md (the README's table comes from there)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from infra.demo.loop import FirstData, Urls, start_platform, train_first_model
from infra.processes import drop_namespace_state
from shared.datasets.sources import friedman_records
from shared.settings import PlatformSettings
from tests.faults.harness import HEADER, Feed, Row, readings_feed
from tests.integration.kafka_helpers import unique_name
from tests.services import RunningService, namespace_topics, start_service

ROOT = Path(__file__).resolve().parents[2]
MODEL = "fault_loans"
READINGS_MODEL = "fault_readings"
FAULT_TIMEOUT_S = 900
ROWS: list[Row] = []


class FaultPlatform:
    def __init__(
        self,
        namespace: str,
        services: dict[str, RunningService],
        urls: Urls,
        bootstrap: str,
        restart: Callable[[str], RunningService],
        other_feeds: tuple[Feed, ...] = (),
    ) -> None:
        self.namespace = namespace
        self.services = services
        self.urls = urls
        self.bootstrap = bootstrap
        self.restart = restart
        """SIGKILLs a service and starts it again on its port, as its supervisor would."""
        self.other_feeds = other_feeds
        """What the load sends besides loans, each with a model served."""


def stack(*args: str) -> None:
    """infra/stack/stack.sh on the stack the suite runs on (MLOPS_HOME and the ports of the
    environment: make test-faults sets the fault stack's)."""
    done = subprocess.run(
        ["bash", str(ROOT / "infra/stack/stack.sh"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (
        f"stack.sh {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    )


def first_readings(count: int) -> FirstData:
    """Friedman readings of the last `count` seconds, their targets known: a regression model's
    first data."""
    start = datetime.now(UTC) - timedelta(seconds=count + 60)
    return FirstData("friedman", list(friedman_records(count, seed=92, start=start)), "reading_id")


@pytest.fixture(scope="session")
def platform(
    admin: AdminClient, settings: PlatformSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultPlatform]:
    namespace = unique_name("fault").replace("-", "")
    logs = tmp_path_factory.mktemp("faults")
    env = {**os.environ, "MLOPS_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    env["PYTHONUNBUFFERED"] = "1"
    env["MLOPS_KAFKA_CLIENT_EXTRA"] = json.dumps({"session.timeout.ms": "6000"})
    services: dict[str, RunningService] = {}
    extras: dict[str, dict[str, str]] = {}

    def start(name: str, wait_ready: bool = True, **extra: str) -> RunningService:
        extras[name] = extra
        services[name] = start_service(
            name, namespace, env, logs, extra_env=extra, wait_ready=wait_ready
        )
        return services[name]

    def restart(name: str) -> RunningService:
        old = services[name]
        old.process.kill()
        old.process.wait(10)
        services[name] = start_service(
            name, namespace, env, logs, extra_env=extras[name], port=old.port
        )
        return services[name]

    with namespace_topics(admin, namespace):
        try:
            start_platform(start, namespace, {})
            urls = Urls(**{n: s.url for n, s in services.items() if n in Urls.__dataclass_fields__})
            train_first_model(urls, MODEL, 600, seed=91)
            train_first_model(urls, READINGS_MODEL, 400, seed=92, data=first_readings(400))
            yield FaultPlatform(
                namespace,
                services,
                urls,
                settings.kafka_bootstrap_servers,
                restart,
                (readings_feed(READINGS_MODEL),),
            )
        finally:
            for service in reversed(list(services.values())):
                service.stop()
            if settings.database_url is not None:
                drop_namespace_state(settings.database_url.get_secret_value(), namespace)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A scenario's load, fault and recovery (and the session's platform, set up in the first
    one) take minutes, more when `make test` runs beside: each gets 15 minutes."""
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(FAULT_TIMEOUT_S))


@pytest.fixture(scope="session")
def matrix() -> list[Row]:
    return ROWS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
        *("| " + " | ".join(row.cells()) + " |" for row in ROWS),
    ]
    terminalreporter.section("fault matrix")
    for line in lines:
        terminalreporter.write_line(line)
    out = ROOT / ".local" / "fault-matrix.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
