"""Offline files: names from offsets, rows grouped by dataset and day, columns typed by spec;
and the writer cutting a replayed batch exactly where the unfinished one was cut."""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import urllib3
from confluent_kafka import OFFSET_INVALID, KafkaError, KafkaException, TopicPartition

from services.feature_store.adapters.kafka import Stopping, retry_until_done
from services.feature_store.adapters.offline_sink import OfflineSink, SinkConfig
from services.feature_store.domain.offline import (
    OfflineRow,
    arrow_table,
    feature_schema,
    file_batches,
    label_schema,
    object_key,
    parse_part_name,
)
from services.feature_store.handlers import offline_label_rows
from shared.datasets.spec import shipped_specs
from shared.events import Event, LabelRecorded
from shared.events.codec import EventDecoder

LOANS = next(spec for spec in shipped_specs() if spec.name == "loans")
T0 = datetime(2024, 5, 1, 23, 59, tzinfo=UTC)


def row(dataset: str, day: date, offset: int, **values: Any) -> OfflineRow:
    return OfflineRow(dataset, day, offset, {"record_id": f"r{offset}", **values})


def test_file_names_carry_partition_and_offsets_and_read_back() -> None:
    key = object_key("ns", "labels", "loans", date(2024, 5, 1), 1, 0, 41)
    assert key == "ns/labels/dataset=loans/date=2024-05-01/part-1-0-41.parquet"
    assert parse_part_name(key) == (1, 0, 41)
    assert parse_part_name("ns/_offline/features/intent-1.json") is None


def test_rows_of_one_partition_are_grouped_by_dataset_and_day_in_offset_order() -> None:
    day1, day2 = date(2024, 5, 1), date(2024, 5, 2)
    rows = [
        row("loans", day2, 7),
        row("loans", day1, 3),
        row("cancer", day1, 5),
        row("loans", day1, 9),
    ]
    batches = {(b.dataset, b.day): b for b in file_batches(rows, partition=2)}
    assert set(batches) == {("loans", day1), ("loans", day2), ("cancer", day1)}
    loans_day1 = batches[("loans", day1)]
    assert (loans_day1.partition, loans_day1.first_offset, loans_day1.last_offset) == (2, 3, 9)
    assert [r["record_id"] for r in loans_day1.rows] == ["r3", "r9"]


def test_feature_columns_are_typed_by_the_spec() -> None:
    schema = feature_schema([LOANS])
    assert schema.field("age").type == pa.int64()
    assert schema.field("salary").type == pa.float64()
    assert schema.field("car").type == pa.string()
    assert schema.field("applications_1h").type == pa.int64()
    assert schema.field("loan_mean_1d").type == pa.float64()
    assert schema.field("label").type == pa.int64()
    assert schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert schema.names[-3:] == ["source_topic", "source_partition", "source_offset"]
    assert label_schema(None).field("label").type == pa.null()


def test_a_column_the_spec_does_not_know_is_kept_and_a_misfit_value_falls_back_to_inference() -> (
    None
):
    schema = pa.schema([pa.field("age", pa.int64())])
    table = arrow_table([{"age": 3, "extra": "x"}], schema)
    assert table.schema.names == ["age", "extra"]
    assert table.schema.field("extra").type == pa.string()
    misfit = arrow_table([{"age": "forty"}], schema)
    assert misfit.column("age").to_pylist() == ["forty"]


@dataclass
class FakeMessage:
    partition_: int
    offset_: int
    value_: bytes

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return self.value_

    def timestamp(self) -> tuple[int, int]:
        return (1, 0)

    def headers(self) -> list[tuple[str, bytes]]:
        return [("traceparent", b"00-1-2-01"), ("ce_type", b"mlops.LabelRecorded")]


@dataclass
class FakeConsumer:
    committed_at: dict[int, int]
    commits: list[tuple[int, int]] = field(default_factory=list)
    refusal: KafkaError | None = None

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [
            TopicPartition(p.topic, p.partition, self.committed_at.get(p.partition, OFFSET_INVALID))
            for p in partitions
        ]

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        if self.refusal is not None:
            raise KafkaException(self.refusal)
        self.commits += [(p.partition, p.offset) for p in offsets]


