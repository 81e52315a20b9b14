"""Training against the real stack, run as `python -m services.training`: real Kafka, MinIO,
PostgreSQL or SQLite, and the real registry service (`python -m services.registry`).

The first test runs the real feature store too (`python -m services.feature_store`): records
go in on data.validated and labels on data.labels, and training asks the store for its
point-in-time training set. The others, which look at training's own behaviour (redelivery,
baselines, triggers, refusals), write their training set as Parquet into the real MinIO
themselves and serve the feature store's training-set endpoint (POST /training-sets, answered
as the real store answers: location, rows, columns, spec version, lineage) from a small
FastAPI app on a real port in a thread of the test: their training set is then fixed and
known, and the stand-in counts the sets asked for (a run that is not done twice asks once).
It says its offline store covers everything the test's data topics hold (their high
watermarks), as the real store does once it has written them.

The tests of waiting for data and of outcomes run the real feature store: a TrainModel issued
before the offline store holds its records waits for them (breast_cancer, labels in the
records; a regression dataset from scikit-learn's diabetes table, no estimator declared);
data that never reaches the offline store ends in TrainingFailed "failed" with what was
missing (loans, feedback labels), which `mlops train --wait` reports with exit code 1.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sklearn
import uvicorn
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from fastapi import FastAPI
from minio import Minio

from services.training.domain.frames import prepare
from services.training.domain.metrics import score
from services.training.domain.split import time_split
from shared.artifacts import load_model
from shared.datasets.registry import SpecRegistry
from shared.datasets.sources import agrawal_records, breast_cancer_records
from shared.datasets.spec import (
    DatasetSpec,
    FeatureSpec,
    FeatureType,
    LabelSpec,
    VersionedSpec,
    shipped_specs,
)
from shared.events import Event
from shared.events.catalog import payload_type
from shared.events.models import (
    ModelTrained,
    OffsetRange,
    TrainingFailed,
    TrainingTrigger,
    TrainModel,
)
from shared.events.records import LabelRecorded, RecordValidated, SourcePosition
from shared.kafka.config import client_config, producer_config
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.kafka.topics import TopicCatalog
from shared.settings import PlatformSettings
from tests.integration.conftest import Database
from tests.integration.kafka_helpers import (
    committed_total,
    read_all,
    unique_name,
)
from tests.services import RunningService, free_port, namespace_topics, start_service
from tests.waiting import wait_until

LOANS = next(spec for spec in shipped_specs() if spec.name == "loans")
LOANS_KEYS = ("applicant_id", "applied_at", "application_id")
ROWS = 500
FIT_PARAMS = {"max_iter": 30}


def loans_rows(count: int) -> list[tuple[dict[str, Any], int]]:
    """Loans records whose event times lie in the last two days, with their labels."""
    start = datetime.now(UTC) - timedelta(days=2)
    return list(agrawal_records(count, seed=17, start=start, seconds_between=60, function_before=2))


def loans_training_set(namespace: str) -> pd.DataFrame:
    """Loans rows in the columns of the feature store's training sets: generic columns, the
    record's features, the entity's aggregates, the label, and where each row came from."""
    rows = []
    for index, (record, approved) in enumerate(loans_rows(ROWS)):
        event_time = datetime.fromisoformat(str(record["applied_at"]))
        features = {k: v for k, v in record.items() if k not in LOANS_KEYS}
        rows.append(
            {
                "record_id": record["application_id"],
                "entity": record["applicant_id"],
                "event_time": event_time,
                "spec_version": 1,
                "labelled_at": event_time + timedelta(hours=1),
                **features,
                "applications_1h": 1 + index % 3,
                "loan_sum_1h": float(record["loan"]) * (1 + index % 3),  # type: ignore[arg-type]
                "loan_mean_1d": record["loan"],
                "label": approved,
                "source_topic": f"{namespace}.data.features",
                "source_partition": index % 3,
                "source_offset": index // 3,
            }
        )
    return pd.DataFrame(rows).sample(frac=1, random_state=4)  # stored in no particular order


@dataclass
class StandInFeatureStore:
    """POST /training-sets over a Parquet file the test put in MinIO, on a real port."""

    minio: Minio
    bucket: str
    namespace: str
    frame: pd.DataFrame
    kafka: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        data = io.BytesIO()
        self.frame.to_parquet(data, index=False)
        self.key = f"{self.namespace}/loans/training-set.parquet"
        self.minio.make_bucket(self.bucket)
        self.minio.put_object(self.bucket, self.key, io.BytesIO(data.getvalue()), data.tell())
        self.lineage = [
            OffsetRange(
                topic=f"{self.namespace}.data.features",
                partition=p,
                first_offset=0,
                last_offset=int((self.frame["source_partition"] == p).sum()) - 1,
            )
            for p in range(3)
        ]
        self._server = uvicorn.Server(
            uvicorn.Config(self._app(), host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/live")
        def live() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/training-sets/coverage")
        def coverage() -> dict[str, Any]:
            return {"coverage": self.coverage()}

        @app.post("/training-sets", status_code=201)
        def training_set(body: dict[str, Any]) -> dict[str, Any]:
            self.requests.append(body)
            return {
                "id": "stand-in",
                "dataset": body["dataset"],
                "until": body.get("until"),
                "uri": self.uri,
                "location": {"bucket": self.bucket, "key": self.key},
                "rows": len(self.frame),
                "columns": list(self.frame.columns),
                "spec_version": 1,
                "lineage": {"offsets": [r.model_dump() for r in self.lineage]},
            }

        return app

    def coverage(self) -> list[dict[str, Any]]:
        """Everything the namespace's data.validated and data.labels hold now."""
        consumer = Consumer({"bootstrap.servers": self.kafka, "group.id": unique_name("cover")})
        try:
            return [
                {"topic": topic, "partition": p, "offset": consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=10)[1]}
                for topic in (f"{self.namespace}.data.validated", f"{self.namespace}.data.labels")
                for p in range(3)
            ]  # fmt: skip
        finally:
            consumer.close()

    def start(self) -> None:
        self._thread.start()
        wait_until(lambda: self._server.started, what="the stand-in feature store to start")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


