"""No false alarm: a stationary stream of every shipped dataset, fed through monitoring's
handlers with the default settings (features, predictions, labels with the record or late,
and the live error against the model's own holdout), raises no drift."""

from __future__ import annotations

from typing import Any

import pytest

from services.monitoring.domain.join import LabelJoin
from services.monitoring.domain.monitor import Monitor, Served
from services.monitoring.domain.policy import RetrainPolicy
from services.monitoring.handlers import Deps
from services.monitoring.settings import MonitoringSettings
from shared.events.envelope import Event
from tests.shipped_streams import ShippedStream, stationary_stream
from tests.unit.test_monitoring_handlers import InMemoryHistory, handler, info

LENGTH = 2500


def deps_for(stream: ShippedStream) -> Deps:
    settings = MonitoringSettings(_env_file=None)  # type: ignore[call-arg]
    task = stream.spec.task
    return Deps(
        monitor=Monitor(
            settings.detectors_for,
            settings.model_name_for,
            LabelJoin[Served](settings.label_wait_s),
            task_for=lambda dataset: task,
            holdout_metrics=lambda model, version: stream.holdout,
        ),
        policy=RetrainPolicy(settings.policy()),
        history=InMemoryHistory(),  # type: ignore[arg-type]
    )


def run(deps: Deps, stream: ShippedStream) -> list[Any]:
    observe = handler(deps, "data.validated")
    serve = handler(deps, "serving.predictions")
    label = handler(deps, "data.labels")
    labels = {late.record_id: late for late in stream.labels}
    emitted: list[Any] = []
    for i, (record, served) in enumerate(zip(stream.records, stream.predictions, strict=True)):
        emitted += observe(Event.create(record, source="validation"), info("v", i))
        emitted += serve(Event.create(served, source="serving"), info("p", i))
        if (late := labels.get(record.record_id)) is not None:
            emitted += label(Event.create(late, source="labels"), info("l", i))
    return emitted


@pytest.mark.parametrize("dataset", ["loans", "breast_cancer", "phishing", "friedman"])
def test_a_stationary_stream_of_a_shipped_dataset_raises_no_drift(dataset: str) -> None:
    stream = stationary_stream(dataset, LENGTH)
    deps = deps_for(stream)
    emitted = run(deps, stream)
    drifts = [e.event.data for e in emitted if e.topic == "monitoring.drift"]
    assert drifts == [], [(d.signal, d.detector, d.position) for d in drifts]
    performance = deps.monitor.performance()
    assert [row["labelled"] for row in performance] == [LENGTH], performance
    task = stream.spec.task
    assert all(row["task"] == task for row in performance)


def wrong_after(stream: ShippedStream, first: int) -> ShippedStream:
    """The same stream whose model goes wrong at `first`: the harness can see a drift."""
    regression = stream.spec.task == "regression"
    predictions = [
        served.model_copy(
            update={"prediction": served.prediction + 10.0 if regression else 1 - served.prediction}
        )
        if i >= first
        else served
        for i, served in enumerate(stream.predictions)
    ]
    return ShippedStream(stream.spec, stream.records, predictions, stream.labels, stream.holdout)


@pytest.mark.parametrize("dataset", ["loans", "breast_cancer", "phishing", "friedman"])
def test_the_same_stream_with_a_model_gone_wrong_raises_drift(dataset: str) -> None:
    stream = wrong_after(stationary_stream(dataset, LENGTH), first=1500)
    emitted = run(deps_for(stream), stream)
    drifts = [e.event.data for e in emitted if e.topic == "monitoring.drift"]
    assert drifts and min(d.position for d in drifts) > 1500 - 1, drifts
