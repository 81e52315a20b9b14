"""The closed loop end to end, through every service in a namespace of the test's own: a
first model serves a steady stream of loan applications; River's Agrawal classification
function switches; monitoring detects the drift; exactly one retrain on the data since the
drift follows; the registry promotes it against the champion on post-drift data; serving
hot-swaps to it with no failed request; and every step names the drift that caused it.
A stationary stream of the same length raises nothing; labels that never arrive expire."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from infra.demo.loop import (
    FEATURE_DETECTORS,
    EventWatcher,
    LoopStream,
    StreamPlan,
    Urls,
    train_first_model,
)
from infra.processes import drop_namespace_state
from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import unique_name
from tests.services import RunningService, namespace_topics, start_service
from tests.waiting import wait_until

MODEL = "loans"
SEED = 31
FIRST_MODEL_RECORDS = 1000
RATE = 40.0
STREAM = 800  # applications per stream; the drift stream switches after SWITCH_AFTER
SWITCH_AFTER = 300
DROP_LABEL_EVERY = 25
MONITORING = {
    "MLOPS_MONITORING_LABEL_WAIT_S": "5",
    "MLOPS_MONITORING_DEBOUNCE_S": "600",
    "MLOPS_MONITORING_COOLDOWN_S": "600",
    "MLOPS_MONITORING_MIN_LABELS_AFTER_DRIFT": "400",
    "MLOPS_MONITORING_MAX_RETRAINS_PER_HOUR": "2",
    "MLOPS_MONITORING_DETECTORS": FEATURE_DETECTORS,
}


@dataclass
class Loop:
    services: dict[str, RunningService]
    urls: Urls
    watcher: EventWatcher
    first_version: int
    next_index: int


@pytest.fixture(scope="module")
def loop(
    admin: AdminClient, settings: PlatformSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Loop]:
    namespace = unique_name("e2el").replace("-", "")
    logs: Path = tmp_path_factory.mktemp("closed-loop")
    env = {**os.environ, "MLOPS_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    env["PYTHONUNBUFFERED"] = "1"
    services: dict[str, RunningService] = {}
    with namespace_topics(admin, namespace):
        watcher = EventWatcher(settings.kafka_bootstrap_servers, namespace, f"{namespace}.test")
        try:

            def start(name: str, wait_ready: bool = True, **extra: str) -> RunningService:
                services[name] = start_service(
                    name, namespace, env, logs, extra_env=extra, wait_ready=wait_ready
                )
                return services[name]

            registry = start("registry", MLOPS_REGISTRY_DATABASE_SCHEMA=f"reg_{namespace}")
            features = start("feature_store", MLOPS_FEATURE_STORE_OFFLINE_FLUSH_S="1")
            start("ingestion")
            start("validation")
            start(
                "training",
                MLOPS_TRAINING_FEATURE_STORE_URL=features.url,
                MLOPS_TRAINING_REGISTRY_URL=registry.url,
                MLOPS_TRAINING_DATABASE_SCHEMA=f"train_{namespace}",
                MLOPS_TRAINING_RETRAIN_EVERY_LABELS="1000000",
            )
            start(
                "serving",
                wait_ready=False,
                MLOPS_SERVING_MODELS=f'["{MODEL}"]',
                MLOPS_SERVING_REGISTRY_URL=registry.url,
                MLOPS_SERVING_FEATURE_STORE_URL=features.url,
            )
            start("monitoring", **MONITORING)
            urls = Urls(**{n: s.url for n, s in services.items() if n in Urls.__dataclass_fields__})
            watcher.start()
            version, next_index = train_first_model(urls, MODEL, FIRST_MODEL_RECORDS, SEED)
            yield Loop(services, urls, watcher, version, next_index)
        finally:
            watcher.stop()
            for service in reversed(list(services.values())):
                service.stop()
            if settings.database_url is not None:
                drop_namespace_state(settings.database_url.get_secret_value(), namespace)


def stream(loop: Loop, drift_at: int | None) -> LoopStream:
    plan = StreamPlan(
        model=MODEL,
        seed=SEED,
        start_index=loop.next_index,
        rate=RATE,
        drift_at=drift_at,
        drop_label_every=DROP_LABEL_EVERY,
    )
    return LoopStream(loop.urls, plan).start()


def performance(loop: Loop, version: int) -> dict:
    rows = httpx.get(f"{loop.urls.monitoring}/performance", timeout=10).json()["models"]
    return next((r for r in rows if r["model_version"] == version), {})


def test_a_stationary_stream_raises_no_drift_and_unlabelled_predictions_expire(
    loop: Loop,
) -> None:
    drifts_before = len(loop.watcher.drifts())
    running = stream(loop, drift_at=None)
    wait_until(lambda: running.snapshot().sent >= STREAM, what="the stream", timeout_s=120)
    stats = running.stop()
    loop.next_index += stats.sent
    labelled = stats.labels_sent
    wait_until(
        lambda: performance(loop, loop.first_version).get("labelled", 0) >= labelled,
        what="monitoring to join every label",
        timeout_s=60,
    )
    assert stats.failed_requests == 0, list(stats.failures)
    assert stats.phases["before"].accuracy is not None and stats.phases["before"].accuracy > 0.9
    assert len(loop.watcher.drifts()) == drifts_before
    assert loop.watcher.drift_commands() == []
    # predictions whose labels never came expired (LABEL_WAIT_S) and were counted
    wait_until(
        lambda: performance(loop, loop.first_version).get("expired", 0) >= stats.labels_dropped,
        what=f"{stats.labels_dropped} unlabelled predictions to expire",
        timeout_s=30,
    )


def test_drift_is_detected_and_one_retrain_on_post_drift_data_is_promoted_and_served(
    loop: Loop,
) -> None:
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

    assert stats.failed_requests == 0, list(stats.failures)
    assert stats.ingest_failures == 0
    # exactly one retrain, caused by a DriftDetected
    [command] = watcher.drift_commands()
    drift = watcher.by_id(command.data["trigger"]["event_id"])
    assert drift is not None and drift.type == "mlops.DriftDetected"
    assert drift.data["model_version"] == loop.first_version
    assert command.event["causationid"] == drift.event["id"]
    assert command.event["correlationid"] == drift.event["correlationid"]
    since = datetime.fromisoformat(command.data["trigger"]["since"])
    assert since == datetime.fromisoformat(drift.data["event_time"])
    # trained on the window since the drift, with the drift in its lineage
    [trained] = watcher.caused_by("mlops.ModelTrained", command.event["id"])
    lineage = trained.data["lineage"]
    assert lineage["trigger"]["event_id"] == drift.event["id"]
    assert datetime.fromisoformat(lineage["data_quality"]["first_event_time"]) >= since
    assert lineage["data_quality"]["rows_before_window"] >= FIRST_MODEL_RECORDS
    assert trained.data["baseline"]["version"] == loop.first_version
    # registered and promoted because of that training, in the same correlation
    [registered] = watcher.caused_by("mlops.ModelRegistered", trained.event["id"])
    [promotion] = watcher.caused_by("mlops.ModelPromoted", trained.event["id"])
    assert registered.data["version"] == promotion.data["version"] == new_version
    assert promotion.data["previous_version"] == loop.first_version
    chain = [drift, command, trained, registered, promotion]
    assert {s.event["correlationid"] for s in chain} == {drift.event["correlationid"]}
    kept = httpx.get(
        f"{loop.urls.registry}/models/{MODEL}/versions/{new_version}/lineage", timeout=10
    ).json()
    assert drift.event["id"] in str(kept)
    # one trace from the command on: training, registry and the swap
    assert command.trace_id and command.trace_id == trained.trace_id == promotion.trace_id
    # the new model does better on the new concept than the old one did
    during, after = stats.phases["during"].accuracy, stats.phases["after"].accuracy
    assert during is not None and after is not None and after > during
