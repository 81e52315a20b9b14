"""The closed loop end to end, through every service in a namespace of the test's own: a
first model serves a steady stream of loan applications; River's Agrawal classification
function switches; monitoring detects the drift; exactly one retrain on the data since the
drift follows; the registry promotes it against the champion on post-drift data; serving
hot-swaps to it with no failed request; and every step names the drift that caused it.
A stationary stream of the same length raises nothing; labels that never arrive expire."""

from __future__ import annotations

from datetime import datetime

import httpx

from tests.e2e.closed_loop import (
    FIRST_MODEL_RECORDS,
    MODEL,
    STREAM,
    DriftRetrain,
    Loop,
    performance,
    stream,
)
from tests.waiting import wait_until


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
    # the live feature values, next to the training reference of the version's lineage
    lineage = httpx.get(
        f"{loop.urls.registry}/models/{MODEL}/versions/{loop.first_version}/lineage", timeout=10
    ).json()
    trained_on = lineage["lineage"]["data_quality"]["numeric"]["salary"]
    drift_view = httpx.get(f"{loop.urls.monitoring}/drift", timeout=10).json()
    salary = drift_view["training_reference"][MODEL][str(loop.first_version)]["salary"]
    assert salary["training"]["mean"] == trained_on["mean"]
    assert salary["live"]["count"] >= stats.sent
    assert abs(salary["mean_shift_in_std"]) < 0.5, "a stationary stream stays near its reference"
    # predictions whose labels never came expired (LABEL_WAIT_S) and were counted
    wait_until(
        lambda: performance(loop, loop.first_version).get("expired", 0) >= stats.labels_dropped,
        what=f"{stats.labels_dropped} unlabelled predictions to expire",
        timeout_s=30,
    )


def test_drift_is_detected_and_one_retrain_on_post_drift_data_is_promoted_and_served(
    loop: Loop, drift_retrain: DriftRetrain
) -> None:
    stats, new_version = drift_retrain.stats, drift_retrain.new_version
    watcher = loop.watcher
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
    assert drift.trace_id == command.trace_id, "the DriftDetected starts the retraining's trace"
    # the new model does better on the new concept than the old one did
    during, after = stats.phases["during"].accuracy, stats.phases["after"].accuracy
    assert during is not None and after is not None and after > during
