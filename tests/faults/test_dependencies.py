"""A dependency of the platform fails under load (issue 15, scenarios 4-6): Jaeger stopped,
PostgreSQL stopped for 30 s, MinIO stopped for 30 s. The services keep their processes, pause
what needs the missing dependency, say so on /ready (503 naming it) and resume by themselves;
every acknowledged record ends exactly once in validated or rejected, none is dead-lettered,
every other effect is applied once (tests/faults/effects.py), and `/predict` keeps answering
with the loaded model. A training asked while MinIO is down
waits for it and trains; the offline store catches up."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from shared.settings import PlatformSettings
from tests.faults.conftest import MODEL, FaultPlatform, stack
from tests.faults.effects import settled_row
from tests.faults.harness import (
    Row,
    SteadyLoad,
    ask_training,
    partition_ends,
    steady_load,
    time_to_settle,
)
from tests.waiting import wait_until

OUTAGE_S = 30.0


def under_load(
    platform: FaultPlatform,
    settings: PlatformSettings,
    matrix: list[Row],
    scenario: str,
    seed: int,
    fault: Callable[[], None],
) -> SteadyLoad:
    """Runs `fault` (it returns once the dependency is back) under a steady load, then adds
    the scenario's row, checking that nothing was lost or applied twice."""
    load = steady_load(
        settings, platform.namespace, platform.urls, MODEL, seed, platform.other_feeds
    )
    try:
        time.sleep(5)
        fault()
        recovery_s = time_to_settle(load, platform.bootstrap, platform.namespace)
        time.sleep(5)  # the loop still flows afterwards
    finally:
        load.stop()
    settled_row(scenario, load, platform.bootstrap, platform.namespace, recovery_s, matrix)
    return load


def still_running(platform: FaultPlatform) -> list[str]:
    return [name for name, s in platform.services.items() if s.process.poll() is not None]


def ready_reason(url: str) -> tuple[int, str]:
    try:
        answer = httpx.get(f"{url}/ready", timeout=5)
    except httpx.HTTPError as error:
        return 0, repr(error)
    return answer.status_code, answer.text


def assert_predict_never_failed(load: SteadyLoad) -> None:
    assert load.predict_failures == [], load.predict_failures[:3]


def test_jaeger_stopped_the_data_path_does_not_notice(
    platform: FaultPlatform, settings: PlatformSettings, matrix: list[Row]
) -> None:
    def fault() -> None:
        stack("down", "jaeger")
        try:
            time.sleep(OUTAGE_S / 2)
        finally:
            stack("up", "jaeger")

    load = under_load(platform, settings, matrix, "Jaeger stopped 15 s", 501, fault)
    assert_predict_never_failed(load)
    assert load.refused == [], f"ingestion refused records: {load.refused[:3]}"
    assert still_running(platform) == []


def test_postgresql_stopped_30_s_validation_and_the_registry_pause_and_resume(
    platform: FaultPlatform, settings: PlatformSettings, matrix: list[Row]
) -> None:
    during: dict[str, tuple[int, str]] = {}

    def fault() -> None:
        stack("down", "postgres")
        try:
            time.sleep(OUTAGE_S / 2)
            during["validation"] = ready_reason(platform.services["validation"].url)
            during["registry"] = ready_reason(platform.urls.registry)
            time.sleep(OUTAGE_S / 2)
        finally:
            stack("up", "postgres")

    load = under_load(platform, settings, matrix, "PostgreSQL stopped 30 s", 502, fault)
    assert_predict_never_failed(load)
    assert still_running(platform) == []
    models = httpx.get(f"{platform.urls.registry}/models/{MODEL}", timeout=10)
    assert models.status_code == 200, "the registry answers again by itself"
    for name in ("validation", "registry"):
        status, body = during[name]
        assert status == 503 and "database" in body, f"{name}: {status} {body}"


def offline_behind(platform: FaultPlatform) -> int:
    """How many data.validated messages the offline store has not written yet."""
    answer = httpx.get(f"{platform.urls.feature_store}/training-sets/coverage", timeout=10)
    covered = {
        (c["topic"], c["partition"]): c["offset"]
        for c in answer.json()["coverage"]
        if c["topic"].endswith(".data.validated")
    }
    ends = partition_ends(platform.bootstrap, f"{platform.namespace}.data.validated")
    return sum(end - covered.get((topic, p), 0) for (topic, p), end in ends.items())


def test_minio_stopped_30_s_serving_answers_training_waits_and_the_offline_store_catches_up(
    platform: FaultPlatform, settings: PlatformSettings, matrix: list[Row]
) -> None:
    during: dict[str, tuple[int, str]] = {}
    command: dict[str, str] = {}

    def fault() -> None:
        stack("down", "minio")
        try:
            time.sleep(OUTAGE_S / 3)
            during["feature_store"] = ready_reason(platform.urls.feature_store)
            during["training"] = ready_reason(platform.urls.training)
            command["id"] = ask_training(
                platform.urls.training, MODEL, "loans", "fault: minio down"
            )
            time.sleep(OUTAGE_S * 2 / 3)
        finally:
            stack("up", "minio")

    load = under_load(platform, settings, matrix, "MinIO stopped 30 s", 503, fault)
    assert_predict_never_failed(load)
    assert still_running(platform) == []
    for name in ("feature_store", "training"):
        status, body = during[name]
        assert status == 503 and "object_store" in body, f"{name}: {status} {body}"

    def finished() -> dict[str, object] | None:
        answer = httpx.get(f"{platform.urls.training}/runs/{command['id']}", timeout=10)
        return answer.json() if answer.status_code == 200 else None

    run = wait_until(finished, what="the run asked while MinIO was down to end", timeout_s=300)
    assert run["type"] == "mlops.ModelTrained", f"it waited for MinIO and trained: {run}"
    wait_until(
        lambda: offline_behind(platform) == 0,
        what="the offline store to catch up with data.validated",
        timeout_s=120,
    )