@dataclass
class FakeStore:
    bucket: str = "b"
    objects: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def put_json(self, key: str, document: Any) -> None:
        self.objects[key] = json.loads(json.dumps(document))
        self.log.append(key)

    def get_json(self, key: str) -> Any:
        return self.objects.get(key)

    def put_parquet(self, key: str, table: pa.Table) -> None:
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        self.objects[key] = pq.read_table(io.BytesIO(buffer.getvalue())).to_pylist()
        self.log.append(key)


@dataclass
class FakeProducer:
    published: list[Any] = field(default_factory=list)

    def publish_confirmed(self, messages: list[Any]) -> int:
        self.published += messages
        return len(messages)


def labels_sink(store: FakeStore, producer: FakeProducer, flush_rows: int) -> OfflineSink:
    config = SinkConfig(
        kind="labels", namespace="ns", topic="ns.data.labels", group_id="g",
        dead_letter_topic="ns.bus.dead-letter", flush_rows=flush_rows, flush_s=3600,
        max_backoff_s=0.1,
    )  # fmt: skip
    return OfflineSink(
        config, {}, EventDecoder([LabelRecorded], 10_000), offline_label_rows,
        lambda batch: label_schema(LOANS), store, producer,  # type: ignore[arg-type]
    )  # fmt: skip


def label_message(partition: int, offset: int) -> FakeMessage:
    event = Event.create(
        LabelRecorded(
            dataset="loans", record_id=f"r{offset}", label=offset % 2,
            labelled_at=T0 + timedelta(minutes=offset % 3),
        ),
        source="test",
    )  # fmt: skip
    return FakeMessage(partition, offset, event.to_json_bytes())


def attach(sink: OfflineSink, consumer: FakeConsumer, partitions: list[int]) -> None:
    sink._consumer = consumer  # type: ignore[assignment]
    sink._stop = threading.Event()
    sink._on_assign(consumer, [TopicPartition("ns.data.labels", p) for p in partitions])  # type: ignore[arg-type]


def test_a_batch_is_written_per_day_then_committed_after_its_last_offset() -> None:
    store, producer, consumer = FakeStore(), FakeProducer(), FakeConsumer({})
    sink = labels_sink(store, producer, flush_rows=4)
    attach(sink, consumer, [0])
    for offset in range(4):
        sink._add(label_message(0, offset))  # type: ignore[arg-type]
    files = [key for key in store.log if key.endswith(".parquet")]
    assert files == [
        "ns/labels/dataset=loans/date=2024-05-01/part-0-0-3.parquet",
        "ns/labels/dataset=loans/date=2024-05-02/part-0-1-2.parquet",
    ]
    assert store.log[0] == "ns/_offline/labels/intent-0.json", "the intent comes first"
    assert consumer.commits == [(0, 4)]
    assert [r["record_id"] for r in store.objects[files[0]]] == ["r0", "r3"]


def test_a_replayed_batch_is_cut_where_the_unfinished_write_cut_it_and_overwrites_it() -> None:
    store, producer, consumer = FakeStore(), FakeProducer(), FakeConsumer({0: 10})
    store.put_json("ns/_offline/labels/intent-0.json", {"first": 10, "last": 15})
    sink = labels_sink(store, producer, flush_rows=4)
    attach(sink, consumer, [0])
    for offset in range(10, 21):
        sink._add(label_message(0, offset))  # type: ignore[arg-type]
    sink._flush_all()
    parts = [parse_part_name(key) for key in store.log if key.endswith(".parquet")]
    assert {(first, last) for _, first, last in parts[:2]} == {(10, 14), (12, 15)}, (
        "the first batch is 10..15 as before (its two days), not cut at 4 messages"
    )
    assert consumer.commits == [(0, 16), (0, 20), (0, 21)]