@dataclass
class Stack:
    """One test's namespace: its topics, specs, buckets, the services it started."""

    namespace: str
    settings: PlatformSettings
    env: dict[str, str]
    logs: Path
    minio: Minio
    feature_store: StandInFeatureStore
    models_bucket: str
    offline_bucket: str
    specs: dict[str, VersionedSpec] = field(default_factory=dict)
    services: list[RunningService] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.producer = EventProducer(producer_config(self.settings, "training-test"))

    def topic(self, name: str) -> str:
        return TopicCatalog.load().name(name, self.namespace)

    def register_specs(self) -> None:
        registry = SpecRegistry(
            client_config(self.settings, "training-test"), self.topic("data.specs"), "test"
        )
        for spec in shipped_specs():
            self.specs[spec.name] = registry.register(spec, self.producer)

    def start(
        self, name: str, extra_env: dict[str, str] | None = None, **settings: str
    ) -> RunningService:
        prefix = f"MLOPS_{name.upper()}_"
        env = {**self.env, **(extra_env or {})}
        env.update({prefix + k.upper(): v for k, v in settings.items()})
        logs = self.logs / f"{name}-{len(self.services)}"
        logs.mkdir()
        service = start_service(name, self.namespace, env, logs)
        self.services.append(service)
        return service

    def start_registry(self) -> RunningService:
        return self.start("registry", database_url=f"sqlite:///{self.logs / 'registry.sqlite'}")

    def start_feature_store(self, **settings: str) -> RunningService:
        """The real feature store, its offline store in a bucket of the test's own."""
        defaults = {
            "bucket": self.offline_bucket,
            "offline_flush_s": "0.5",
            "sqlite_path": str(self.logs / "online.sqlite"),
        }
        return self.start(
            "feature_store",
            extra_env={"F_DATADIR": str(self.logs / "faust")},  # not in the working directory
            **{**defaults, **settings},
        )

    def register_spec(self, spec: DatasetSpec) -> VersionedSpec:
        registry = SpecRegistry(
            client_config(self.settings, "training-test"), self.topic("data.specs"), "test"
        )
        self.specs[spec.name] = registry.register(spec, self.producer)
        return self.specs[spec.name]

    def start_training(self, registry: RunningService, **settings: str) -> RunningService:
        defaults = {
            "feature_store_url": self.feature_store.url,
            "registry_url": registry.url,
            "models_bucket": self.models_bucket,
            "database_url": f"sqlite:///{self.logs / 'training.sqlite'}",
        }
        return self.start("training", **{**defaults, **settings})

    def publish(self, topic: str, *events: Event[Any], key: str | None = None) -> None:
        self.producer.publish_confirmed(
            OutgoingMessage.for_event(self.topic(topic), event, key=key) for event in events
        )

    def read(self, topic: str, expected: int, timeout_s: float = 120) -> list[Event[Any]]:
        messages = read_all(
            self.settings.kafka_bootstrap_servers, self.topic(topic), expected, timeout_s
        )
        return [decode(m.value()) for m in messages]

    def end_offsets(self, topic: str) -> int:
        name = self.topic(topic)
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap_servers,
                "group.id": unique_name("end"),
            }
        )
        try:
            partitions = TopicCatalog.load()[topic].partitions
            return sum(
                consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
                for p in range(partitions)
            )
        finally:
            consumer.close()


