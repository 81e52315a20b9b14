"""Scenario 2 at two of its named moments, under the steady load: the registry SIGKILLed
mid-registration (the run's ModelTrained is on the topic, its version not answered yet), then
serving SIGKILLed mid-swap (a champion change was just published). The run is registered once,
serving comes back with the champion the registry names, and /predict fails only while serving
itself is down (one replica here)."""

from __future__ import annotations

import json
import os
import time

import httpx

from shared.settings import PlatformSettings
from tests.faults.conftest import MODEL, FaultPlatform
from tests.faults.effects import settled_row
from tests.faults.harness import (
    Row,
    ask_training,
    read_topic,
    steady_load,
    time_to_settle,
)
from tests.faults.replica import versions
from tests.waiting import wait_until


def api_key() -> dict[str, str]:
    keys = json.loads(os.environ["MLOPS_REGISTRY_API_KEYS"])
    return {"X-API-Key": next(iter(keys.values()))}


def trained_run(platform: FaultPlatform, command_id: str) -> dict[str, object] | None:
    """The ModelTrained (or TrainingFailed) of a command, once on models.trained."""
    for message in read_topic(platform.bootstrap, f"{platform.namespace}.models.trained"):
        if command_id.encode() in message.value():  # the envelope's causation or the data
            return dict(json.loads(message.value()))
    return None


def registered_runs(platform: FaultPlatform) -> list[str]:
    answer = httpx.get(f"{platform.urls.registry}/models/{MODEL}/versions", timeout=30)
    answer.raise_for_status()
    return [v["run_id"] for v in answer.json()]


def kill_the_registry_mid_registration(platform: FaultPlatform) -> str:
    """Trains MODEL and SIGKILLs the registry the moment the run's outcome is published;
    returns the run's id."""
    command_id = ask_training(platform.urls.training, MODEL, "loans", "fault: registry killed")
    event = wait_until(
        lambda: trained_run(platform, command_id),
        what="the run's outcome on models.trained",
        timeout_s=300,
        interval_s=0.05,
    )
    platform.restart("registry")
    assert event["type"] == "mlops.ModelTrained", event
    return str(event["data"]["run_id"])


def champion(platform: FaultPlatform) -> int:
    answer = httpx.get(f"{platform.urls.registry}/models/{MODEL}/aliases/champion", timeout=30)
    answer.raise_for_status()
    return int(answer.json()["version"]["version"])


def served_champion(platform: FaultPlatform) -> int | None:
    answer = httpx.get(f"{platform.urls.serving}/models", timeout=30)
    for model in answer.json():
        if model["model"] == MODEL and model["champion_version"] is not None:
            return int(model["champion_version"])
    return None


def kill_serving_mid_swap(platform: FaultPlatform, to_version: int) -> tuple[float, float]:
    """Points the champion at `to_version` and SIGKILLs serving right after; returns when
    serving was down."""
    changed = httpx.put(
        f"{platform.urls.registry}/models/{MODEL}/aliases/champion",
        json={"version": to_version, "reason": "fault: serving killed mid-swap"},
        headers=api_key(),
        timeout=30,
    )
    assert changed.status_code == 200, changed.text
    killed_at = time.monotonic()
    platform.restart("serving")
    return killed_at, time.monotonic()


def test_the_registry_killed_mid_registration_and_serving_mid_swap_lose_and_repeat_nothing(
    platform: FaultPlatform, settings: PlatformSettings, matrix: list[Row]
) -> None:
    load = steady_load(
        settings, platform.namespace, platform.urls, MODEL, 505, platform.other_feeds
    )
    try:
        time.sleep(5)
        run_id = kill_the_registry_mid_registration(platform)
        wait_until(
            lambda: run_id in registered_runs(platform),
            what="the run killed mid-registration to be registered",
            timeout_s=180,
        )
        before = champion(platform)
        to_version = next(v for v in versions(platform.urls.registry, MODEL) if v != before)
        serving_down = kill_serving_mid_swap(platform, to_version)
        wait_until(
            lambda: served_champion(platform) == to_version,
            what="serving to come back with the champion the registry names",
            timeout_s=120,
        )
        recovery_s = time_to_settle(load, platform.bootstrap, platform.namespace)
        time.sleep(5)
    finally:
        load.stop()
    scenario = "SIGKILL of the registry mid-registration, serving mid-swap"
    settled_row(
        scenario, load, platform.bootstrap, platform.namespace, recovery_s, matrix,
        serving_killed=[serving_down[0]],
    )  # fmt: skip
    assert registered_runs(platform).count(run_id) == 1, "the run was registered twice"
    assert champion(platform) == to_version
    outside = [at for at in load.predict_failed_at if not serving_down[0] <= at <= serving_down[1]]
    assert outside == [], f"/predict failed while serving was up: {load.predict_failures[:3]}"