def test_each_written_batch_moves_its_partition_s_coverage_forward() -> None:
    store, producer, consumer = FakeStore(), FakeProducer(), FakeConsumer({})
    sink = labels_sink(store, producer, flush_rows=3)
    attach(sink, consumer, [0, 2])
    key = "ns/_offline/labels/coverage-0.json"
    for offset in range(3):
        sink._add(label_message(0, offset))  # type: ignore[arg-type]
    assert store.objects[key] == [{"topic": "ns.data.labels", "partition": 0, "offset": 3}]
    assert store.log.index(key) < len(store.log) and consumer.commits == [(0, 3)]
    sink._add(label_message(0, 3))  # type: ignore[arg-type]
    assert store.objects[key][0]["offset"] == 3, "not written yet, not covered"
    sink._flush_all()
    assert store.objects[key] == [{"topic": "ns.data.labels", "partition": 0, "offset": 4}]
    assert "ns/_offline/labels/coverage-2.json" not in store.objects


def test_a_stale_intent_is_ignored() -> None:
    store, producer, consumer = FakeStore(), FakeProducer(), FakeConsumer({0: 16})
    store.put_json("ns/_offline/labels/intent-0.json", {"first": 10, "last": 15})
    sink = labels_sink(store, producer, flush_rows=2)
    attach(sink, consumer, [0])
    for offset in (16, 17):
        sink._add(label_message(0, offset))  # type: ignore[arg-type]
    assert consumer.commits == [(0, 18)]


def test_a_message_that_is_not_a_label_is_dead_lettered_before_the_commit() -> None:
    store, producer, consumer = FakeStore(), FakeProducer(), FakeConsumer({})
    sink = labels_sink(store, producer, flush_rows=2)
    attach(sink, consumer, [1])
    sink._add(FakeMessage(1, 0, b"not json"))  # type: ignore[arg-type]
    sink._add(label_message(1, 1))  # type: ignore[arg-type]
    [dead] = producer.published
    assert dead.topic == "ns.bus.dead-letter"
    headers = dict(dead.headers)
    assert headers["dlq.reason"] == b"invalid_json"
    assert headers["dlq.original.offset"] == b"0"
    assert "traceparent" not in headers
    assert consumer.commits == [(1, 2)]


def test_an_unreachable_object_store_is_retried_and_a_bad_value_is_not() -> None:
    refused = urllib3.exceptions.MaxRetryError(
        urllib3.HTTPConnectionPool("127.0.0.1", 9), "/bucket", reason=ConnectionRefusedError()
    )
    attempts: list[int] = []

    def write() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise refused
        return "written"

    assert retry_until_done(write, "writing", threading.Event(), max_backoff_s=0.01) == "written"
    assert len(attempts) == 3

    def bad() -> None:
        raise ValueError("not a store failure")

    with pytest.raises(ValueError):
        retry_until_done(bad, "writing", threading.Event(), max_backoff_s=0.01)


def test_a_commit_refused_to_a_former_owner_is_left_out_not_retried_forever() -> None:
    """A broker failover expired the group session: the commit can never succeed, and retrying
    it would keep the consumer from polling, hence from ever rejoining."""
    store, producer = FakeStore(), FakeProducer()
    consumer = FakeConsumer({}, refusal=KafkaError(KafkaError.UNKNOWN_MEMBER_ID))
    sink = labels_sink(store, producer, flush_rows=2)
    attach(sink, consumer, [0])
    for offset in range(4):
        sink._add(label_message(0, offset))  # type: ignore[arg-type]
    assert len([key for key in store.log if key.endswith(".parquet")]) >= 2, "both batches written"
    assert consumer.commits == []

    consumer.refusal = KafkaError(KafkaError._TRANSPORT)
    sink._stop.set()
    sink._add(label_message(0, 4))  # type: ignore[arg-type]
    with pytest.raises(Stopping, match="committing offline offsets"):
        sink._add(label_message(0, 5))  # type: ignore[arg-type]
