"""Monitoring's handlers: what a prediction, a label or a validated record turns into."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.monitoring.adapters.registry import BackgroundLineages
from services.monitoring.domain.join import LabelJoin
from services.monitoring.domain.monitor import Monitor, Served
from services.monitoring.domain.policy import Decision, PolicyConfig, RetrainPolicy
from services.monitoring.domain.reference import TrainingReferences
from services.monitoring.domain.retrains import RetrainResult
from services.monitoring.handlers import (
    FORWARDED,
    INPUTS,
    Deps,
    forward_by_dataset,
    model_routes,
    routes,
)
from services.monitoring.settings import MonitoringSettings
from shared.events.envelope import Event
from shared.events.models import DriftDetected, PredictionServed
from shared.events.records import (
    FieldError,
    LabelRecorded,
    RecordRejected,
    RecordValidated,
    SourcePosition,
)
from shared.kafka.consumer import Emit, MessageInfo
from tests.waiting import wait_until

START = datetime(2026, 1, 1, tzinfo=UTC)


class InMemoryHistory:
    def __init__(self) -> None:
        self.drifts: list[Event[DriftDetected]] = []
        self.decisions: list[tuple[Decision, str | None]] = []
        self.fail_next = 0
        self.snapshots: list[list[dict[str, Any]]] = []
        self.results: list[RetrainResult] = []

    def record_drift(self, event: Event[DriftDetected]) -> None:
        self.drifts.append(event)

    def record_decision(self, decision_id: str, decision: Decision, command_id: str | None) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("database down")
        self.decisions.append((decision, command_id))

    def record_performance(self, at: float, rows: list[dict[str, Any]]) -> None:
        self.snapshots.append(rows)

    def record_result(self, result: RetrainResult) -> None:
        self.results.append(result)

    def recent_results(self, limit: int) -> list[dict[str, Any]]:
        return []

    def recent_drifts(self, limit: int) -> list[dict[str, Any]]:
        return []

    def recent_decisions(self, limit: int) -> list[dict[str, Any]]:
        return []

    def performance_history(self, limit: int) -> list[dict[str, Any]]:
        return []

    def model_performance(self, model: str, per_version: int) -> list[dict[str, Any]]:
        return []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(min_labels: int = 0, **settings: Any) -> tuple[Deps, InMemoryHistory, Clock]:
    config = MonitoringSettings(_env_file=None, **settings)  # type: ignore[call-arg]
    history, clock = InMemoryHistory(), Clock()
    deps = Deps(
        monitor=Monitor(config.detectors_for, config.model_name_for, LabelJoin[Served](60)),
        policy=RetrainPolicy(
            PolicyConfig(debounce_s=60, cooldown_s=0, min_labels_after_drift=min_labels)
        ),
        history=history,
        history_every=2,
        clock=clock,
    )
    return deps, history, clock


def handler(deps: Deps, topic: str) -> Any:
    """What monitoring does with a message of `topic`: the models' events directly, the
    inputs through monitoring.inputs, where the forwarding stage puts them."""
    if topic in dict(FORWARDED):
        [route] = routes(deps)
        assert route.consumes == INPUTS
        return route.handler
    return next(route.handler for route in model_routes(deps) if route.consumes == topic)


def info(topic: str, offset: int) -> MessageInfo:
    return MessageInfo(topic=topic, partition=0, offset=offset, key=None, timestamp_ms=None)


def record(index: int, salary: float) -> Event[RecordValidated]:
    return Event[RecordValidated].create(
        RecordValidated(
            dataset="loans",
            spec_version=1,
            record_id=f"r{index}",
            entity="e",
            event_time=START + timedelta(seconds=index),
            values={"salary": salary, "elevel": "2"},
            source=SourcePosition(topic="raw", partition=0, offset=index),
        ),
        source="test",
    )


def serve_once(deps: Deps) -> None:
    """A model of the dataset served: its feature drifts may retrain it from now on."""
    handler(deps, "serving.predictions")(prediction(-1, 1), info("p", 10_000))


def feed_shift(deps: Deps, served: bool = True) -> list[Emit]:
    if served:
        serve_once(deps)
    observe = handler(deps, "data.validated")
    emitted: list[Emit] = []
    for i in range(800):
        emitted += observe(record(i, 1000.0 + (i % 5) + (500.0 if i >= 500 else 0.0)), info("v", i))
    return emitted


def test_a_feature_shift_emits_drift_and_one_drift_retrain() -> None:
    deps, history, _ = make(model_names={"loans": "loans-hgb"})
    emitted = feed_shift(deps)
    drifts = [e for e in emitted if e.topic == "monitoring.drift"]
    commands = [e for e in emitted if e.topic == "training.requests"]
    assert drifts and all(e.key == "loans-hgb" for e in drifts)
    assert drifts[0].event.data.signal == "salary" and drifts[0].event.data.model_version is None
    assert len(commands) == 1
    command = commands[0]
    assert command.key == "loans-hgb" and command.event.data.model_name == "loans-hgb"
    assert command.event.data.trigger.kind == "drift"
    assert command.event.data.trigger.event_id == drifts[0].event.id
    assert command.event.causationid == drifts[0].event.id
    assert history.decisions[0][0].action == "trigger"
    assert history.decisions[0][1] == command.event.id
    assert [e.id for e in history.drifts] == [e.event.id for e in drifts]
    labels = {"model": "loans-hgb", "action": "trigger"}
    assert REGISTRY.get_sample_value("mlops_monitoring_retrain_decisions_total", labels) == 1


def test_a_redelivered_message_keeps_its_drift_id() -> None:
    first, _, _ = make()
    second, _, _ = make()
    ids = [e.event.id for e in feed_shift(first) if e.topic == "monitoring.drift"]
    assert ids == [e.event.id for e in feed_shift(second) if e.topic == "monitoring.drift"]


def prediction(
    index: int, predicted: int, features: dict[str, Any] | None = None
) -> Event[PredictionServed]:
    return Event[PredictionServed].create(
        PredictionServed(
            request_id=f"q{index}",
            model_name="loans",
            version=3,
            dataset="loans",
            record_id=f"r{index}",
            features=features or {},
            prediction=predicted,
            latency_ms=1,
            served_at=START,
        ),
        source="test",
    )


def label(index: int, value: int) -> Event[LabelRecorded]:
    return Event[LabelRecorded].create(
        LabelRecorded(dataset="loans", record_id=f"r{index}", label=value, labelled_at=START),
        source="test",
    )


def test_a_label_that_came_before_its_prediction_counts_toward_the_episode() -> None:
    """Labels and predictions join in either order (several replicas forward them at their
    own pace): the prediction completing a pair counts as a label after the drift."""
    deps, history, _ = make(min_labels=3)
    feed_shift(deps)
    assert history.decisions[0][0].action == "wait"
    serve, labels = handler(deps, "serving.predictions"), handler(deps, "data.labels")
    emitted: list[Emit] = []
    for i in range(3):
        emitted += labels(label(i, 1), info("l", i))
        emitted += serve(prediction(i, 1), info("p", i))
    commands = [e for e in emitted if e.topic == "training.requests"]
    assert len(commands) == 1 and commands[0].event.data.trigger.kind == "drift"


def test_a_waiting_episode_triggers_on_the_label_that_completes_it() -> None:
    deps, history, _ = make(min_labels=3)
    feed_shift(deps)
    assert history.decisions[0][0].action == "wait"
    serve, labels = handler(deps, "serving.predictions"), handler(deps, "data.labels")
    emitted: list[Emit] = []
    for i in range(3):
        serve(prediction(i, 1), info("p", i))
        emitted += labels(label(i, 1), info("l", i))
    commands = [e for e in emitted if e.topic == "training.requests"]
    assert len(commands) == 1 and commands[0].event.data.trigger.kind == "drift"
    assert history.snapshots and history.snapshots[0][0]["model_version"] == 3
    [drift] = history.drifts[:1]
    command = commands[0].event
    assert command.data.trigger.event_id == drift.id
    assert command.causationid == drift.id and command.correlationid == drift.correlationid
    assert command.data.trigger.since == drift.data.event_time is not None


def test_a_drift_retrain_can_be_asked_to_use_all_the_data() -> None:
    deps, _, _ = make()
    deps.retrain_since_drift = False
    [command] = [e for e in feed_shift(deps) if e.topic == "training.requests"]
    assert command.event.data.trigger.since is None


def test_errors_once_labels_arrive_drift_on_the_error_stream() -> None:
    deps, _, _ = make()
    serve, labels = handler(deps, "serving.predictions"), handler(deps, "data.labels")
    emitted: list[Emit] = []
    for i in range(1500):
        serve(prediction(i, 1), info("p", i))
        emitted += labels(label(i, 1 if i < 1000 or i % 4 == 0 else 0), info("l", i))
    signals = {e.event.data.signal for e in emitted if e.topic == "monitoring.drift"}
    assert signals == {"error"}
    assert deps.monitor.performance()[0]["labelled"] == 1500


def test_bad_detector_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        MonitoringSettings(_env_file=None, detectors={"loans": {"error": {"kind": "nope"}}})  # type: ignore[call-arg]
    settings = MonitoringSettings(
        _env_file=None,  # type: ignore[call-arg]
        detectors={"loans": {"error": {"kind": "page_hinkley", "params": {"threshold": 20}}}},
    )
    assert settings.detectors_for("loans").error.kind == "page_hinkley"
    assert settings.detectors_for("other").error.kind == "adwin"
    with pytest.raises(ValueError):
        MonitoringSettings(_env_file=None, model_names={"loans": "Bad Name"})  # type: ignore[call-arg]


def test_a_bad_detector_parameter_fails_on_the_first_ask_whichever_the_dataset() -> None:
    settings = MonitoringSettings(
        _env_file=None,  # type: ignore[call-arg]
        detectors={"loans": {"error": {"params": {"no_such_parameter": 1}}}},
    )
    with pytest.raises(TypeError, match="no_such_parameter"):
        settings.detectors_for("")  # what bootstrap asks at start-up


def test_a_retry_after_a_database_error_writes_the_same_outcome_without_refeeding() -> None:
    deps, history, _ = make()
    serve_once(deps)
    observe = handler(deps, "data.validated")
    emitted: list[Emit] = []
    retried = False

    def salary_position() -> int:
        states = deps.monitor.detector_states()
        return next(s["position"] for s in states if s["signal"] == "salary")

    for i in range(800):
        message = record(i, 1000.0 + (i % 5) + (500.0 if i >= 500 else 0.0))
        if i >= 500 and not emitted and history.fail_next == 0 and not history.decisions:
            history.fail_next = 1
        try:
            emitted += observe(message, info("v", i))
        except ConnectionError:
            position = salary_position()
            emitted += observe(message, info("v", i))  # the runner's retry
            retried = True
            assert salary_position() == position
    commands = [e for e in emitted if e.topic == "training.requests"]
    assert retried and len(commands) == 1 and len(history.decisions) >= 1
    assert history.decisions[0][1] == commands[0].event.id


def test_a_hanging_registry_holds_up_no_prediction_and_the_reference_comes_later() -> None:
    released, fetching_on = threading.Event(), []
    lineage = {
        "data_quality": {"numeric": {"salary": {"mean": 100, "std": 10, "min": 0, "max": 200}}}
    }

    def hanging_registry(model: str, version: int) -> dict[str, Any]:
        fetching_on.append(threading.current_thread())
        if not released.wait(timeout=10):
            raise TimeoutError("the registry never answered")
        return lineage

    lineages = BackgroundLineages(hanging_registry)
    deps, _, _ = make()
    deps.references = TrainingReferences(lineages.lineage)
    observe = handler(deps, "serving.predictions")
    stop = threading.Event()
    loop = threading.Thread(target=lineages.run, args=(stop,))
    loop.start()
    try:
        for index in range(3):
            observe(prediction(index, 1, {"salary": 500.0}), info("p", index))
        wait_until(lambda: fetching_on, what="the lineage fetch to start")
        assert fetching_on == [loop] and not released.is_set()  # it is hanging right now
        assert [row["served"] for row in deps.monitor.performance()] == [3]
        assert deps.references is not None and deps.references.report() == {}

        released.set()
        wait_until(lambda: lineages.lineage("loans", 3), what="the lineage to arrive")
        observe(prediction(3, 1, {"salary": 100.0}), info("p", 3))
        salary = deps.references.report()["loans"]["3"]["salary"]
        assert salary["live"]["count"] == 4 and salary["live"]["mean"] == 400.0
    finally:
        released.set()
        stop.set()
        loop.join(10)


def test_the_forwarding_stage_keys_every_input_by_its_dataset_and_drops_none() -> None:
    validated = record(1, 1000.0)
    forwarded = forward_by_dataset(validated, info("v", 1))
    assert [(e.topic, e.key, e.event) for e in forwarded] == [(INPUTS, "loans", validated)]
    unattributed = Event[RecordRejected].create(
        RecordRejected(
            dataset=None,
            errors=[FieldError(field=None, rule="malformed", message="not JSON")],
            source=validated.data.source,
        ),
        source="test",
    )
    assert forward_by_dataset(unattributed, info("r", 1)) == []
