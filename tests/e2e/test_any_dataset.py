"""Datasets the platform has never seen go through the whole loop with nothing but a spec
inferred from a sample: a classification table whose label comes with the record (River's
Phishing pages, a covariate shift: two features recoded) and a regression stream whose
target arrives later (River's FriedmanDrift, a concept drift seen in the residuals).

Each: spec inferred and registered over HTTP, the sample uploaded as CSV, a first training
asked for at once (it waits for its data and trains on all of it), served with no restart and
no setting, a steady stream with /predict traffic, the shift, drift detected by the default
detectors, a retrain that holds every record labelled before its trigger, promoted on the
spec's own metric, served; no failed request."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from statistics import mean
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from infra.demo.loop import EventWatcher, Seen, Urls, start_platform
from infra.processes import drop_namespace_state
from shared.datasets.sources import friedman_records, phishing_records
from shared.settings import PlatformSettings
from tests.e2e.any_dataset import (
    NewDataset,
    Scenario,
    ScenarioStream,
    labelled_before,
    sample_start,
)
from tests.integration.kafka_helpers import unique_name
from tests.services import RunningService, free_port, namespace_topics, start_service
from tests.waiting import wait_until

SAMPLE = 400
RATE = 25.0
BEFORE_SHIFT = 150
MONITORING = {
    "MLOPS_MONITORING_LABEL_WAIT_S": "30",
    "MLOPS_MONITORING_DEBOUNCE_S": "600",
    "MLOPS_MONITORING_COOLDOWN_S": "600",
    "MLOPS_MONITORING_MIN_LABELS_AFTER_DRIFT": "150",
}
PAGES = Scenario(
    name="new_pages",
    source=phishing_records,
    shift_option="shift_at",
    entity_key="site_id",
    event_time="seen_at",
    record_id="page_id",
    label="is_phishing",
    arrival="with_record",
    primary_metric="accuracy",
)
READINGS = Scenario(
    name="new_readings",
    source=friedman_records,
    shift_option="drift_at",
    entity_key="sensor_id",
    event_time="measured_at",
    record_id="reading_id",
    label="y",
    arrival="feedback",
    primary_metric="mae",
)


@dataclass
class Platform:
    urls: Urls
    watcher: EventWatcher
    services: dict[str, RunningService]
    restart: Callable[..., RunningService]
    """restart(name, **extra_env): the service again, on the same port."""


@pytest.fixture(scope="module")
def platform(
    admin: AdminClient, settings: PlatformSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    namespace = unique_name("e2ea").replace("-", "")
    logs: Path = tmp_path_factory.mktemp("any-dataset")
    env = {**os.environ, "MLOPS_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("MLOPS_SERVING_MODELS", None)
    services: dict[str, RunningService] = {}
    with namespace_topics(admin, namespace):
        watcher = EventWatcher(settings.kafka_bootstrap_servers, namespace, f"{namespace}.test")
        try:
            extras: dict[str, dict[str, str]] = {}

            def start(name: str, wait_ready: bool = True, **extra: str) -> RunningService:
                extras[name] = extra
                services[name] = start_service(
                    name, namespace, env, logs, extra_env=extra, wait_ready=wait_ready
                )
                return services[name]

            def restart(name: str, **changed: str) -> RunningService:
                port = services[name].port
                services[name].stop()
                services[name] = start_service(
                    name,
                    namespace,
                    env,
                    logs,
                    extra_env={**extras[name], **changed},
                    wait_ready=False,
                    port=port,
                )
                return services[name]

            start_platform(start, namespace, MONITORING)
            urls = Urls(**{n: s.url for n, s in services.items() if n in Urls.__dataclass_fields__})
            watcher.start()
            yield Platform(urls, watcher, services, restart)
        finally:
            watcher.stop()
            for service in reversed(list(services.values())):
                service.stop()
            if settings.database_url is not None:
                drop_namespace_state(settings.database_url.get_secret_value(), namespace)


def _of_model(seen: list[Seen], model: str) -> list[Seen]:
    return [s for s in seen if s.data.get("model_name") == model]


def _drift_command(platform: Platform, model: str) -> Seen | None:
    return next(iter(_of_model(platform.watcher.drift_commands(), model)), None)


def _outcome_of(platform: Platform, command: Seen) -> Seen | None:
    done = platform.watcher.caused_by("mlops.ModelTrained", command.event["id"])
    failed = [
        s
        for s in platform.watcher.seen("mlops.TrainingFailed")
        if s.data.get("command_id") == command.event["id"]
    ]
    return next(iter(done + failed), None)


def _first_model(data: NewDataset, regression: bool) -> dict[str, Any]:
    """Spec inferred and registered, sample uploaded, training asked for at once."""
    sample = data.rows(SAMPLE, sample_start(SAMPLE))
    spec = data.register_spec(sample)
    assert spec.task == ("regression" if regression else "classification")
    data.upload(sample)
    command = data.train("first model")
    outcome = wait_until(
        lambda: data.run_outcome(command), what="the first training's outcome", timeout_s=300
    )
    assert outcome["type"] == "mlops.ModelTrained", (
        outcome["data"].get("outcome"),
        outcome["data"].get("reason"),
    )
    data.first_version = wait_until(data.champion_version, what="a first champion", timeout_s=60)
    record = sample[-1][0]
    wait_until(
        lambda: data.served_version(record) == data.first_version,
        what=f"serving to answer {data.scenario.name} with its first champion",
        timeout_s=60,
    )
    return outcome["data"]


@pytest.mark.parametrize("scenario", [PAGES, READINGS], ids=lambda s: s.name)
def test_a_new_dataset_closes_the_loop(platform: Platform, scenario: Scenario) -> None:
    regression = scenario.arrival == "feedback"
    with httpx.Client(timeout=60) as client:
        data = NewDataset(scenario, platform.urls, client)
        first = _first_model(data, regression)
        assert first["lineage"]["rows"] == SAMPLE, "the first training missed uploaded records"
        assert first["evaluation"]["primary_metric"] == scenario.primary_metric

        shift_at = data.next_index + BEFORE_SHIFT
        running = ScenarioStream(data, RATE, shift_at, regression).start()
        try:
            command = wait_until(
                lambda: _drift_command(platform, scenario.name),
                what=f"a drift retrain of {scenario.name}",
                timeout_s=240,
            )
            outcome = wait_until(
                lambda: _outcome_of(platform, command), what="the retrain's outcome", timeout_s=300
            )
            assert outcome.type == "mlops.ModelTrained", outcome.data
            promoted = wait_until(
                lambda: _of_model(platform.watcher.seen("mlops.ModelPromoted"), scenario.name)[1:],
                what="the retrained version promoted",
                timeout_s=120,
            )
            new_version = int(promoted[0].data["version"])
            wait_until(
                lambda: data.stats.versions.get(new_version, 0) >= 60,
                what=f"60 predictions answered by v{new_version}",
                timeout_s=120,
            )
        finally:
            stats = running.stop()

    assert stats.sent_after_shift > 0 and stats.failed_requests == 0, list(stats.failures)
    assert data.stats.versions.get(data.first_version or 0, 0) > 0
    trained = outcome.data
    assert trained["evaluation"]["primary_metric"] == scenario.primary_metric
    assert scenario.primary_metric in promoted[0].data["reason"]
    trigger = command.data["trigger"]
    decided_at = datetime.fromisoformat(command.event["time"])
    since = datetime.fromisoformat(trigger["since"]) if trigger.get("since") else None
    needed = labelled_before(stats, data.lock, decided_at, since)
    assert trained["lineage"]["rows"] >= needed, (
        f"the retrain holds {trained['lineage']['rows']} rows; {needed} records were labelled "
        f"before its trigger at {decided_at} (since {since})"
    )
    during, after = stats.errors_by_phase["during"], stats.errors_by_phase["after"]
    assert during and after
    assert mean(after) < mean(during), (mean(during), mean(after))


def test_a_model_wrong_from_its_first_prediction_raises_drift(platform: Platform) -> None:
    """Friedman's drifted concept from the first streamed reading: the residuals never change,
    so only the comparison with the training holdout can see that the model is wrong."""
    scenario = replace(READINGS, name="wrong_readings", seed=11)
    with httpx.Client(timeout=60) as client:
        data = NewDataset(scenario, platform.urls, client)
        _first_model(data, regression=True)
        running = ScenarioStream(data, RATE, data.next_index, regression=True).start()
        try:
            drift = wait_until(
                lambda: _of_model(platform.watcher.drifts(), scenario.name),
                what="a drift of a model that is wrong from the start",
                timeout_s=180,
            )[0]
        except AssertionError as timed_out:
            view = _monitoring_view(platform, scenario.name)
            raise AssertionError(f"{timed_out}; monitoring shows {view}") from timed_out
        finally:
            stats = running.stop()
    assert drift.data["model_version"] == data.first_version
    assert drift.data["signal_kind"] == "error", drift.data
    assert stats.failed_requests == 0, list(stats.failures)


def test_a_failed_retrain_does_not_start_the_cooldown_and_is_tried_again(
    platform: Platform,
) -> None:
    """Training loses its object store (MinIO unreachable) before the drift: the retrain fails
    with its reason, monitoring records it, and once training has its store back the policy
    tries again, within the 600 s cooldown a counted retrain would have started."""
    scenario = replace(PAGES, name="retried_pages", seed=13)
    with httpx.Client(timeout=60) as client:
        data = NewDataset(scenario, platform.urls, client)
        _first_model(data, regression=False)
        platform.restart("training", MLOPS_S3_ENDPOINT=f"127.0.0.1:{free_port()}")
        running = ScenarioStream(data, RATE, data.next_index + BEFORE_SHIFT, False).start()
        try:
            failed_command = wait_until(
                lambda: _drift_command(platform, scenario.name),
                what=f"a drift retrain of {scenario.name}",
                timeout_s=240,
            )
            failure = wait_until(
                lambda: _outcome_of(platform, failed_command),
                what="the failed retrain's outcome",
                timeout_s=300,
            )
            assert failure.type == "mlops.TrainingFailed", failure.data
            assert failure.data["outcome"] == "failed" and failure.data["reason"]
            wait_until(
                lambda: _decision_outcome(platform, failed_command.event["id"]),
                what="monitoring to record the retrain as failed",
                timeout_s=60,
            )
            training = platform.restart("training")
            wait_until(training.is_ready, what="training ready again", timeout_s=90)
            retried = wait_until(
                lambda: _of_model(platform.watcher.drift_commands(), scenario.name)[1:],
                what="the policy to try the retrain again",
                timeout_s=240,
            )[0]
            outcome = wait_until(
                lambda: _outcome_of(platform, retried), what="the retry's outcome", timeout_s=300
            )
            assert outcome.type == "mlops.ModelTrained", outcome.data
            wait_until(
                lambda: _of_model(platform.watcher.seen("mlops.ModelPromoted"), scenario.name)[1:],
                what="the retried version promoted",
                timeout_s=120,
            )
        finally:
            stats = running.stop()
    assert stats.failed_requests == 0, list(stats.failures)
    recorded = _decision_outcome(platform, failed_command.event["id"])
    assert recorded and "fail" in str(recorded).lower(), recorded


def _monitoring_view(platform: Platform, model: str) -> str:
    """What monitoring shows of `model`: its live performance and its detectors."""
    try:
        performance = httpx.get(f"{platform.urls.monitoring}/performance", timeout=10).json()
        drift = httpx.get(f"{platform.urls.monitoring}/drift", timeout=10).json()
    except httpx.HTTPError as error:
        return f"nothing ({error})"
    mine = [p for p in performance.get("models", []) if p.get("model_name") == model]
    detectors = [d for d in drift.get("detectors", []) if d.get("model_name") == model]
    return f"performance {mine}, detectors {detectors}"


def _decision_outcome(platform: Platform, command_id: str) -> dict[str, Any] | None:
    """Monitoring's decision that published `command_id`, once it shows an outcome."""
    answer = httpx.get(f"{platform.urls.monitoring}/drift", timeout=10)
    for decision in answer.json().get("decisions", []):
        if decision.get("command_id") == command_id and decision.get("outcome"):
            return decision
    return None
