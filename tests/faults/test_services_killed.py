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

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Message
from confluent_kafka.admin import AdminClient

from infra.demo.loop import DATASET
from shared.settings import PlatformSettings
from tests.faults.conftest import MODEL, FaultPlatform
from tests.faults.harness import Row, partition_ends, read_topic, row, settle, steady_load
from tests.faults.replica import (
    Replica,
    record_ids,
    replay,
    replica_beside,
    train_in_replica,
    versions,
)
from tests.waiting import wait_until

IN_TURN = ("validation", "feature_store", "monitoring", "training", "registry", "serving")


def train_and_wait_until_running(platform: FaultPlatform) -> str:
    """Asks for a training and returns once its run is under way (GET /runs answers 202; or
    200 if it ended between two polls, 50 ms apart: a run takes seconds)."""
    asked = httpx.post(
        f"{platform.urls.training}/train",
        json={"model_name": MODEL, "dataset": "loans", "reason": "fault: killed mid-run"},
        timeout=30,
    )
    assert asked.status_code == 202, asked.text
    command_id = asked.json()["command_id"]
    url = f"{platform.urls.training}/runs/{command_id}"
    wait_until(
        lambda: httpx.get(url, timeout=10).status_code in (200, 202),
        what="the run to be under way",
        timeout_s=120,
        interval_s=0.05,
    )
    return command_id


class ReplayBeside:
    """The replay, in a thread of its own, of production into the replica."""

    def __init__(self, platform: FaultPlatform, replica: Replica, checkpoints: Path) -> None:
        self.failure: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(platform.namespace, replica.namespace, checkpoints)
        )

    def _run(self, production: str, replica: str, checkpoints: Path) -> None:
        try:
            replay(production, replica, checkpoints)
        except BaseException as error:
            self.failure = error

    def start(self) -> ReplayBeside:
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(300)
        assert not self._thread.is_alive(), "the replay did not end"
        if self.failure is not None:
            raise self.failure


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
        ended = time.monotonic()
        settle(set(load.acked), platform.bootstrap, platform.namespace, 240)
        recovery_s = time.monotonic() - ended
        time.sleep(5)
    finally:
        load.stop()
    found = settle(set(load.acked), platform.bootstrap, platform.namespace, 240)
    outcome = row("SIGKILL of each service in turn", load, found, recovery_s)
    matrix.append(outcome)

    assert outcome.records_in > 0
    assert (outcome.lost, outcome.twice, outcome.dead_lettered) == (0, 0, 0), outcome
    assert serving_down is not None
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
    check_the_replica(platform, replica, specs_topic, specs_before, trained, matrix)


def check_the_replica(
    platform: FaultPlatform,
    replica: Replica,
    specs_topic: str,
    specs_before: dict[tuple[str, int], int],
    production_trained: list[Message],
    matrix: list[Row],
) -> None:
    """The replica validated every replayed record once and trained its own model; production
    kept its own specs and versions."""
    started = time.monotonic()
    replayed = record_ids(platform.bootstrap, f"{replica.namespace}.data.raw")
    assert replayed, "nothing was replayed"

    def outcomes() -> Counter[str]:
        return Counter(
            record
            for name in ("data.validated", "data.rejected")
            for record in record_ids(platform.bootstrap, f"{replica.namespace}.{name}")
        )

    wait_until(
        lambda: set(replayed) <= outcomes().keys(),
        what="the replica to validate every replayed record",
        timeout_s=180,
        interval_s=2,
    )
    found = outcomes()
    version = train_in_replica(replica, MODEL, DATASET)
    matrix.append(
        Row(
            scenario="replay beside production during the SIGKILLs",
            records_in=len(replayed),
            records_out=sum(1 for record in replayed if record in found),
            lost=len(set(replayed) - found.keys()),
            twice=sum(1 for record in replayed if found[record] > 1),
            dead_lettered=0,
            predict_ok=0,
            predict_failed=0,
            recovery_s=time.monotonic() - started,
        )
    )
    assert len(set(replayed)) == len(replayed), "the replay copied a record twice"
    assert all(found[record] == 1 for record in replayed), "the replica validated twice"
    assert set(found) == set(replayed), "the replica validated records it was not given"
    assert version == 1
    assert partition_ends(platform.bootstrap, specs_topic) == specs_before
    production_runs = {
        m.value() for m in production_trained if b'"mlops.ModelTrained"' in m.value()
    }
    assert len(versions(platform.urls.registry, MODEL)) == len(production_runs), (
        "production's registry holds a version its own training did not make"
    )