def decode(value: bytes) -> Event[Any]:
    kind = payload_type(json.loads(value)["type"])
    return Event[kind].model_validate_json(value)  # type: ignore[valid-type]


def train_command(seed: int = 7, reason: str = "test") -> Event[TrainModel]:
    payload = TrainModel(
        model_name="loans",
        dataset="loans",
        trigger=TrainingTrigger(kind="manual", reason=reason, requested_by="test"),
        params=FIT_PARAMS,
        seed=seed,
    )
    return Event.create(payload, source="test", subject="loans")


@pytest.fixture
def minio(settings: PlatformSettings) -> Minio:
    assert settings.s3_access_key and settings.s3_secret_key, "make up writes the credentials"
    return Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key.get_secret_value(),
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=settings.s3_secure,
    )


def empty_bucket(minio: Minio, bucket: str) -> None:
    if not minio.bucket_exists(bucket):
        return
    for item in minio.list_objects(bucket, recursive=True):
        minio.remove_object(bucket, item.object_name)
    minio.remove_bucket(bucket)


@pytest.fixture
def stack(
    settings: PlatformSettings,
    admin: AdminClient,
    subprocess_env: dict[str, str],
    minio: Minio,
    tmp_path: Path,
) -> Iterator[Stack]:
    namespace = unique_name("train")
    suffix = uuid.uuid4().hex[:12]
    frame = loans_training_set(namespace)
    feature_store = StandInFeatureStore(
        minio, f"sets-{suffix}", namespace, frame, settings.kafka_bootstrap_servers
    )
    feature_store.start()
    with namespace_topics(admin, namespace):
        running = Stack(
            namespace,
            settings,
            subprocess_env,
            tmp_path,
            minio,
            feature_store,
            models_bucket=f"models-{suffix}",
            offline_bucket=f"offline-{suffix}",
        )
        try:
            running.register_specs()
            yield running
        finally:
            for service in reversed(running.services):
                service.stop()
            feature_store.stop()
            for bucket in (feature_store.bucket, running.models_bucket, running.offline_bucket):
                empty_bucket(minio, bucket)
            delete_topics_of(admin, namespace)


def delete_topics_of(admin: AdminClient, namespace: str) -> None:
    """Topics the feature store's stream made for itself (<namespace>-feature-store-...)."""
    own = [
        name for name in admin.list_topics(timeout=10).topics if name.startswith(f"{namespace}-")
    ]
    if own:
        admin.delete_topics(own, operation_timeout=10)


def expected_holdout(stack: Stack) -> tuple[pd.DataFrame, pd.Series]:
    """The holdout the service must have used: the last 20% by event time of the stored set."""
    training = prepare(stack.feature_store.frame, LOANS)
    holdout = time_split(training, 0.2).holdout
    return training.x(holdout), training.y(holdout)


def git_head() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


FEATURE_STORE_RECORDS = 300


