"""The closed loop every e2e module can use: one platform in a namespace of its own, a first
model, and (on first use) one drift scenario that ends with a drift-retrained version served.

Session-scoped, so the closed-loop, reproduction and lineage tests share one run of it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from infra.demo.loop import EventWatcher, Urls, start_platform, train_first_model
from infra.processes import drop_namespace_state
from shared.settings import PlatformSettings
from tests.e2e.closed_loop import (
    FIRST_MODEL_RECORDS,
    MODEL,
    MONITORING,
    SEED,
    SWITCH_AFTER,
    DriftRetrain,
    Loop,
    stream,
)
from tests.integration.kafka_helpers import unique_name
from tests.services import RunningService, namespace_topics, start_service
from tests.waiting import wait_until

# The closed loop runs as `MLOPS_REPLICAS` would run it: two processes of each consumer
# service and of serving, sharing their groups (the tests call the first of each; a
# monitoring replica answers for the other).
REPLICAS = {
    name: 2
    for name in ("validation", "feature_store", "training", "registry", "serving", "monitoring")
}


@pytest.fixture(scope="session")
def loop(
    admin: AdminClient, settings: PlatformSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Loop]:
    namespace = unique_name("e2el").replace("-", "")
    logs: Path = tmp_path_factory.mktemp("closed-loop")
    env = {**os.environ, "MLOPS_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    env["PYTHONUNBUFFERED"] = "1"
    services: dict[str, RunningService] = {}
    processes: list[RunningService] = []
    with namespace_topics(admin, namespace):
        watcher = EventWatcher(settings.kafka_bootstrap_servers, namespace, f"{namespace}.test")
        try:

            def start(name: str, wait_ready: bool = True, **extra: str) -> RunningService:
                service = start_service(
                    name, namespace, env, logs, extra_env=extra, wait_ready=wait_ready
                )
                processes.append(service)
                return services.setdefault(name, service)

            start_platform(start, namespace, MONITORING, replicas=REPLICAS)
            urls = Urls(**{n: s.url for n, s in services.items() if n in Urls.__dataclass_fields__})
            watcher.start()
            version, next_index = train_first_model(urls, MODEL, FIRST_MODEL_RECORDS, SEED)
            yield Loop(services, urls, watcher, version, next_index)
        finally:
            watcher.stop()
            for service in reversed(processes):
                service.stop()
            if settings.database_url is not None:
                drop_namespace_state(settings.database_url.get_secret_value(), namespace)


@pytest.fixture(scope="session")
def drift_retrain(loop: Loop) -> DriftRetrain:
    """Streams applications whose Agrawal function switches after SWITCH_AFTER, until a
    drift-retrained version is promoted and serving answers with it."""
    switch = loop.next_index + SWITCH_AFTER
    running = stream(loop, drift_at=switch)
    try:
        watcher = loop.watcher
        wait_until(
            lambda: watcher.drift_commands(), what="a drift-triggered TrainModel", timeout_s=120
        )

        def promoted_or_rejected() -> list:
            rejected = [s.data for s in watcher.seen("mlops.ModelRejected")]
            assert not rejected, f"the retrained version was rejected: {rejected}"
            return [
                s
                for s in watcher.seen("mlops.ModelPromoted")
                if s.data["version"] > loop.first_version
            ]

        promoted = wait_until(promoted_or_rejected, what="a new version promoted", timeout_s=180)
        new_version = promoted[0].data["version"]
        wait_until(
            lambda: (running.snapshot().version or 0) >= new_version,
            what=f"serving to answer with v{new_version}",
            timeout_s=60,
        )
        wait_until(
            lambda: running.snapshot().phases["after"].predicted >= 100,
            what="predictions of the new version",
            timeout_s=60,
        )
    finally:
        stats = running.stop()
        loop.next_index += stats.sent
    return DriftRetrain(stats, new_version)
