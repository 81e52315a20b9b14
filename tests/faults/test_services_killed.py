"""Each service SIGKILLed in turn mid-stream and started again, as the stack's supervisor
does (issue 15, scenario 2), under one steady load: every acknowledged record ends exactly
once in validated or rejected, none is dead-lettered, a training killed mid-run is trained
once after the restart, and `/predict` fails only while serving itself is down (one replica
here: the stack runs several behind HAProxy for that)."""

from __future__ import annotations

import time

import httpx

from shared.settings import PlatformSettings
from tests.faults.conftest import MODEL, FaultPlatform
from tests.faults.harness import Row, read_topic, row, settle, steady_load
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


def test_each_service_sigkilled_in_turn_mid_stream_loses_nothing_and_applies_nothing_twice(
    platform: FaultPlatform, settings: PlatformSettings, matrix: list[Row]
) -> None:
    load = steady_load(settings, platform.namespace, platform.urls, MODEL, 504)
    serving_down: tuple[float, float] | None = None
    try:
        time.sleep(5)
        command_id = ""
        for name in IN_TURN:
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