def validated_and_labels(namespace: str) -> tuple[list[Event[Any]], list[Event[Any]]]:
    """Loans records as validation writes them to data.validated, and their labels as
    ingestion writes them to data.labels (known now, after the records)."""
    records, labels = [], []
    for index, (record, approved) in enumerate(loans_rows(FEATURE_STORE_RECORDS)):
        values = {k: v for k, v in record.items() if k not in LOANS_KEYS}
        payload = RecordValidated(
            dataset="loans",
            spec_version=1,
            record_id=str(record["application_id"]),
            entity=str(record["applicant_id"]),
            event_time=datetime.fromisoformat(str(record["applied_at"])),
            values=values,
            source=SourcePosition(topic=f"{namespace}.data.raw", partition=0, offset=index),
        )
        records.append(Event.create(payload, source="validation", subject=payload.entity))
        label_payload = LabelRecorded(
            dataset="loans",
            record_id=payload.record_id,
            label=approved,
            labelled_at=datetime.now(UTC),
        )
        labels.append(Event.create(label_payload, source="ingestion", subject=payload.record_id))
    return records, labels


def read_parquet(minio: Minio, uri: str) -> pd.DataFrame:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    response = minio.get_object(bucket, key)
    try:
        return pd.read_parquet(io.BytesIO(response.read()))
    finally:
        response.close()
        response.release_conn()


def covered(ranges: list[OffsetRange], topic: str) -> int:
    return sum(r.last_offset - r.first_offset + 1 for r in ranges if r.topic == topic)


def test_a_model_is_trained_on_the_real_feature_store_s_point_in_time_set(stack: Stack) -> None:
    records, labels = validated_and_labels(stack.namespace)
    for record in records:
        stack.publish("data.validated", record, key=record.data.entity)
    for label_event in labels:
        stack.publish("data.labels", label_event, key=label_event.data.record_id)
    feature_store = stack.start_feature_store()

    def every_record_labelled() -> bool:
        answer = httpx.post(
            f"{feature_store.url}/training-sets", json={"dataset": "loans"}, timeout=60
        )
        return answer.status_code == 201 and answer.json()["rows"] == FEATURE_STORE_RECORDS

    wait_until(
        every_record_labelled,
        what=f"the feature store to join {FEATURE_STORE_RECORDS} records with their labels",
        timeout_s=180,
        interval_s=1,
    )
    registry = stack.start_registry()
    stack.start_training(registry, feature_store_url=feature_store.url)
    command = train_command()
    stack.publish("training.requests", command, key="loans")

    [event] = stack.read("models.trained", 1, timeout_s=180)
    assert event.causationid == command.id
    trained: ModelTrained = event.data
    lineage = trained.lineage
    prefix = f"s3://{stack.offline_bucket}/{stack.namespace}/training-sets/loans/"
    assert lineage.training_set_uri is not None and lineage.training_set_uri.startswith(prefix)
    stored = read_parquet(stack.minio, lineage.training_set_uri)
    training = prepare(stored, LOANS)
    assert lineage.training_set_sha256 == training.sha256
    assert lineage.rows == len(stored) == FEATURE_STORE_RECORDS
    assert lineage.holdout_rows == FEATURE_STORE_RECORDS // 5
    assert lineage.spec_version == 1 and lineage.spec_fingerprint == LOANS.fingerprint()
    assert covered(lineage.offsets, stack.topic("data.labels")) == FEATURE_STORE_RECORDS
    # feature rows point back at the data.validated messages they were computed from
    assert covered(lineage.offsets, stack.topic("data.validated")) == FEATURE_STORE_RECORDS
    declared = [f.name for f in LOANS.features] + [a.name for a in LOANS.aggregations]
    assert lineage.feature_columns == declared

    model = load_model(stack.minio, trained.artifact)
    holdout = time_split(training, 0.2).holdout
    x, y = training.x(holdout), training.y(holdout)
    assert score(model, x, y, "classification").metrics == trained.evaluation.metrics
    assert trained.evaluation.metrics["roc_auc"] > 0.5


