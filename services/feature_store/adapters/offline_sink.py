"""The offline store's writers: a topic read in micro-batches, each written as Parquet files
in MinIO named by the offsets they hold, and committed only once written.

A partition's batch is written every `flush_rows` messages, when its oldest message has
waited `flush_s`, when the partition is revoked, and on shutdown. Before writing, the batch's
offset range is recorded as an intent (``<namespace>/_offline/<kind>/intent-<partition>.json``);
a writer that restarts before the commit re-reads from the committed offset and cuts its
first batch at the intent's last offset, so the replayed batch gets the same file names and
overwrites what was written, never duplicating it. After the files, the partition's coverage
(``coverage-<partition>.json``: how far its own topic and the topic its rows came from are
written) moves forward, so a training set can say whether it holds everything up to a time. Messages that are not events of the
expected type go to the dead-letter topic (confirmed before the commit).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from services.feature_store import metrics
from services.feature_store.adapters.kafka import retry_until_done
from services.feature_store.adapters.objects import ObjectStore
from services.feature_store.domain.offline import (
    FileBatch,
    Kind,
    OfflineRow,
    arrow_table,
    file_batches,
    object_key,
)
from services.feature_store.domain.training_sets import (
    batch_coverage,
    coverage_from_json,
    coverage_json,
    merge_coverage,
)
from shared.events.codec import EventDecoder, UndecodableMessage
from shared.events.envelope import Event
from shared.kafka.consumer import MessageInfo, dead_letter_headers
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.telemetry import TRACE_HEADERS

log = logging.getLogger(__name__)

# A commit refused because this consumer is no longer the partition's owner: its session
# expired (e.g. while the group coordinator's broker failed over) or a rebalance is under way.
NOT_THE_OWNER = {
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.FENCED_INSTANCE_ID,
    KafkaError._ASSIGNMENT_LOST,
}
RowsOf = Callable[[Event[Any], MessageInfo], list[OfflineRow]]
SchemaOf = Callable[[FileBatch], pa.Schema]


@dataclass
class _Buffer:
    started: float
    rows: list[OfflineRow] = field(default_factory=list)
    dead_letters: list[OutgoingMessage] = field(default_factory=list)
    first_offset: int = -1
    last_offset: int = -1
    messages: int = 0


@dataclass(frozen=True)
class SinkConfig:
    kind: Kind
    namespace: str
    topic: str
    group_id: str
    dead_letter_topic: str
    flush_rows: int
    flush_s: float
    max_backoff_s: float


def coverage_key(namespace: str, kind: Kind, partition: int) -> str:
    return f"{namespace}/_offline/{kind}/coverage-{partition}.json"


def coverage_prefix(namespace: str) -> str:
    return f"{namespace}/_offline/"


class OfflineSink:
    def __init__(
        self,
        config: SinkConfig,
        consumer_config: dict[str, Any],
        decoder: EventDecoder,
        rows_of: RowsOf,
        schema_of: SchemaOf,
        store: ObjectStore,
        producer: EventProducer,
    ) -> None:
        self.config = config
        self._consumer_config = {
            **consumer_config,
            "group.id": config.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        self._decoder = decoder
        self._rows_of = rows_of
        self._schema_of = schema_of
        self._store = store
        self._producer = producer
        self._buffers: dict[int, _Buffer] = {}
        self._targets: dict[int, int] = {}
        self._consumer: Consumer | None = None
        self._stop = threading.Event()

    def run(self, stop: threading.Event) -> None:
        """Reads and writes until `stop` is set, then writes what it holds and commits it."""
        self._stop = stop
        consumer = Consumer(self._consumer_config)
        self._consumer = consumer
        consumer.subscribe(
            [self.config.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        try:
            while not stop.is_set():
                for message in consumer.consume(500, 0.5):
                    self._add(message)
                self._flush_due()
            self._flush_all()
        finally:
            consumer.close()
            self._consumer = None

    def _add(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise RuntimeError(f"{self.config.topic}: {error.str()}")
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("%s: %s", self.config.topic, error.str())
            return
        partition, offset = message.partition(), message.offset()
        target = self._targets.get(partition)
        if target is not None and offset > target and partition in self._buffers:
            self._flush(partition)
        buffer = self._buffers.setdefault(partition, _Buffer(started=time.monotonic()))
        buffer.first_offset = offset if buffer.messages == 0 else buffer.first_offset
        buffer.last_offset = offset
        buffer.messages += 1
        info = MessageInfo(
            self.config.topic, partition, offset, message.key(), message.timestamp()[1]
        )
        try:
            buffer.rows.extend(self._rows_of(self._decoder.decode(message.value(), info), info))
        except UndecodableMessage as error:
            buffer.dead_letters.append(self._dead_letter(message, info, error))
        if self._full(partition, buffer):
            self._flush(partition)

    def _full(self, partition: int, buffer: _Buffer) -> bool:
        target = self._targets.get(partition)
        if target is not None:
            return buffer.last_offset >= target
        return buffer.messages >= self.config.flush_rows

    def _flush_due(self) -> None:
        now = time.monotonic()
        for partition, buffer in list(self._buffers.items()):
            if partition not in self._targets and now - buffer.started >= self.config.flush_s:
                self._flush(partition)

    def _flush_all(self) -> None:
        for partition in list(self._buffers):
            self._flush(partition)

    def _flush(self, partition: int) -> None:
        """Intent, files, dead letters, commit: each retried until it holds."""
        buffer = self._buffers.pop(partition, None)
        self._targets.pop(partition, None)
        if buffer is None or buffer.messages == 0:
            return
        first, last = buffer.first_offset, buffer.last_offset
        self._retry(lambda: self._store.put_json(self._intent_key(partition), {
            "topic": self.config.topic, "partition": partition, "first": first, "last": last,
        }), "recording the offline intent")  # fmt: skip
        for batch in file_batches(buffer.rows, partition):
            self._retry(lambda b=batch: self._write(b), "writing an offline file")
        self._retry(lambda: self._record_coverage(partition, buffer), "recording offline coverage")
        if buffer.dead_letters:
            self._retry(
                lambda: self._producer.publish_confirmed(buffer.dead_letters), "dead-lettering"
            )
        position = TopicPartition(self.config.topic, partition, last + 1)
        self._retry(lambda: self._commit(position), "committing offline offsets")

    def _write(self, batch: FileBatch) -> None:
        key = object_key(
            self.config.namespace, self.config.kind, batch.dataset, batch.day,
            batch.partition, batch.first_offset, batch.last_offset,
        )  # fmt: skip
        self._store.put_parquet(key, arrow_table(batch.rows, self._schema_of(batch)))
        metrics.OFFLINE_FILES.labels(self.config.kind).inc()
        metrics.OFFLINE_ROWS.labels(self.config.kind).inc(len(batch.rows))

    def _record_coverage(self, partition: int, buffer: _Buffer) -> None:
        """How far this partition's files reach, for training-set requests that wait for
        their data (coverage_key): its own offsets and those its rows were computed from."""
        key = coverage_key(self.config.namespace, self.config.kind, partition)
        written = batch_coverage(
            self.config.topic, partition, buffer.last_offset, [row.values for row in buffer.rows]
        )
        known = coverage_from_json(self._store.get_json(key))
        self._store.put_json(key, coverage_json(merge_coverage(known, written)))

    def _commit(self, position: TopicPartition) -> None:
        """Retrying a commit refused to a former owner never succeeds, and while it retries the
        consumer does not poll, so it never rejoins: the commit is left out instead. The
        batch's files are written; the partition's next owner (this consumer, once it rejoined)
        reads it again from the last commit and overwrites or adds files whose rows training
        sets deduplicate by source position."""
        if self._consumer is None:
            return
        try:
            self._consumer.commit(offsets=[position], asynchronous=False)
        except KafkaException as error:
            if error.args[0].code() not in NOT_THE_OWNER:
                raise
            log.warning(
                "%s[%d]: commit of offset %d left out, no longer the owner (%s); the next "
                "owner reads the batch again",
                position.topic, position.partition, position.offset, error.args[0].name(),
            )  # fmt: skip

    def _retry(self, action: Callable[[], Any], what: str) -> None:
        retry_until_done(action, what, self._stop, self.config.max_backoff_s)

    def _intent_key(self, partition: int) -> str:
        return f"{self.config.namespace}/_offline/{self.config.kind}/intent-{partition}.json"

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Cuts the first batch of each partition where an unfinished write had cut it."""
        committed = consumer.committed(partitions, timeout=30)
        for position in committed:
            intent = self._store.get_json(self._intent_key(position.partition))
            start = position.offset if position.offset != OFFSET_INVALID else 0
            if intent is not None and int(intent["last"]) >= start:
                self._targets[position.partition] = int(intent["last"])
                log.info(
                    "%s[%d]: replaying an unfinished batch, %d..%d",
                    self.config.topic, position.partition, start, intent["last"],
                )  # fmt: skip

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for position in partitions:
            self._flush(position.partition)

    def _dead_letter(
        self, message: Message, info: MessageInfo, error: Exception
    ) -> OutgoingMessage:
        log.warning("dead-lettering %s[%d]@%d: %s", info.topic, info.partition, info.offset, error)
        return OutgoingMessage(
            topic=self.config.dead_letter_topic,
            value=message.value() or b"",
            key=info.key,
            headers=[
                *(h for h in message.headers() or [] if h[0] not in TRACE_HEADERS),
                *dead_letter_headers(info, self.config.group_id, error),
            ],
        )
