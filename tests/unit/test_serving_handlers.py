"""What serving reads from models.lifecycle, what it writes to serving.predictions, and the
prediction log that writes it behind the answers (with an in-memory producer)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.serving.adapters.kafka import PredictionLog
from services.serving.domain.served import Scored
from services.serving.domain.slots import Change, ModelSlots, Verdict
from services.serving.handlers import (
    LIFECYCLE_EVENTS,
    Deps,
    LoggedPrediction,
    change_of,
    log_prediction,
    routes,
    swap_model,
)
from services.serving.settings import ServingSettings
from shared.events import Event
from shared.events.models import (
    ArtifactRef,
    Evaluation,
    ModelPromoted,
    ModelRegistered,
    ModelRolledBack,
    PredictionServed,
)
from shared.kafka.consumer import MessageInfo
from shared.kafka.producer import DeliveryError, OutgoingMessage

ARTIFACT = ArtifactRef(uri="s3://models/loans/v2.skops", sha256="ef" * 32, size_bytes=3)
INFO = MessageInfo("ns.models.lifecycle", 0, 7, None, None)


def promoted(model: str = "loans", alias: str = "champion") -> Event[ModelPromoted]:
    payload = ModelPromoted(
        model_name=model,
        version=2,
        alias=alias,
        artifact=ARTIFACT,
        reason="better",
        decided_by="policy",
    )
    return Event.create(payload, source="registry", subject=model)


@dataclass
class RecordingLoader:
    applied: list[Change] = field(default_factory=list)

    def apply(self, change: Change) -> Verdict | None:
        self.applied.append(change)
        return Verdict.LOAD


def test_promotions_and_rollbacks_become_changes_other_lifecycle_events_do_not() -> None:
    event = promoted()
    rolled = Event.create(
        ModelRolledBack(
            model_name="loans",
            version=1,
            from_version=2,
            artifact=ARTIFACT,
            reason="bad",
            decided_by="bob",
        ),
        source="registry",
    )
    registered = Event.create(
        ModelRegistered(
            model_name="loans",
            version=2,
            run_id="r",
            artifact=ARTIFACT,
            evaluation=Evaluation(metrics={}, primary_metric="roc_auc", holdout="h"),
        ),
        source="registry",
    )

    assert change_of(event) == Change("loans", "champion", 2, ARTIFACT, event.id, rollback=False)
    assert change_of(rolled) == Change("loans", "champion", 1, ARTIFACT, rolled.id, rollback=True)
    assert change_of(registered) is None


def test_the_handler_applies_changes_to_any_model_it_has_never_seen() -> None:
    loader = RecordingLoader()
    handle = swap_model(Deps(loader, ModelSlots().accepts, {"champion"}))

    for event in (promoted("iris"), promoted(alias="challenger"), promoted("housing")):
        assert handle(event, INFO) is None

    assert [(c.model, c.alias) for c in loader.applied] == [
        ("iris", "champion"),
        ("housing", "champion"),
    ]


def test_a_restriction_leaves_other_models_changes_alone() -> None:
    loader = RecordingLoader()
    handle = swap_model(Deps(loader, ModelSlots(["loans"]).accepts, {"champion"}))

    for event in (promoted("fraud"), promoted(alias="challenger"), promoted()):
        assert handle(event, INFO) is None

    assert [(c.model, c.alias) for c in loader.applied] == [("loans", "champion")]


def test_serving_reads_every_lifecycle_event_and_emits_none() -> None:
    (route,) = routes(Deps(RecordingLoader(), ModelSlots().accepts, {"champion"}))

    assert route.consumes == "models.lifecycle"
    assert set(route.payloads) == set(LIFECYCLE_EVENTS)
    assert route.emits == ()


def logged(record_id: str | None = "app-3", shadow: bool = False) -> LoggedPrediction:
    return LoggedPrediction(
        request_id="req-1",
        model="loans",
        version=2,
        dataset="loans",
        record_id=record_id,
        entity="applicant-4",
        features={"salary": 52000.0, "elevel": "2", "loan_sum_1h": None},
        scored=Scored(1, {"0": 0.1, "1": 0.9}),
        latency_ms=3.5,
        served_at=datetime(2024, 1, 1, tzinfo=UTC),
        shadow=shadow,
    )


def test_a_prediction_is_logged_as_prediction_served_keyed_by_its_record() -> None:
    emit = log_prediction(logged())

    assert (emit.topic, emit.key, emit.event.subject) == ("serving.predictions", "app-3", "app-3")
    data = emit.event.data
    assert isinstance(data, PredictionServed)
    assert (data.model_name, data.version, data.prediction, data.shadow) == ("loans", 2, 1, False)
    assert data.probabilities == {"0": 0.1, "1": 0.9}
    assert data.features["loan_sum_1h"] is None
    assert log_prediction(logged(record_id=None)).key == "req-1"


@dataclass
class InMemoryProducer:
    sent: list[OutgoingMessage] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def publish(self, messages: Any) -> int:
        batch = list(messages)
        self.sent.extend(batch)
        return len(batch)

    def flush(self, timeout: float = 30.0) -> None:
        if self.failures:
            errors, self.failures = self.failures, []
            raise DeliveryError(f"{len(errors)} writes failed: " + "; ".join(errors))


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_the_log_publishes_what_was_recorded_and_drains_before_it_stops() -> None:
    producer = InMemoryProducer()
    log = PredictionLog(
        producer,
        {"serving.predictions": "ns.serving.predictions"},
        log_prediction,
        100,
        idle_s=0.05,
    )  # type: ignore[arg-type]
    stop = threading.Event()
    log.record([logged("a"), logged("b")])
    stop.set()

    log.run(stop)

    assert [m.key for m in producer.sent] == [b"a", b"b"]
    assert {m.topic for m in producer.sent} == {"ns.serving.predictions"}
    before = counter("mlops_serving_prediction_log_dropped_total")
    log.record([logged("late")])
    assert counter("mlops_serving_prediction_log_dropped_total") == before + 1


def test_writes_kafka_refuses_are_counted_and_a_full_queue_drops_with_a_count() -> None:
    producer = InMemoryProducer(failures=["ns.serving.predictions: Broker: Not enough replicas"])
    log = PredictionLog(producer, {"serving.predictions": "t"}, log_prediction, 2, idle_s=0.05)  # type: ignore[arg-type]
    failures = counter("mlops_serving_prediction_log_failures_total")
    dropped = counter("mlops_serving_prediction_log_dropped_total")

    log.record([logged("a"), logged("b"), logged("c")])
    stop = threading.Event()
    stop.set()
    log.run(stop)

    assert counter("mlops_serving_prediction_log_dropped_total") == dropped + 1
    assert counter("mlops_serving_prediction_log_failures_total") == failures + 1
    assert [m.key for m in producer.sent] == [b"a", b"b"]


def test_settings_default_to_port_8006_and_every_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_SERVING_MODELS", raising=False)
    monkeypatch.setenv("MLOPS_SERVING_REGISTRY_URL", "http://registry:8005/")

    settings = ServingSettings(_env_file=None)  # type: ignore[call-arg]

    assert (settings.port, settings.models, settings.shadow) == (8006, [], False)
    assert settings.registry_url == "http://registry:8005"
    assert settings.feature_store_url == "http://127.0.0.1:8003"


@pytest.mark.parametrize(
    ("value", "models"),
    [("", []), ("  ", []), ("[]", []), ('["loans", "fraud"]', ["loans", "fraud"])],
)
def test_models_restrict_serving_only_when_set(
    monkeypatch: pytest.MonkeyPatch, value: str, models: list[str]
) -> None:
    monkeypatch.setenv("MLOPS_SERVING_MODELS", value)

    assert ServingSettings(_env_file=None).models == models  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MLOPS_SERVING_MODELS", '["Loans"]', "not model names"),
        ("MLOPS_SERVING_MODELS", '["loans", "loans"]', "named twice"),
        ("MLOPS_SERVING_MODELS", "loans", "expected a JSON list of model names"),
        ("MLOPS_SERVING_MODELS", '"loans"', "valid list"),
        ("MLOPS_SERVING_FEATURE_STORE_URL", "store:8003", "expected an http(s) URL"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ServingSettings(_env_file=None)  # type: ignore[call-arg]