def test_a_train_command_produces_a_model_whose_artifact_loads_and_predicts_with_full_lineage(
    stack: Stack,
) -> None:
    registry = stack.start_registry()
    stack.start_training(registry)
    command = train_command()
    stack.publish("training.requests", command, key="loans")

    [event] = stack.read("models.trained", 1)
    assert event.type == "mlops.ModelTrained"
    assert (event.causationid, event.correlationid) == (command.id, command.id)
    trained: ModelTrained = event.data
    assert trained.model_name == "loans" and trained.run_id == command.id
    assert trained.params == {**FIT_PARAMS, "random_state": 7} and trained.seed == 7
    assert trained.artifact.uri == (
        f"s3://{stack.models_bucket}/{stack.namespace}/loans/{command.id}.skops"
    )

    model = load_model(stack.minio, trained.artifact)
    x, y = expected_holdout(stack)
    assert set(model.predict(x)) <= {0, 1}
    assert score(model, x, y, "classification").metrics == trained.evaluation.metrics
    assert trained.evaluation.primary_metric == "roc_auc"
    assert trained.evaluation.holdout.startswith(f"last 20% by event time: {len(x)} rows")

    lineage = trained.lineage
    spec = stack.specs["loans"]
    assert (lineage.dataset, lineage.spec_version) == ("loans", spec.version)
    assert lineage.spec_fingerprint == spec.fingerprint
    assert lineage.offsets == stack.feature_store.lineage
    assert lineage.training_set_uri == stack.feature_store.uri
    assert lineage.training_set_sha256 == prepare(stack.feature_store.frame, LOANS).sha256
    assert (lineage.rows, lineage.holdout_rows) == (ROWS, len(x))
    assert lineage.feature_columns == list(x.columns)
    assert "source_offset" not in lineage.feature_columns
    assert lineage.feature_definitions["loan_mean_1d"]["hop_seconds"] == 3600
    assert lineage.data_quality["rows_read"] == ROWS
    assert lineage.library_versions["scikit-learn"] == sklearn.__version__
    assert lineage.code_version == git_head()
    assert lineage.trigger == command.data.trigger
    [asked] = stack.feature_store.requests
    assert asked["dataset"] == "loans"
    assert datetime.fromisoformat(asked["until"]) == command.time


def test_post_train_goes_through_kafka(stack: Stack) -> None:
    registry = stack.start_registry()
    training = stack.start_training(registry)
    body = {"model_name": "loans", "dataset": "loans", "reason": "weekly", "params": FIT_PARAMS}
    answer = httpx.post(
        f"{training.url}/train", json=body, headers={"X-Requested-By": "carol"}, timeout=30
    )
    assert answer.status_code == 202, answer.text
    command_id = answer.json()["command_id"]

    [command] = stack.read("training.requests", 1)
    assert command.id == command_id
    assert command.data.trigger.kind == "manual"
    assert command.data.trigger.requested_by == "carol"
    [trained] = stack.read("models.trained", 1)
    assert trained.causationid == command_id
    assert trained.data.lineage.trigger.reason == "weekly"
    run = httpx.get(f"{training.url}/runs/{command_id}", timeout=10)
    assert run.status_code == 200 and run.json()["id"] == trained.id

    unknown = httpx.post(
        f"{training.url}/train", json={"model_name": "x", "dataset": "nope"}, timeout=30
    )
    assert unknown.status_code == 404
    assert stack.end_offsets("training.requests") == 1


@pytest.fixture
def database_url(sql_database: Database) -> dict[str, str]:
    """Training's database: a SQLite file, or a PostgreSQL schema of the test's own."""
    settings = {"database_url": sql_database.url}
    if sql_database.schema is not None:
        settings["database_schema"] = sql_database.schema
    return settings


def test_a_redelivered_command_trains_once_and_re_emits_the_same_event(
    stack: Stack, database_url: dict[str, str]
) -> None:
    registry = stack.start_registry()
    first = stack.start_training(registry, **database_url)
    command = train_command()
    stack.publish("training.requests", command, command, key="loans")  # delivered twice
    emitted = stack.read("models.trained", 2)
    assert emitted[0].to_json_bytes() == emitted[1].to_json_bytes()

    # A new process in a new consumer group reads both commands again: the runs are in SQL.
    first.stop()
    stack.start_training(registry, group_id=unique_name("again"), **database_url)
    again = stack.read("models.trained", 4)
    assert {e.to_json_bytes() for e in again} == {emitted[0].to_json_bytes()}
    assert len(stack.feature_store.requests) == 1, "the command was trained more than once"


