"""The feature store as `python -m services.feature_store`, against real Kafka, PostgreSQL (or
SQLite) and MinIO, in a namespace of each test's own: validated records published straight to
data.validated become feature vectors (data.features, the online store, Parquet in MinIO),
labels become point-in-time-correct training sets, and a worker killed mid-stream recovers
its windowed aggregates from the changelog."""

from __future__ import annotations

import io
import itertools
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from minio import Minio
from minio.deleteobjects import DeleteObject
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import create_engine, text

from services.feature_store.adapters.online import table_name
from services.feature_store.adapters.streaming import app_id, changelog_topic
from services.feature_store.domain.aggregates import replay
from shared.datasets.registry import SpecRegistry
from shared.datasets.sources import breast_cancer_records
from shared.datasets.spec import VersionedSpec, shipped_specs
from shared.events import Event, LabelRecorded, RecordValidated, SourcePosition
from shared.kafka.config import client_config, producer_config
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.kafka.watermarks import HighWatermarks
from shared.service import CRASH_EXIT_CODE
from shared.settings import PlatformSettings
from shared.storage import minio_client
from tests.integration.kafka_helpers import (
    committed_total,
    read_all,
    stable_members,
    unique_name,
)
from tests.services import RunningService, namespace_topics, start_service
from tests.waiting import wait_until

LOANS = next(spec for spec in shipped_specs() if spec.name == "loans")
CANCER = next(spec for spec in shipped_specs() if spec.name == "breast_cancer")
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
BUCKET = "mlops-offline"
GRACE = 86_400
_tracer = TracerProvider().get_tracer("feature-store-test")


@dataclass
class Namespace:
    """One test's topics, spec, producer and services."""

    name: str
    settings: PlatformSettings
    env: dict[str, str]
    logs: Path
    spec: VersionedSpec
    producer: EventProducer
    services: list[RunningService] = field(default_factory=list)

    def topic(self, short_name: str) -> str:
        return f"{self.name}.{short_name}"

    def start(self, instance: str = "", **settings: str) -> RunningService:
        """A feature store worker; several (each its `instance` name) share the partitions."""
        env = {
            **self.env,
            "MLOPS_INSTANCE": instance,
            "MLOPS_FEATURE_STORE_OFFLINE_FLUSH_S": "1",
            **{f"MLOPS_FEATURE_STORE_{key.upper()}": value for key, value in settings.items()},
        }
        service = start_service("feature_store", self.name, env, self.logs, timeout_s=120)
        self.services.append(service)
        return service


