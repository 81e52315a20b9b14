"""The monitoring service against the real broker and database, run as
`python -m services.monitoring` in a namespace of each test's own.

Predictions come from a decision tree trained on River's Agrawal stream before a concept
drift; labels are River's. Drift history and decisions go to the platform's database (tables
named after the namespace, dropped afterwards). A regression dataset (scikit-learn's diabetes,
shipped with it) is declared by registering its spec in the test's own namespace.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from sklearn.tree import DecisionTreeClassifier

from services.monitoring.adapters.history import History
from services.monitoring.settings import MonitoringSettings
from shared.datasets.registry import SpecRegistry
from shared.datasets.sources import agrawal_records
from shared.datasets.spec import DatasetSpec, FeatureSpec, FeatureType, LabelSpec
from shared.events import Event
from shared.events.models import PredictionServed, TrainingFailed, TrainingTrigger
from shared.events.records import LabelRecorded, RecordValidated, SourcePosition
from shared.kafka.config import client_config, producer_config
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.kafka.topics import TopicCatalog
from shared.settings import PlatformSettings
from shared.sql import create_database_engine
from tests.integration.kafka_helpers import stable_members, unique_name
from tests.services import RunningService, namespace_topics, start_service
from tests.shipped_streams import stationary_stream
from tests.waiting import wait_until

START = datetime(2026, 1, 1, tzinfo=UTC)
NUMERIC = ["salary", "commission", "age", "hvalue", "hyears", "loan"]
LENGTH = 3000
DRIFT_AT = 1500
CATALOG = TopicCatalog.load()


@pytest.fixture(scope="module")
def model() -> DecisionTreeClassifier:
    rows = list(agrawal_records(2000, seed=7, start=START))
    frame = pd.DataFrame([record for record, _ in rows])[NUMERIC]
    return DecisionTreeClassifier(max_depth=6, random_state=0).fit(
        frame, [label for _, label in rows]
    )


@pytest.fixture
def namespace(admin: AdminClient, settings: PlatformSettings) -> Iterator[str]:
    ns = unique_name("mon").replace("-", "")
    with namespace_topics(admin, ns):
        yield ns
    engine = create_database_engine(MonitoringSettings().database_url_for(settings))
    History(engine, ns).drop()
    engine.dispose()


@pytest.fixture
def producer(settings: PlatformSettings) -> Iterator[EventProducer]:
    producer = EventProducer(producer_config(settings, "monitoring-test"))
    yield producer
    producer.close()


def monitoring(
    namespace: str, env: dict[str, str], tmp_path: Path, **overrides: str
) -> RunningService:
    extra = {
        "MLOPS_MONITORING_DEBOUNCE_S": "300",
        "MLOPS_MONITORING_COOLDOWN_S": "0",
        "MLOPS_MONITORING_MIN_LABELS_AFTER_DRIFT": "50",
        "MLOPS_MONITORING_MAX_RETRAINS_PER_HOUR": "3",
        "MLOPS_MONITORING_HISTORY_EVERY": "500",
        **overrides,
    }
    return start_service("monitoring", namespace, env, tmp_path, extra_env=extra)


def stream(
    model: DecisionTreeClassifier, drift_at: int | None, seed: int = 11
) -> tuple[list[Event[PredictionServed]], list[Event[LabelRecorded]]]:
    rows = list(agrawal_records(LENGTH, seed=seed, start=START, drift_at=drift_at))
    predicted = model.predict(pd.DataFrame([record for record, _ in rows])[NUMERIC])
    predictions, labels = [], []
    for (record, label), prediction in zip(rows, predicted, strict=True):
        record_id = str(record["application_id"])
        served = PredictionServed(
            request_id=f"req-{record_id}",
            model_name="loans",
            version=1,
            dataset="loans",
            record_id=record_id,
            features={name: record[name] for name in NUMERIC},
            prediction=int(prediction),
            latency_ms=1.0,
            served_at=datetime.fromisoformat(str(record["applied_at"])),
        )
        predictions.append(Event[PredictionServed].create(served, source="serving"))
        labelled = LabelRecorded(
            dataset="loans", record_id=record_id, label=label, labelled_at=served.served_at
        )
        labels.append(Event[LabelRecorded].create(labelled, source="labels"))
    return predictions, labels


def publish(producer: EventProducer, namespace: str, name: str, events: list[Event[Any]]) -> None:
    """One key per topic: one partition, so the service sees the stream in order."""
    topic = CATALOG.name(name, namespace)
    producer.publish_confirmed(
        [OutgoingMessage.for_event(topic, event, key="loans") for event in events], timeout=60
    )


def read_to_end(bootstrap: str, topic: str) -> list[tuple[bytes | None, dict[str, Any]]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("reader"),
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
        seen: dict[int, int] = {p: 0 for p, end in ends.items() if end > 0}
        out: list[tuple[bytes | None, dict[str, Any]]] = []

        def done() -> bool:
            for message in consumer.consume(500, 0.5):
                if message.error() is None:
                    out.append((message.key(), json.loads(message.value())))
                    seen[message.partition()] = message.offset() + 1
            return all(seen[p] >= ends[p] for p in seen)

        wait_until(done, what=f"{topic} read to its end", timeout_s=30, interval_s=0)
        return out
    finally:
        consumer.close()


def performance(service: RunningService) -> dict[str, Any]:
    return httpx.get(f"{service.url}/performance", timeout=10).json()


def drift_view(service: RunningService) -> dict[str, Any]:
    return httpx.get(f"{service.url}/drift", timeout=10).json()


def labelled(service: RunningService) -> int:
    return sum(row["labelled"] for row in performance(service)["models"])


def test_concept_drift_raises_drift_and_exactly_one_drift_retrain(
    model, namespace, producer, subprocess_env, bootstrap, tmp_path
) -> None:
    service = monitoring(namespace, subprocess_env, tmp_path)
    try:
        predictions, labels = stream(model, DRIFT_AT)
        publish(producer, namespace, "serving.predictions", predictions)
        publish(producer, namespace, "data.labels", labels)
        wait_until(lambda: labelled(service) == LENGTH, what="every label joined", timeout_s=120)
        drifts = read_to_end(bootstrap, CATALOG.name("monitoring.drift", namespace))
        commands = read_to_end(bootstrap, CATALOG.name("training.requests", namespace))
        view = drift_view(service)
    finally:
        service.stop()

    error_drifts = [d for _, d in drifts if d["data"]["signal"] == "error"]
    assert error_drifts, f"no drift on the error stream: {[d['data']['signal'] for _, d in drifts]}"
    first = error_drifts[0]["data"]
    assert first["model_name"] == "loans" and first["model_version"] == 1
    assert first["detector"] == "ADWIN" and first["signal_kind"] == "error"
    assert first["position"] > DRIFT_AT
    assert first["current"]["mean"] > first["reference"]["mean"]
    assert len(commands) == 1, commands
    key, command = commands[0]
    assert key == b"loans" and command["type"] == "mlops.TrainModel"
    assert command["data"]["trigger"]["kind"] == "drift"
    assert command["data"]["trigger"]["event_id"] == drifts[0][1]["id"]
    assert command["data"]["model_name"] == "loans" and command["data"]["dataset"] == "loans"
    assert [d["action"] for d in view["decisions"]].count("trigger") == 1
    assert {d["id"] for _, d in drifts} == {d["id"] for d in view["drifts"]}


def test_stationary_stream_raises_no_drift(
    model, namespace, producer, subprocess_env, bootstrap, tmp_path
) -> None:
    service = monitoring(namespace, subprocess_env, tmp_path)
    try:
        predictions, labels = stream(model, None)
        publish(producer, namespace, "data.labels", labels)  # labels first: either order joins
        publish(producer, namespace, "serving.predictions", predictions)
        wait_until(lambda: labelled(service) == LENGTH, what="every label joined", timeout_s=120)
        drifts = read_to_end(bootstrap, CATALOG.name("monitoring.drift", namespace))
        commands = read_to_end(bootstrap, CATALOG.name("training.requests", namespace))
        view = drift_view(service)
    finally:
        service.stop()
    assert drifts == [] and commands == [] and view["decisions"] == []
    positions = {d["signal"]: d["position"] for d in view["detectors"]}
    assert positions == {"prediction": LENGTH, "error": LENGTH}


def validated(namespace: str, index: int, values: dict[str, Any]) -> Event[RecordValidated]:
    record = RecordValidated(
        dataset="loans",
        spec_version=1,
        record_id=f"r-{index}",
        entity="applicant-1",
        event_time=START + timedelta(seconds=index),
        values=values,
        source=SourcePosition(topic=f"{namespace}.data.raw", partition=0, offset=index),
    )
    return Event[RecordValidated].create(record, source="validation")


def shifted_records(namespace: str, first: int, count: int, shift: float) -> list[Event[Any]]:
    rows = agrawal_records(count, seed=3, start=START, start_index=first)
    return [
        validated(
            namespace,
            first + i,
            {
                "salary": float(record["salary"]) + shift,
                "loan": float(record["loan"]) + shift,
                "hvalue": float(record["hvalue"]) + shift,
                "elevel": record["elevel"],
            },
        )
        for i, (record, _) in enumerate(rows)
    ]


def serve_one(producer: EventProducer, namespace: str, service: RunningService) -> None:
    """A prediction of the dataset: a model is served, so a feature drift may retrain it."""
    served = PredictionServed(
        request_id="req-first",
        model_name="loans",
        version=1,
        dataset="loans",
        record_id=None,
        features={},
        prediction=1,
        latency_ms=1.0,
        served_at=START,
    )
    publish(producer, namespace, "serving.predictions", [Event.create(served, source="serving")])
    wait_until(
        lambda: any(row["served"] for row in performance(service)["models"]),
        what="the first prediction seen",
        timeout_s=60,
        interval_s=0.5,
    )


def test_drift_burst_is_debounced_and_the_hourly_limit_opens_the_breaker(
    namespace, producer, subprocess_env, bootstrap, tmp_path
) -> None:
    service = monitoring(
        namespace,
        subprocess_env,
        tmp_path,
        MLOPS_MONITORING_DEBOUNCE_S="3",
        MLOPS_MONITORING_MIN_LABELS_AFTER_DRIFT="0",
        MLOPS_MONITORING_MAX_RETRAINS_PER_HOUR="1",
        MLOPS_MONITORING_DETECTORS=json.dumps(
            {"loans": {"features": ["salary", "loan", "hvalue"]}}
        ),
    )
    drift_topic = CATALOG.name("monitoring.drift", namespace)
    commands_topic = CATALOG.name("training.requests", namespace)
    try:
        serve_one(producer, namespace, service)
        publish(producer, namespace, "data.validated", shifted_records(namespace, 0, 1000, 0.0))
        publish(producer, namespace, "data.validated", shifted_records(namespace, 1000, 500, 5e5))
        first_burst = wait_until(
            lambda: (
                len(read_to_end(bootstrap, drift_topic)) >= 3
                and read_to_end(bootstrap, drift_topic)
            ),
            what="a drift on each shifted feature",
            timeout_s=60,
            interval_s=0.5,
        )
        assert {d["data"]["signal"] for _, d in first_burst} == {"salary", "loan", "hvalue"}
        commands = read_to_end(bootstrap, commands_topic)
        assert len(commands) == 1
        assert commands[0][1]["data"]["trigger"]["event_id"] == first_burst[0][1]["id"]
        started = time.monotonic()
        wait_until(lambda: time.monotonic() - started > 3.5, what="the debounce window to pass")
        publish(producer, namespace, "data.validated", shifted_records(namespace, 1500, 500, 0.0))
        view = wait_until(
            lambda: (v := drift_view(service))["breakers"].get("loans", {}).get("open") and v,
            what="the circuit breaker to open",
            timeout_s=60,
            interval_s=0.5,
        )
        assert len(read_to_end(bootstrap, commands_topic)) == 1
    finally:
        service.stop()
    reasons = [d["reason"] for d in view["decisions"]]
    assert any(r.startswith("circuit_open") for r in reasons), reasons
    assert any(r.startswith("debounced") for r in reasons), reasons
    assert [d["action"] for d in view["decisions"]].count("trigger") == 1


def test_predictions_whose_labels_never_arrive_expire_and_are_counted(
    model, namespace, producer, subprocess_env, tmp_path
) -> None:
    service = monitoring(namespace, subprocess_env, tmp_path, MLOPS_MONITORING_LABEL_WAIT_S="2")
    try:
        predictions, labels = stream(model, None)
        publish(producer, namespace, "serving.predictions", predictions[:25])
        publish(producer, namespace, "data.labels", labels[:5])
        body = wait_until(
            lambda: (p := performance(service))["join"]["expired_predictions"] == 20 and p,
            what="20 unlabelled predictions to expire",
            timeout_s=30,
            interval_s=0.5,
        )
    finally:
        service.stop()
    (row,) = body["models"]
    assert row["served"] == 25 and row["labelled"] == 5 and row["expired"] == 20
    assert body["join"]["joined"] == 5 and body["join"]["pending_predictions"] == 0


def all_seen(view: dict[str, Any], records: int) -> bool:
    """The three numeric features, the out-of-range and the rejection rates saw every record."""
    positions = [d["position"] for d in view["detectors"] if d["model_version"] is None]
    return len(positions) == 5 and all(p == records for p in positions)


def test_drift_history_and_decisions_survive_a_restart_in_sqlite(
    namespace, producer, subprocess_env, bootstrap, tmp_path
) -> None:
    database = {"MLOPS_MONITORING_DATABASE_URL": f"sqlite:///{tmp_path / 'monitoring.sqlite'}"}
    options = {**database, "MLOPS_MONITORING_MIN_LABELS_AFTER_DRIFT": "0"}
    service = monitoring(namespace, subprocess_env, tmp_path, **options)
    try:
        serve_one(producer, namespace, service)
        publish(producer, namespace, "data.validated", shifted_records(namespace, 0, 1000, 0.0))
        publish(producer, namespace, "data.validated", shifted_records(namespace, 1000, 300, 5e5))
        before = wait_until(
            lambda: all_seen(v := drift_view(service), 1300) and v,
            what="every record seen by the feature detectors",
            timeout_s=60,
            interval_s=0.5,
        )
    finally:
        assert service.stop() == 0
    service = monitoring(namespace, subprocess_env, tmp_path, **options)
    try:
        after = drift_view(service)
    finally:
        service.stop()
    assert after["drifts"] == before["drifts"] and after["decisions"] == before["decisions"]
    assert after["decisions"][-1]["action"] == "trigger"
    assert len(read_to_end(bootstrap, CATALOG.name("training.requests", namespace))) == 1
    assert (tmp_path / "monitoring.sqlite").exists()


def record_with_label(index: int, record: dict[str, Any], label: Any) -> Event[RecordValidated]:
    validated_record = RecordValidated(
        dataset="loans",
        spec_version=1,
        record_id=str(record["application_id"]),
        entity="applicant-1",
        event_time=datetime.fromisoformat(str(record["applied_at"])),
        values={name: record[name] for name in NUMERIC},
        label=label,
        source=SourcePosition(topic="raw", partition=0, offset=index),
    )
    return Event[RecordValidated].create(validated_record, source="validation")


def test_labels_carried_by_their_records_reach_performance(
    model, namespace, producer, subprocess_env, tmp_path
) -> None:
    rows = list(agrawal_records(400, seed=5, start=START))
    predictions, _ = stream(model, None, seed=5)
    predictions = predictions[:400]
    expected = sum(
        int(p.data.prediction == label) for p, (_, label) in zip(predictions, rows, strict=True)
    )
    service = monitoring(namespace, subprocess_env, tmp_path)
    try:
        publish(producer, namespace, "serving.predictions", predictions)
        records = [record_with_label(i, r, label) for i, (r, label) in enumerate(rows)]
        publish(producer, namespace, "data.validated", records)
        body = wait_until(
            lambda: (
                (p := performance(service))["models"] and p["models"][0]["labelled"] == 400 and p
            ),
            what="every label carried by its record joined",
            timeout_s=60,
            interval_s=0.5,
        )
    finally:
        service.stop()
    (row,) = body["models"]
    assert row["accuracy"] == expected / 400 and row["task"] == "classification"
    assert body["join"]["joined"] == 400 and body["join"]["pending_labels"] == 0


def test_a_failed_drift_retrain_shows_as_failed_and_the_policy_triggers_again(
    namespace, producer, subprocess_env, bootstrap, tmp_path
) -> None:
    service = monitoring(
        namespace,
        subprocess_env,
        tmp_path,
        MLOPS_MONITORING_MIN_LABELS_AFTER_DRIFT="0",
        MLOPS_MONITORING_COOLDOWN_S="1800",
        MLOPS_MONITORING_MAX_RETRAINS_PER_HOUR="1",
        MLOPS_MONITORING_DETECTORS=json.dumps({"loans": {"features": ["salary"]}}),
    )
    commands_topic = CATALOG.name("training.requests", namespace)
    try:
        serve_one(producer, namespace, service)
        publish(producer, namespace, "data.validated", shifted_records(namespace, 0, 1000, 0.0))
        publish(producer, namespace, "data.validated", shifted_records(namespace, 1000, 300, 5e5))
        [(_, first)] = wait_until(
            lambda: read_to_end(bootstrap, commands_topic),
            what="the drift retrain",
            timeout_s=60,
            interval_s=0.5,
        )
        failure = TrainingFailed(
            model_name="loans",
            dataset="loans",
            command_id=first["id"],
            trigger=TrainingTrigger(**first["data"]["trigger"]),
            outcome="failed",
            reason="the offline store did not answer",
            error="StorageUnavailable",
            failed_at=datetime.now(UTC),
        )
        publish(producer, namespace, "models.trained", [Event.create(failure, source="training")])
        commands = wait_until(
            lambda: len(c := read_to_end(bootstrap, commands_topic)) >= 2 and c,
            what="the policy to trigger the retrain again",
            timeout_s=60,
            interval_s=0.5,
        )
        view = drift_view(service)
    finally:
        service.stop()
    assert len(commands) == 2
    retry = commands[1][1]
    assert retry["id"] != first["id"]
    assert retry["data"]["trigger"]["event_id"] == first["data"]["trigger"]["event_id"]
    failed = next(d for d in view["decisions"] if d["command_id"] == first["id"])
    assert failed["outcome"] == "failed: StorageUnavailable: the offline store did not answer"
    assert [o["outcome"] for o in failed["outcomes"]] == ["failed"]
    again = next(d for d in view["decisions"] if d["command_id"] == retry["id"])
    assert again["action"] == "trigger" and "re-armed" in again["reason"]
    assert view["outcomes"][0]["command_id"] == first["id"]
    assert view["breakers"]["loans"]["retrains_last_hour"] == 1


DIABETES_FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def diabetes_spec() -> DatasetSpec:
    return DatasetSpec(
        name="diabetes",
        entity_key="patient",
        event_time="seen_at",
        features=[FeatureSpec(name=n, type=FeatureType.NUMERIC) for n in DIABETES_FEATURES],
        label=LabelSpec(
            name="progression", type=FeatureType.NUMERIC, task="regression", arrival="feedback"
        ),
    )


def test_a_regression_dataset_gets_regression_metrics_and_residual_drift(
    namespace, producer, subprocess_env, bootstrap, settings, tmp_path
) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    SpecRegistry(
        client_config(settings, "monitoring-test"), CATALOG.name("data.specs", namespace), "test"
    ).register(diabetes_spec(), producer)
    features, target = load_diabetes(return_X_y=True)
    fitted = LinearRegression().fit(features, target)
    predicted = fitted.predict(features)
    predicted[300:] += 150.0  # the model goes wrong at row 300: residuals jump
    predictions, labels = [], []
    for i, (row, truth, guess) in enumerate(zip(features, target, predicted, strict=True)):
        served = PredictionServed(
            request_id=f"req-{i}",
            model_name="diabetes",
            version=1,
            dataset="diabetes",
            record_id=f"p{i}",
            features=dict(zip(DIABETES_FEATURES, map(float, row), strict=True)),
            prediction=float(guess),
            latency_ms=1.0,
            served_at=START + timedelta(seconds=i),
        )
        predictions.append(Event.create(served, source="serving"))
        late = LabelRecorded(
            dataset="diabetes", record_id=f"p{i}", label=float(truth), labelled_at=START
        )
        labels.append(Event.create(late, source="labels"))
    service = monitoring(namespace, subprocess_env, tmp_path)
    try:
        publish(producer, namespace, "serving.predictions", predictions)
        publish(producer, namespace, "data.labels", labels)
        body = wait_until(
            lambda: (
                (p := performance(service))["models"]
                and p["models"][0]["labelled"] == len(target)
                and p
            ),
            what="every regression label joined",
            timeout_s=60,
            interval_s=0.5,
        )
        drifts = read_to_end(bootstrap, CATALOG.name("monitoring.drift", namespace))
    finally:
        service.stop()
    (row,) = body["models"]
    residuals = abs(predicted - target)
    assert row["task"] == "regression" and "accuracy" not in row
    assert row["count"] == len(target)
    assert abs(row["mae"] - residuals.mean()) < 1e-6
    assert abs(row["rmse"] - float((residuals**2).mean() ** 0.5)) < 1e-6
    errors = [d["data"] for _, d in drifts if d["data"]["signal"] == "error"]
    assert errors and 300 < errors[0]["position"] < 400, [d["data"]["signal"] for _, d in drifts]


SHIPPED = ["loans", "breast_cancer", "phishing", "friedman"]
STATIONARY_LENGTH = 2000


def test_stationary_streams_of_every_shipped_dataset_raise_no_drift(
    namespace, producer, subprocess_env, bootstrap, settings, tmp_path
) -> None:
    """Default settings, the four shipped specs registered, each dataset's records (discrete
    and categorical features included), predictions and labels (with the record or late). The
    registry is out of reach, so the holdout check stays idle here; the unit test
    test_monitoring_stationary runs it on the same streams."""
    streams = [stationary_stream(name, STATIONARY_LENGTH) for name in SHIPPED]
    registry = SpecRegistry(
        client_config(settings, "monitoring-test"), CATALOG.name("data.specs", namespace), "test"
    )
    for stream in streams:
        registry.register(stream.spec, producer)
    service = start_service(
        "monitoring",
        namespace,
        subprocess_env,
        tmp_path,
        extra_env={"MLOPS_MONITORING_REGISTRY_URL": "http://127.0.0.1:9"},
    )
    try:
        for stream in streams:
            publish(
                producer,
                namespace,
                "data.validated",
                [Event.create(r, source="validation") for r in stream.records],
            )
            publish(
                producer,
                namespace,
                "serving.predictions",
                [Event.create(p, source="serving") for p in stream.predictions],
            )
            publish(
                producer,
                namespace,
                "data.labels",
                [Event.create(la, source="labels") for la in stream.labels],
            )
        body = wait_until(
            lambda: (
                (p := performance(service))["models"]
                and sorted(row["labelled"] for row in p["models"]) == [STATIONARY_LENGTH] * 4
                and p
            ),
            what="every label of the four datasets joined",
            timeout_s=180,
            interval_s=1,
        )
        drifts = read_to_end(bootstrap, CATALOG.name("monitoring.drift", namespace))
        commands = read_to_end(bootstrap, CATALOG.name("training.requests", namespace))
        view = drift_view(service)
    finally:
        service.stop()
    tasks = {row["model_name"]: row["task"] for row in body["models"]}
    assert tasks == {s.spec.name: s.spec.task for s in streams}
    alarms = [
        (d["data"]["model_name"], d["data"]["signal"], d["data"]["position"]) for _, d in drifts
    ]
    assert alarms == [] and commands == [] and view["decisions"] == []


def renamed(events: list[Event[Any]], dataset: str) -> list[Event[Any]]:
    """The same stream under another dataset and model name (and record ids of its own)."""
    changes: dict[str, Any] = {"dataset": dataset}
    renamed_events = []
    for event in events:
        data = event.data.model_copy(
            update={
                **changes,
                "record_id": f"{dataset}-{event.data.record_id}",
                **({"model_name": dataset} if isinstance(event.data, PredictionServed) else {}),
            }
        )
        renamed_events.append(Event.create(data, source=event.source))
    return renamed_events


def local_performance(service: RunningService) -> dict[str, Any]:
    """What this replica owns, without the others' (`scope=local`)."""
    return httpx.get(f"{service.url}/performance", params={"scope": "local"}, timeout=10).json()