def test_with_a_champion_the_baseline_is_scored_on_the_same_holdout(stack: Stack) -> None:
    registry = stack.start_registry()
    stack.start_training(registry)
    stack.publish("training.requests", train_command(reason="first"), key="loans")
    [first] = stack.read("models.trained", 1)
    assert first.data.baseline is None

    def champion() -> int | None:
        answer = httpx.get(f"{registry.url}/models/loans/aliases/champion", timeout=10)
        return answer.json()["version"]["version"] if answer.status_code == 200 else None

    assert wait_until(champion, what="the registry to promote v1", timeout_s=60) == 1

    stack.publish("training.requests", train_command(reason="second"), key="loans")
    second = stack.read("models.trained", 2)[1]
    baseline = second.data.baseline
    assert baseline is not None and baseline.version == 1
    x, y = expected_holdout(stack)
    champion_model = load_model(stack.minio, first.data.artifact)
    assert baseline.metrics == score(champion_model, x, y, "classification").metrics
    # same training set, params and seed: the new model scores exactly what the champion does
    assert baseline.metrics == second.data.evaluation.metrics


def label(record: int) -> Event[LabelRecorded]:
    payload = LabelRecorded(
        dataset="loans", record_id=f"app-{record}", label=record % 2, labelled_at=datetime.now(UTC)
    )
    return Event.create(payload, source="test", subject=payload.record_id)


def test_the_data_volume_trigger_fires_after_every_n_labels(stack: Stack) -> None:
    registry = stack.start_registry()
    stack.start_training(registry, retrain_every_labels="10")
    labels = [label(i) for i in range(25)]
    for event in labels:
        stack.publish("data.labels", event, key=event.data.record_id)
    group = f"{stack.namespace}.training-labels"
    topic = stack.topic("data.labels")
    wait_until(
        lambda: committed_total(stack.settings.kafka_bootstrap_servers, group, topic, 3) >= 25,
        what="training to count 25 labels",
        timeout_s=60,
        interval_s=0.5,
    )
    commands = stack.read("training.requests", 2)
    assert stack.end_offsets("training.requests") == 2
    assert {c.data.trigger.kind for c in commands} == {"data_volume"}
    assert {c.data.model_name for c in commands} == {"loans"}
    reasons = sorted(c.data.trigger.reason for c in commands)
    assert reasons[0].startswith("10 labels of loans") and reasons[1].startswith("20 labels")
    assert {c.data.trigger.event_id for c in commands} <= {e.id for e in labels}
    trained = stack.read("models.trained", 2)
    assert {t.causationid for t in trained} == {c.id for c in commands}
    assert {t.data.lineage.trigger.kind for t in trained} == {"data_volume"}


def test_a_command_that_cannot_be_trained_is_refused_at_once_and_the_next_one_trains(
    stack: Stack,
) -> None:
    registry = stack.start_registry()
    training = stack.start_training(registry, data_wait_s="120")
    unknown = Event.create(
        TrainModel(model_name="nope", dataset="nope", trigger=TrainingTrigger(kind="manual")),
        source="test",
    )
    bad_estimator = train_command()
    bad_estimator = Event.create(
        bad_estimator.data.model_copy(update={"params": {"no_such_param": 1}}), source="test"
    )
    good = train_command()
    started = time.monotonic()
    stack.publish("training.requests", unknown, bad_estimator, good, key="loans")  # in order

    events = {e.causationid: e for e in stack.read("models.trained", 3)}
    refused_unknown, refused_estimator = events[unknown.id].data, events[bad_estimator.id].data
    assert isinstance(refused_unknown, TrainingFailed)
    assert refused_unknown.outcome == "refused" and refused_unknown.command_id == unknown.id
    assert "unknown dataset 'nope'" in refused_unknown.reason
    assert isinstance(refused_estimator, TrainingFailed)
    assert (refused_estimator.outcome, refused_estimator.error) == ("refused", "EstimatorRefused")
    assert "no_such_param" in refused_estimator.reason
    assert refused_estimator.failed_at - bad_estimator.time < timedelta(seconds=60)
    assert isinstance(events[good.id].data, ModelTrained)
    assert time.monotonic() - started < 120, "a refusal waited for data"

    run = httpx.get(f"{training.url}/runs/{unknown.id}", timeout=10)
    assert run.status_code == 200 and run.json()["id"] == events[unknown.id].id
    assert run.json()["data"]["outcome"] == "refused"
    # the registry reads every outcome on models.trained and dead-letters none of them
    group, trained_topic = f"{stack.namespace}.registry", stack.topic("models.trained")
    wait_until(
        lambda: (
            committed_total(stack.settings.kafka_bootstrap_servers, group, trained_topic, 3) >= 3
        ),
        what="the registry to consume the three outcomes",
        timeout_s=60,
        interval_s=0.5,
    )
    assert stack.end_offsets("bus.dead-letter") == 0