@pytest.fixture
def namespace(
    settings: PlatformSettings,
    admin: AdminClient,
    subprocess_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[Namespace]:
    name = unique_name("fs").replace("-", "")
    with namespace_topics(admin, name):
        producer = EventProducer(producer_config(settings, "feature-store-test"))
        registry = SpecRegistry(client_config(settings, "fs-test"), f"{name}.data.specs", "test")
        ns = Namespace(
            name, settings, subprocess_env, tmp_path, registry.register(LOANS, producer), producer
        )
        try:
            yield ns
        finally:
            for service in ns.services:
                service.stop()
            _clean_up(settings, admin, name)


def _clean_up(settings: PlatformSettings, admin: AdminClient, name: str) -> None:
    admin.delete_topics([changelog_topic(name)], operation_timeout=10)
    groups = [app_id(name), *(f"{app_id(name)}-offline-{kind}" for kind in ("features", "labels"))]
    admin.delete_consumer_groups(groups)
    engine = create_engine(settings.database_url_or_sqlite(".local/data/feature_store.sqlite"))
    with engine.begin() as connection:
        connection.execute(text(f'DROP TABLE IF EXISTS "{table_name(name)}"'))
    engine.dispose()
    minio = minio_client(settings)
    objects = minio.list_objects(BUCKET, prefix=f"{name}/", recursive=True)
    errors = minio.remove_objects(BUCKET, [DeleteObject(o.object_name) for o in objects])
    assert not list(errors)


RAW_OFFSETS = itertools.count()
"""Each record its own raw message, in the order the records are made (an entity's records
come from its raw partition in order: a repeated position is a copy the store skips)."""


def record(
    ns: Namespace, record_id: str, entity: str, minutes: float, loan: float
) -> Event[RecordValidated]:
    values = {
        "salary": 52000.0, "commission": 0.0, "age": 41, "elevel": "2", "car": "7",
        "zipcode": "4", "hvalue": 135000.0, "hyears": 9, "loan": loan,
    }  # fmt: skip
    payload = RecordValidated(
        dataset="loans",
        spec_version=ns.spec.version,
        record_id=record_id,
        entity=entity,
        event_time=T0 + timedelta(minutes=minutes),
        values=values,
        source=SourcePosition(topic=ns.topic("data.raw"), partition=0, offset=next(RAW_OFFSETS)),
    )
    return Event.create(payload, source="test", subject=entity)


def label(record_id: str, value: int, minutes: float) -> Event[LabelRecorded]:
    payload = LabelRecorded(
        dataset="loans",
        record_id=record_id,
        label=value,
        labelled_at=T0 + timedelta(minutes=minutes),
    )
    return Event.create(payload, source="test", subject=record_id)


def publish(ns: Namespace, topic: str, events: list[Event[Any]]) -> str:
    """Publishes in one traced span, keyed by subject; returns the span's trace id."""
    with _tracer.start_as_current_span("publish") as span:
        ns.producer.publish_confirmed(OutgoingMessage.for_event(topic, e) for e in events)
        return format(span.get_span_context().trace_id, "032x")


def expected_features(events: list[Event[RecordValidated]]) -> dict[str, dict[str, Any]]:
    """Record id -> feature vector, as an uninterrupted run computes them (per entity, in the
    order published: one entity's records share a partition)."""
    by_entity: dict[str, list[RecordValidated]] = defaultdict(list)
    for event in events:
        by_entity[event.data.entity].append(event.data)
    expected = {}
    for records in by_entity.values():
        inputs = [(r.event_time, r.values, 0, n) for n, r in enumerate(records)]
        for r, aggregates in zip(records, replay(inputs, LOANS.aggregations, GRACE), strict=True):
            expected[r.record_id] = {**r.values, **aggregates}
    return expected


def features_of(messages: list[Message]) -> list[dict[str, Any]]:
    return [json.loads(message.value()) for message in messages]


def read_features_until(
    bootstrap: str,
    topic: str,
    record_ids: set[str],
    timeout_s: float = 180,
    meanwhile: Callable[[], object] = lambda: None,
) -> list[dict[str, Any]]:
    """Every FeaturesComputed on the topic (replays included) once all `record_ids` appeared;
    `meanwhile` runs between two reads."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": unique_name("fs-reader"),
         "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )  # fmt: skip
    consumer.subscribe([topic])
    events: list[dict[str, Any]] = []
    seen: set[str] = set()

    def collect() -> bool:
        meanwhile()
        for message in consumer.consume(1000, 0.5):
            if message.error() is None:
                events.append(json.loads(message.value()))
                seen.add(events[-1]["data"]["record_id"])
        return seen >= record_ids

    try:
        wait_until(collect, what=f"features of {len(record_ids)} records", timeout_s=timeout_s)
    except AssertionError as timed_out:
        missing = sorted(record_ids - seen)
        raise AssertionError(
            f"{timed_out}: {len(seen & record_ids)} arrived, {len(missing)} missing "
            f"(first: {missing[:10]}), {len(events)} events read"
        ) from None
    finally:
        consumer.close()
    return events


def metric_values(exposition: str) -> dict[str, float]:
    return {
        name: float(value)
        for name, value in (line.split(" ", 1) for line in exposition.splitlines())
        if not name.startswith("#")
    }


def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10)


def offline_frames(minio: Minio, ns: Namespace, kind: str) -> dict[str, pd.DataFrame]:
    prefix = f"{ns.name}/{kind}/dataset=loans/"
    return {
        o.object_name: pd.read_parquet(io.BytesIO(minio.get_object(BUCKET, o.object_name).read()))
        for o in minio.list_objects(BUCKET, prefix=prefix, recursive=True)
    }


def offline_rows(minio: Minio, ns: Namespace, kind: str) -> int:
    frames = offline_frames(minio, ns, kind).values()
    if not frames:
        return 0
    rows = pd.concat(frames)
    return len(rows.drop_duplicates(["source_topic", "source_partition", "source_offset"]))


def test_features_reach_data_features_and_the_online_store_with_their_windowed_aggregates(
    namespace: Namespace, bootstrap: str
) -> None:
    ns = namespace
    service = ns.start()
    entities = ["alice", "bob", "carol", "dave"]
    events = [
        record(ns, f"r{n}", entities[n % 4], minutes=n * 9 + n % 4, loan=1000.0 + 37 * n)
        for n in range(60)
    ]
    trace_id = publish(ns, ns.topic("data.validated"), events[:30])
    ns.producer.publish_confirmed([OutgoingMessage(ns.topic("data.validated"), b"not json")])
    publish(ns, ns.topic("data.validated"), events[30:])

    messages = read_all(bootstrap, ns.topic("data.features"), expected=60, timeout_s=90)
    by_record = {json.loads(m.value())["data"]["record_id"]: m for m in messages}
    assert len(by_record) == 60
    expected = expected_features(events)
    for sent in events:
        message = by_record[sent.data.record_id]
        emitted = json.loads(message.value())
        assert emitted["data"]["features"] == expected[sent.data.record_id]
        assert emitted["id"] == str(uuid.uuid5(uuid.NAMESPACE_URL, f"{sent.id}/features"))
        assert emitted["causationid"] == sent.id
        assert emitted["correlationid"] == sent.correlationid
        assert emitted["data"]["source"]["topic"] == ns.topic("data.validated")
        assert message.key() == sent.data.entity.encode()
    first_message = by_record["r0"]
    traceparent = dict(first_message.headers())["traceparent"].decode()
    assert traceparent.split("-")[1] == trace_id, "the features carry the record's trace"

    [dead] = read_all(bootstrap, ns.topic("bus.dead-letter"), expected=1)
    assert dead.value() == b"not json"
    assert dict(dead.headers())["dlq.reason"] == b"invalid_json"

    for entity in entities:
        last = [e for e in events if e.data.entity == entity][-1]
        answer = wait_until(
            lambda e=entity, r=last.data.record_id: (
                (a := get(f"{service.url}/features/loans/{e}")).status_code == 200
                and a.json()["record_id"] == r
                and a
            ),
            what=f"the online store to hold the latest vector of {entity}",
        )
        assert answer.json()["features"] == expected[last.data.record_id]
    lookup = httpx.post(
        f"{service.url}/features/loans/batch", json={"entities": ["alice", "nobody", "bob"]}
    )
    assert lookup.status_code == 200
    assert [f["entity"] for f in lookup.json()["found"]] == ["alice", "bob"]
    assert lookup.json()["missing"] == ["nobody"]
    unknown = get(f"{service.url}/features/loans/nobody")
    assert unknown.status_code == 404
    assert "nobody" in unknown.json()["detail"]
    assert get(f"{service.url}/features/nope/alice").status_code == 404
    assert (
        httpx.post(f"{service.url}/features/loans/batch", json={"entities": []}).status_code == 422
    )
    assert service.stop() == 0, service.output()


def test_the_offline_store_holds_features_and_labels_as_parquet_named_by_their_offsets(
    namespace: Namespace, bootstrap: str
) -> None:
    ns = namespace
    ns.start()
    events = [record(ns, f"r{n}", f"e{n % 5}", minutes=n, loan=100.0 + n) for n in range(40)]
    publish(ns, ns.topic("data.validated"), events)
    publish(ns, ns.topic("data.labels"), [label(f"r{n}", n % 2, 60 + n) for n in range(12)])
    minio = minio_client(ns.settings)
    wait_until(
        lambda: offline_rows(minio, ns, "features") == 40, what="40 feature rows", timeout_s=90
    )
    wait_until(lambda: offline_rows(minio, ns, "labels") == 12, what="12 label rows", timeout_s=60)

    features = offline_frames(minio, ns, "features")
    pattern = re.compile(
        rf"^{ns.name}/features/dataset=loans/date=2024-05-01/part-(\d+)-(\d+)-(\d+)\.parquet$"
    )
    covered: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for key, frame in features.items():
        match = pattern.match(key)
        assert match, key
        partition, first, last = (int(g) for g in match.groups())
        assert len(frame) == last - first + 1, "one row per data.features message of the range"
        covered[partition].append((first, last))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("fs-wm")})
    for partition, ranges in covered.items():
        high = consumer.get_watermark_offsets(
            TopicPartition(ns.topic("data.features"), partition), 10
        )[1]
        offsets = [o for first, last in sorted(ranges) for o in range(first, last + 1)]
        assert offsets == list(range(high)), "files cover the partition once, in order"
    consumer.close()

    rows = pd.concat(features.values())
    feature_names = [f.name for f in LOANS.features] + [a.name for a in LOANS.aggregations]
    assert list(rows.columns) == [
        "record_id", "entity", "event_time", "spec_version", *feature_names, "label",
        "source_topic", "source_partition", "source_offset",
    ]  # fmt: skip
    assert set(rows["record_id"]) == {f"r{n}" for n in range(40)}
    assert set(rows["source_topic"]) == {ns.topic("data.validated")}
    assert rows["event_time"].dt.tz is not None
    labels = pd.concat(offline_frames(minio, ns, "labels").values())
    assert list(labels.columns) == [
        "record_id", "entity", "label", "labelled_at", "source_topic", "source_partition",
        "source_offset",
    ]  # fmt: skip
    assert labels.set_index("record_id")["label"].to_dict() == {f"r{n}": n % 2 for n in range(12)}
    assert set(labels["source_topic"]) == {ns.topic("data.labels")}


def test_copies_at_the_end_of_a_partition_leave_the_offline_coverage_at_its_end(
    namespace: Namespace, bootstrap: str
) -> None:
    """Validation may publish a record again after a crash: the store skips the copy (no
    vector), and a training waiting for data.validated's end must not wait for a vector that
    never comes."""
    ns = namespace
    service = ns.start()
    events = [record(ns, f"r{n}", f"e{n % 3}", minutes=n, loan=100.0 + n) for n in range(12)]
    publish(ns, ns.topic("data.validated"), events)
    publish(ns, ns.topic("data.validated"), events[-3:])  # the same events, each a copy
    validated = HighWatermarks({"bootstrap.servers": bootstrap}, unique_name("fs-ends"))
    try:
        ends = validated.of_topic(ns.topic("data.validated"))
    finally:
        validated.close()
    assert sum(ends.values()) == 15

    def coverage() -> dict[tuple[str, int], int]:
        answer = get(f"{service.url}/training-sets/coverage").json()["coverage"]
        return {(c["topic"], c["partition"]): c["offset"] for c in answer}

    wait_until(
        lambda: all(coverage().get(position, 0) >= end for position, end in ends.items()),
        what=f"the offline coverage at data.validated's ends {ends}",
        timeout_s=90,
    )
    assert len(features_of_topic(bootstrap, ns.topic("data.features"))) == 12, "copies skipped"


def features_of_topic(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return read_features_until(bootstrap, topic, {f"r{n}" for n in range(12)}, timeout_s=30)


def test_a_training_set_over_real_data_is_point_in_time_correct_and_reports_its_offsets(
    namespace: Namespace, bootstrap: str
) -> None:
    ns = namespace
    service = ns.start()
    trap = [
        record(ns, "trap-1", "trap", minutes=0, loan=100.0),
        record(ns, "trap-2", "trap", minutes=30, loan=999.0),  # after trap-1, before its label
        record(ns, "trap-3", "trap", minutes=90, loan=555.0),
    ]
    others = [record(ns, f"o{n}", f"other{n % 3}", minutes=5 * n, loan=10.0 * n) for n in range(9)]
    publish(ns, ns.topic("data.validated"), trap + others)
    labels = [label("trap-1", 1, 60), label("trap-3", 0, 100)]
    labels += [label(f"o{n}", n % 2, 50) for n in range(0, 9, 2)]
    publish(ns, ns.topic("data.labels"), labels)
    minio = minio_client(ns.settings)
    wait_until(
        lambda: offline_rows(minio, ns, "features") == 12, what="12 feature rows", timeout_s=90
    )
    wait_until(lambda: offline_rows(minio, ns, "labels") == 7, what="7 label rows", timeout_s=60)

    answer = httpx.post(f"{service.url}/training-sets", json={"dataset": "loans"}, timeout=60)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["uri"] == f"s3://{BUCKET}/{body['location']['key']}"
    assert body["location"]["key"].startswith(f"{ns.name}/training-sets/loans/")
    stored = pd.read_parquet(io.BytesIO(minio.get_object(BUCKET, body["location"]["key"]).read()))
    assert body["rows"] == len(stored) == 7
    assert body["columns"] == list(stored.columns)
    rows = stored.set_index("record_id")
    assert rows.loc["trap-1", "loan"] == 100.0, "the value of the record, not the later 999"
    assert rows.loc["trap-1", "loan_sum_1h"] == 100.0
    assert rows.loc["trap-1", "applications_1h"] == 1
    assert rows.loc["trap-1", "label"] == 1
    assert rows.loc["trap-3", "loan"] == 555.0
    assert rows.loc["trap-3", "applications_1h"] == 1, "a new hour window"
    assert rows.loc["trap-3", "loan_mean_1d"] == pytest.approx((100 + 999 + 555) / 3)
    assert "trap-2" not in rows.index, "unlabelled"

    features = {e["data"]["record_id"]: e["data"]["source"] for e in features_of(
        read_all(bootstrap, ns.topic("data.features"), expected=12))}  # fmt: skip
    label_offsets = {
        json.loads(m.value())["data"]["record_id"]: (m.partition(), m.offset())
        for m in read_all(bootstrap, ns.topic("data.labels"), expected=7)
    }
    used = [features[r] for r in rows.index]
    expected_ranges = []
    for partition in sorted({s["partition"] for s in used}):
        offsets = [s["offset"] for s in used if s["partition"] == partition]
        expected_ranges.append(
            {"topic": ns.topic("data.validated"), "partition": partition,
             "first_offset": min(offsets), "last_offset": max(offsets), "rows": len(offsets)}
        )  # fmt: skip
    assert body["lineage"]["features"] == expected_ranges
    label_ranges = []
    for partition in sorted({p for p, _ in label_offsets.values()}):
        offsets = [o for p, o in label_offsets.values() if p == partition]
        label_ranges.append(
            {"topic": ns.topic("data.labels"), "partition": partition,
             "first_offset": min(offsets), "last_offset": max(offsets), "rows": len(offsets)}
        )  # fmt: skip
    assert body["lineage"]["labels"] == label_ranges
    assert {(r["topic"], r["partition"]) for r in body["lineage"]["offsets"]} == {
        (r["topic"], r["partition"]) for r in expected_ranges + label_ranges
    }

    until = (T0 + timedelta(minutes=65)).isoformat()
    pinned = httpx.post(
        f"{service.url}/training-sets", json={"dataset": "loans", "until": until}, timeout=60
    )
    assert pinned.status_code == 201, pinned.text
    pinned_set = pd.read_parquet(
        io.BytesIO(minio.get_object(BUCKET, pinned.json()["location"]["key"]).read())
    )
    assert "trap-3" not in set(pinned_set["record_id"]), "its label came after `until`"
    assert set(pinned_set["record_id"]) >= {"trap-1"}
    again = httpx.post(f"{service.url}/training-sets", json={"dataset": "loans"}, timeout=60)
    assert again.json()["id"] == body["id"], "the same data, the same set"
    missing = httpx.post(f"{service.url}/training-sets", json={"dataset": "nope"}, timeout=60)
    assert missing.status_code == 404


def test_labels_that_arrive_with_their_records_make_a_training_set_too(
    namespace: Namespace, settings: PlatformSettings
) -> None:
    ns = namespace
    registry = SpecRegistry(client_config(settings, "fs-test"), ns.topic("data.specs"), "test")
    spec = registry.register(CANCER, ns.producer)
    exams = list(breast_cancer_records(12, seed=5, start=T0))
    events = []
    for offset, (row, diagnosis) in enumerate(exams):
        payload = RecordValidated(
            dataset="breast_cancer",
            spec_version=spec.version,
            record_id=row["sample_id"],
            entity=row["patient_id"],
            event_time=datetime.fromisoformat(row["examined_at"]),
            values={f.name: row[f.name] for f in CANCER.features},
            label=diagnosis,
            source=SourcePosition(topic=ns.topic("data.raw"), partition=0, offset=offset),
        )
        events.append(Event.create(payload, source="test", subject=row["patient_id"]))
    service = ns.start()
    publish(ns, ns.topic("data.validated"), events)

    def answered() -> httpx.Response | None:
        answer = httpx.post(
            f"{service.url}/training-sets", json={"dataset": "breast_cancer"}, timeout=60
        )
        return answer if answer.status_code == 201 and answer.json()["rows"] == 12 else None

    body = wait_until(answered, what="a training set of the 12 exams", timeout_s=90).json()
    minio = minio_client(settings)
    stored = pd.read_parquet(io.BytesIO(minio.get_object(BUCKET, body["location"]["key"]).read()))
    assert stored.set_index("record_id")["label"].to_dict() == {
        row["sample_id"]: diagnosis for row, diagnosis in exams
    }
    assert (stored["labelled_at"] == stored["event_time"]).all()
    assert {r["topic"] for r in body["lineage"]["offsets"]} == {ns.topic("data.validated")}


@pytest.mark.slow
def test_sigkill_mid_stream_and_restart_recover_the_windowed_aggregates_from_the_changelog(
    namespace: Namespace, bootstrap: str, admin: AdminClient
) -> None:
    ns = namespace
    total, entities = 3000, 30
    events = [
        record(ns, f"r{n}", f"e{n % entities}", minutes=n * 0.7, loan=float(1 + n % 97))
        for n in range(total)
    ]
    publish(ns, ns.topic("data.validated"), events)
    validated, features_topic = ns.topic("data.validated"), ns.topic("data.features")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("fs-wm")})

    def published() -> int:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(features_topic, p), 10)[1]
            for p in range(3)
        )

    first = ns.start(batch_max_records="10", commit_interval_s="0.5")
    wait_until(
        lambda: (
            committed_total(bootstrap, app_id(ns.name), validated, 3) > 0
            and published() >= total // 5
        ),
        what="a fifth of the features, and committed offsets",
        timeout_s=120,
        interval_s=0.05,
    )
    first.kill()
    at_kill = published()
    consumer.close()
    assert at_kill < total, "the worker must be killed mid-stream"
    committed = committed_total(bootstrap, app_id(ns.name), validated, 3)

    second = ns.start(batch_max_records="10", commit_interval_s="0.5")
    emitted = read_features_until(bootstrap, features_topic, {f"r{n}" for n in range(total)})
    expected = expected_features(events)
    for event in emitted:
        assert event["data"]["features"] == expected[event["data"]["record_id"]], (
            "a replayed or resumed record's vector differs from an uninterrupted run"
        )
    assert_online_store_holds_last_vectors(second, events, expected, entities)
    # The restart read only what came after the committed offsets (faust may hand a message
    # over twice around its recovery: a replay either way): each record there was computed
    # once or recognised as already counted. Those before were never read again, so their
    # contributions to the (matching) aggregates came from the changelog.
    counts = metric_values(get(f"{second.url}/metrics").text)
    computed = counts["mlops_feature_store_features_computed_total"]
    replayed = counts["mlops_feature_store_records_replayed_total"]
    assert 0 < committed < total
    assert computed <= total - committed <= computed + replayed, (computed, replayed, committed)


@pytest.mark.slow
def test_two_workers_share_the_partitions_and_one_killed_changes_no_vector(
    namespace: Namespace, bootstrap: str, admin: AdminClient
) -> None:
    """Two faust workers in one group, as `MLOPS_REPLICAS="feature_store=2"` runs them: each
    computes the entities of its partitions; when one is killed, the other takes its
    partitions and their entity state from the changelog, and every vector is the one an
    uninterrupted single worker computes."""
    ns = namespace
    total, entities = 2400, 30
    events = [
        record(ns, f"r{n}", f"e{n % entities}", minutes=n * 0.7, loan=float(1 + n % 97))
        for n in range(total)
    ]
    validated, features_topic = ns.topic("data.validated"), ns.topic("data.features")
    tuning = {"batch_max_records": "10", "commit_interval_s": "0.5", "stall_timeout_s": "20"}
    first = ns.start(instance="feature_store-1", **tuning)
    second = ns.start(instance="feature_store-2", **tuning)
    survivors = [second]

    def supervise() -> None:
        """Restarts a worker whose stall watch ended it, as its supervisor does."""
        if survivors[-1].process.poll() == CRASH_EXIT_CODE:
            survivors.append(ns.start(instance="feature_store-2", **tuning))

    wait_until(
        lambda: stable_members(admin, app_id(ns.name)) == 2,
        what="both workers in the group",
        timeout_s=90,
    )
    publish(ns, validated, events[: total // 2])

    def computed(service: RunningService) -> float:
        return metric_values(get(f"{service.url}/metrics").text).get(
            "mlops_feature_store_features_computed_total", 0.0
        )

    wait_until(
        lambda: computed(first) > 0 and computed(second) > 0,
        what="both workers to compute features (partitions shared)",
        timeout_s=120,
    )
    first.kill()
    publish(ns, validated, events[total // 2 :])
    try:
        emitted = read_features_until(
            bootstrap, features_topic, {f"r{n}" for n in range(total)}, meanwhile=supervise
        )
    except AssertionError as missing:
        counts = metric_values(get(f"{survivors[-1].url}/metrics").text)
        survivor = {k: v for k, v in counts.items() if k.startswith("mlops_feature_store_")}
        committed = committed_total(bootstrap, app_id(ns.name), validated, 3)
        raise AssertionError(
            f"{missing}; the surviving worker ({len(survivors) - 1} restart(s)): {survivor}, "
            f"ready: {get(f'{survivors[-1].url}/ready').text}; committed {committed} of {total}"
        ) from None
    expected = expected_features(events)
    for event in emitted:
        assert event["data"]["features"] == expected[event["data"]["record_id"]], (
            "a vector differs from an uninterrupted single worker's"
        )
    assert_online_store_holds_last_vectors(survivors[-1], events, expected, entities)


def assert_online_store_holds_last_vectors(
    service: RunningService,
    events: list[Event[RecordValidated]],
    expected: dict[str, dict[str, Any]],
    entities: int,
) -> None:
    for n in range(entities):
        last = [e for e in events if e.data.entity == f"e{n}"][-1].data
        answer = wait_until(
            lambda e=f"e{n}", r=last.record_id: (
                (a := get(f"{service.url}/features/loans/{e}")).json().get("record_id") == r and a
            ),
            what=f"the online store to hold the last vector of e{n}",
        )
        assert answer.json()["features"] == expected[last.record_id]