def committed_everything(bootstrap: str, group: str, topic: str) -> bool:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        wanted = [TopicPartition(topic, p) for p in partitions]
        committed = consumer.committed(wanted, timeout=10)
        return all(
            max(c.offset, 0) == consumer.get_watermark_offsets(w, timeout=10)[1]
            for c, w in zip(committed, wanted, strict=True)
        )
    finally:
        consumer.close()


def committed_in_each(bootstrap: str, group: str, topic: str) -> bool:
    """Every partition holding messages has a committed offset past its start."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        wanted = [TopicPartition(topic, p) for p in partitions]
        committed = consumer.committed(wanted, timeout=10)
        return all(
            c.offset > 0
            for c, w in zip(committed, wanted, strict=True)
            if consumer.get_watermark_offsets(w, timeout=10)[1] > 0
        )
    finally:
        consumer.close()


def test_two_replicas_own_a_dataset_each_and_one_killed_hands_over_with_one_retrain_per_drift(
    model, namespace, producer, subprocess_env, bootstrap, tmp_path, admin
) -> None:
    """Two monitoring processes, as `MLOPS_REPLICAS="monitoring=2"` runs them, share two
    drifting streams keyed by record id as serving and ingestion publish them (so each
    replica's first stage reads part of every stream): the second stage gives each dataset to
    one replica, and either answers /performance for both. Then the owner of one dataset is
    SIGKILLed a third of the way in. Both of its stages' partitions move to the survivor,
    which reads every input to the end, owns both datasets, and decides one retrain per
    drift episode: nothing lost (the drift after the kill is caught), nothing decided twice.
    The killed owner's dataset keeps its detectors (restored from its checkpoint)."""
    short_session = {"MLOPS_KAFKA_CLIENT_EXTRA": json.dumps({"session.timeout.ms": "6000"})}
    replicas = [
        monitoring(
            namespace,
            subprocess_env,
            tmp_path,
            **{"MLOPS_INSTANCE": f"monitoring-{n}", "MLOPS_MONITORING_CHECKPOINT_EVERY": "200"},
            **short_session,
        )
        for n in (1, 2)
    ]
    group = f"{namespace}.monitoring"
    predictions, labels = stream(model, DRIFT_AT)
    streams = [
        (predictions, labels),
        (renamed(predictions, "loans_b"), renamed(labels, "loans_b")),
    ]

    def publish_part(start: int, end: int) -> None:
        for served, labelled_events in streams:
            for name, events in (("serving.predictions", served), ("data.labels", labelled_events)):
                topic = CATALOG.name(name, namespace)
                producer.publish_confirmed(
                    [
                        OutgoingMessage.for_event(topic, e, key=e.data.record_id)
                        for e in events[start:end]
                    ],
                    timeout=60,
                )

    def owner_of(dataset: str) -> RunningService | None:
        return next(
            (
                r
                for r in replicas
                if r.process.poll() is None
                and any(row["model_name"] == dataset for row in local_performance(r)["models"])
            ),
            None,
        )

    try:
        for stage in (group, f"{group}-router"):
            wait_until(
                lambda g=stage: stable_members(admin, g) == 2, what=f"two members in {stage}"
            )
        third = LENGTH // 3
        publish_part(0, third)
        wait_until(
            lambda: (
                sum(row["labelled"] for r in replicas for row in local_performance(r)["models"])
                >= third
            ),
            what="a third of a stream joined",
            timeout_s=120,
        )
        owners = [
            (n, row["model_name"])
            for n, replica in enumerate(replicas)
            for row in local_performance(replica)["models"]
        ]
        gathered = [sorted(m["model_name"] for m in performance(r)["models"]) for r in replicas]
        victim = owner_of("loans")
        assert victim is not None
        survivor = next(r for r in replicas if r is not victim)
        wait_until(
            lambda: committed_in_each(
                bootstrap, group, CATALOG.name("monitoring.inputs", namespace)
            ),
            what="each owner to commit some of its inputs",
            timeout_s=60,
            interval_s=0.5,
        )
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(10)
        publish_part(third, LENGTH)
        wait_until(
            lambda: all(
                committed_everything(bootstrap, g, CATALOG.name(t, namespace))
                for g, t in (
                    (f"{group}-router", "serving.predictions"),
                    (f"{group}-router", "data.labels"),
                    (group, "monitoring.inputs"),
                )
            ),
            what="the survivor to read every input to its end",
            timeout_s=240,
            interval_s=1,
        )
        owned = sorted(row["model_name"] for row in local_performance(survivor)["models"])
        commands = read_to_end(bootstrap, CATALOG.name("training.requests", namespace))
        drifts = read_to_end(bootstrap, CATALOG.name("monitoring.drift", namespace))
        view = drift_view(survivor)
    finally:
        for replica in replicas:
            replica.stop()
    assert sorted(model for _, model in owners) == ["loans", "loans_b"], "one owner each"
    assert gathered == [["loans", "loans_b"]] * 2, "each replica answers for both (gathered)"
    assert owned == ["loans", "loans_b"], "the survivor owns both datasets"
    retrained = sorted(command["data"]["model_name"] for _, command in commands)
    assert retrained == ["loans", "loans_b"], f"one retrain per drift episode: {retrained}"
    triggers = sorted(d["model_name"] for d in view["decisions"] if d["action"] == "trigger")
    assert triggers == ["loans", "loans_b"]
    caught = {
        d["data"]["model_name"] for _, d in drifts if d["data"]["position"] > DRIFT_AT - third
    }
    assert caught == {"loans", "loans_b"}, "the drift after the kill is caught for both"
    # The survivor took the killed owner's detectors over from their checkpoint: each error
    # detector saw every label of its stream once, not only those after the kill.
    errors = {d["model_name"]: d["position"] for d in view["detectors"] if d["signal"] == "error"}
    assert errors == {"loans": LENGTH, "loans_b": LENGTH}