# Waiting for data and visible failures, on the real feature store.

DIABETES = DatasetSpec(
    name="diabetes",
    description="scikit-learn's diabetes table: disease progression a year after baseline.",
    entity_key="patient_id",
    event_time="examined_at",
    record_id="sample_id",
    features=[
        FeatureSpec(name=name, type=FeatureType.NUMERIC)
        for name in ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
    ],
    label=LabelSpec(name="progression", type=FeatureType.NUMERIC, task="regression"),
)  # no model section: training picks the regression default


def diabetes_rows(count: int, start: datetime) -> list[tuple[str, datetime, dict[str, Any], Any]]:
    from sklearn.datasets import load_diabetes

    bunch: Any = load_diabetes()
    names = [f.name for f in DIABETES.features]
    return [
        (
            f"patient-{i % len(bunch.target)}",
            start + timedelta(minutes=i),
            dict(zip(names, (float(v) for v in bunch.data[i % len(bunch.target)]), strict=True)),
            float(bunch.target[i % len(bunch.target)]),
        )
        for i in range(count)
    ]


def breast_cancer_rows(
    count: int, start: datetime
) -> list[tuple[str, datetime, dict[str, Any], Any]]:
    spec = stack_spec("breast_cancer")
    names = [f.name for f in spec.features]
    return [
        (
            str(record["patient_id"]),
            datetime.fromisoformat(str(record["examined_at"])),
            {name: record[name] for name in names},
            diagnosis,
        )
        for record, diagnosis in breast_cancer_records(
            count, seed=5, start=start, seconds_between=60
        )
    ]


def stack_spec(name: str) -> DatasetSpec:
    return next(spec for spec in [*shipped_specs(), DIABETES] if spec.name == name)


def validated_with_labels(
    namespace: str, dataset: str, version: int, count: int
) -> list[Event[RecordValidated]]:
    """Records whose label arrives with them, as validation writes them to data.validated."""
    start = datetime.now(UTC) - timedelta(days=2)
    rows = diabetes_rows if dataset == "diabetes" else breast_cancer_rows
    events = []
    for index, (entity, event_time, values, label_value) in enumerate(rows(count, start)):
        payload = RecordValidated(
            dataset=dataset,
            spec_version=version,
            record_id=f"{dataset}-{index}",
            entity=entity,
            event_time=event_time,
            values=values,
            label=label_value,
            source=SourcePosition(topic=f"{namespace}.data.raw", partition=0, offset=index),
        )
        events.append(Event.create(payload, source="validation", subject=entity))
    return events


def offsets_sum(positions: list[Any], topic: str) -> int:
    return sum(p.offset for p in positions if p.topic == topic)


WAITED_RECORDS = 240


