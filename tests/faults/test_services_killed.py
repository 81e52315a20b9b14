"""Each service SIGKILLed in turn mid-stream and started again, as the stack's supervisor
does (issue 15, scenario 2), under one steady load: every acknowledged record ends exactly
once in validated or rejected, none is dead-lettered, a training killed mid-run is trained
once after the restart, and `/predict` fails only while serving itself is down (one replica
here: the stack runs several behind HAProxy for that).

Beside it (scenario 9), a replay of production's specs, records and labels into a namespace
of its own runs while production's services are being killed; the replica validates every
replayed record once and trains its own model of production's name, and production does not
notice: each of its records still comes out once (a replayed record leaking into production
would come out twice), its specs topic and its registry's versions are its own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from shared.settings import PlatformSettings
from tests.faults.conftest import MODEL, FaultPlatform
from tests.faults.effects import settled_row
from tests.faults.harness import (
    Row,
    ask_training,
    partition_ends,
    read_topic,
    steady_load,
    time_to_settle,
)
from tests.faults.replica import ReplayBeside, Replica, check_the_replica, replica_beside
from tests.waiting import wait_until

IN_TURN = ("validation", "feature_store", "monitoring", "training", "registry", "serving")


def train_and_wait_until_running(platform: FaultPlatform) -> str:
    """Asks for a training and returns once its run is under way (GET /runs answers 202; or
    200 if it ended between two polls, 50 ms apart: a run takes seconds)."""
    command_id = ask_training(platform.urls.training, MODEL, "loans", "fault: killed mid-run")
    url = f"{platform.urls.training}/runs/{command_id}"
    wait_until(
        lambda: httpx.get(url, timeout=10).status_code in (200, 202),
        what="the run to be under way",
        timeout_s=120,
        interval_s=0.05,
    )
    return command_id


@pytest.fixture
def replica(
    platform: FaultPlatform,
    admin: AdminClient,
    settings: PlatformSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Replica]:
    with replica_beside(
        admin, settings, platform.bootstrap, tmp_path_factory.mktemp("replica")
    ) as running:
        yield running


def test_each_service_sigkilled_in_turn_mid_stream_loses_nothing_and_applies_nothing_twice(
    platform: FaultPlatform,
    replica: Replica,
    settings: PlatformSettings,
    matrix: list[Row],
    tmp_path: Path,
) -> None:
    specs_topic = f"{platform.namespace}.data.specs"
    specs_before = partition_ends(platform.bootstrap, specs_topic)
    load = steady_load(
        settings, platform.namespace, platform.urls, MODEL, 504, platform.other_feeds
    )
    serving_down: tuple[float, float] | None = None
    replaying: ReplayBeside | None = None
    try:
        time.sleep(5)
        command_id = ""
        for name in IN_TURN:
            if name == "feature_store":
                replaying = ReplayBeside(platform, replica, tmp_path).start()
            if name == "training":
                command_id = train_and_wait_until_running(platform)
            killed_at = time.monotonic()
            platform.restart(name)
            if name == "serving":
                serving_down = (killed_at, time.monotonic())
            time.sleep(3)
        recovery_s = time_to_settle(load, platform.bootstrap, platform.namespace)
        time.sleep(5)
    finally:
        load.stop()
    scenario = "SIGKILL of each service in turn"
    assert serving_down is not None
    settled_row(
        scenario, load, platform.bootstrap, platform.namespace, recovery_s, matrix,
        serving_killed=[serving_down[0]],
    )  # fmt: skip
    outside = [at for at in load.predict_failed_at if not serving_down[0] <= at <= serving_down[1]]
    assert outside == [], f"/predict failed while serving was up: {load.predict_failures[:3]}"
    wait_until(
        lambda: (
            httpx.get(f"{platform.urls.training}/runs/{command_id}", timeout=10).status_code == 200
        ),
        what="the run killed mid-fit to end",
        timeout_s=300,
    )
    trained = [
        message
        for message in read_topic(platform.bootstrap, f"{platform.namespace}.models.trained")
        if (message.key() or b"") == MODEL.encode()
    ]
    outcomes = {m.value() for m in trained if command_id.encode() in m.value()}
    assert len(outcomes) == 1, "the command killed mid-run ended once (a re-emission is identical)"

    assert replaying is not None
    replaying.join()
    check_the_replica(platform, replica, specs_before, trained, "SIGKILLs", matrix)