@pytest.mark.parametrize("dataset", ["breast_cancer", "diabetes"])
def test_a_command_issued_before_the_offline_store_has_its_records_waits_and_trains_on_all(
    stack: Stack, dataset: str
) -> None:
    spec = stack_spec(dataset)
    version = stack.register_spec(spec).version
    feature_store = stack.start_feature_store(offline_flush_s="5")  # files every 5 s
    registry = stack.start_registry()
    stack.start_training(
        registry, feature_store_url=feature_store.url, data_wait_s="150", data_poll_s="0.5"
    )
    records = validated_with_labels(stack.namespace, dataset, version, WAITED_RECORDS)
    stack.producer.publish_confirmed(
        OutgoingMessage.for_event(stack.topic("data.validated"), r, key=r.data.entity)
        for r in records
    )
    command = Event.create(
        TrainModel(
            model_name=dataset,
            dataset=dataset,
            trigger=TrainingTrigger(kind="manual", reason="right after the upload"),
            params=FIT_PARAMS,
            seed=1,
        ),
        source="test",
    )
    stack.publish("training.requests", command, key=dataset)
    covered = httpx.get(f"{feature_store.url}/training-sets/coverage", timeout=10).json()
    validated = stack.topic("data.validated")
    written = sum(c["offset"] for c in covered["coverage"] if c["topic"] == validated)
    assert written < WAITED_RECORDS, "the offline store had the records before the command"

    [event] = stack.read("models.trained", 1, timeout_s=240)
    assert event.type == "mlops.ModelTrained", event.data
    trained: ModelTrained = event.data
    lineage = trained.lineage
    assert lineage.rows == WAITED_RECORDS, "the run did not train on every record before it"
    wait = lineage.data_wait
    assert wait is not None and wait.waited_s > 0
    assert offsets_sum(wait.needed, validated) == WAITED_RECORDS
    assert offsets_sum(wait.covered, validated) >= WAITED_RECORDS
    assert offsets_sum(wait.needed, stack.topic("data.labels")) == 0
    metric, higher = spec.model.metric_for(spec.label.task if spec.label else "")
    assert (trained.evaluation.primary_metric, trained.evaluation.higher_is_better) == (
        metric,
        higher,
    )
    assert trained.evaluation.rows == lineage.holdout_rows
    if dataset == "diabetes":
        assert trained.estimator == "sklearn.ensemble.HistGradientBoostingRegressor"
        assert {"rmse", "mae", "r2"} <= set(trained.evaluation.metrics)


def test_data_that_never_reaches_the_offline_store_fails_and_mlops_train_wait_says_why(
    stack: Stack,
) -> None:
    # The store holds its batches for 10 minutes: nothing is written during the test.
    feature_store = stack.start_feature_store(offline_flush_s="600", offline_flush_rows="1000000")
    registry = stack.start_registry()
    training = stack.start_training(
        registry, feature_store_url=feature_store.url, data_wait_s="6", data_poll_s="0.5"
    )
    records, labels = validated_and_labels(stack.namespace)
    stack.producer.publish_confirmed(
        [
            *(OutgoingMessage.for_event(stack.topic("data.validated"), r, key=r.data.entity)
              for r in records),
            *(OutgoingMessage.for_event(stack.topic("data.labels"), label, key=label.data.record_id)
              for label in labels),
        ]
    )  # fmt: skip
    env = {**stack.env, "MLOPS_CLI_TRAINING_URL": training.url}
    started = time.monotonic()
    cli = subprocess.run(
        [sys.executable, "-m", "shared.cli", "train", "loans", "--dataset", "loans",
         "--param", "max_iter=30", "--wait", "--timeout", "300"],
        capture_output=True, text=True, env=env, timeout=320,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert cli.returncode == 1, (cli.stdout, cli.stderr)
    assert elapsed < 60, f"mlops train --wait took {elapsed:.0f}s to report the failure"
    assert "training of loans failed (DataNotArrived)" in cli.stderr
    assert f"missing {stack.topic('data.labels')}[" in cli.stderr or (
        f"missing {stack.topic('data.validated')}[" in cli.stderr
    )
    command_id = cli.stdout.strip().splitlines()[0]

    run = httpx.get(f"{training.url}/runs/{command_id}", timeout=10)
    assert run.status_code == 200
    assert run.json()["type"] == "mlops.TrainingFailed"
    failed = TrainingFailed.model_validate(run.json()["data"])
    assert (failed.outcome, failed.error, failed.command_id) == (
        "failed",
        "DataNotArrived",
        command_id,
    )
    assert "did not reach every record sent before the command within 6s" in failed.reason
    [event] = stack.read("models.trained", 1)
    assert event.id == run.json()["id"] and event.causationid == command_id
