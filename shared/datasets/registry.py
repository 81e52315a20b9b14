"""The dataset spec registry, materialized from the compacted data.specs topic.

Every service that needs specs keeps one `SpecRegistry`: it reads the topic from the start,
then catches up on demand (a lookup of an unknown name or version reads what is new).
Ingestion is the one writer: `register` gives a changed spec the next version number.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from shared.datasets.spec import DatasetSpec, VersionedSpec
from shared.events.codec import EventDecoder
from shared.events.envelope import Event
from shared.events.records import DatasetSpecRegistered
from shared.kafka.producer import EventProducer, OutgoingMessage


class UnknownDataset(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown dataset {name!r}; known: {', '.join(known) or 'none'}")
        self.name, self.known = name, known


class SpecRegistry:
    """Every registered version of every dataset spec, read from the specs topic."""

    def __init__(self, bootstrap_config: dict[str, Any], topic: str, source: str) -> None:
        self._topic = topic
        self._source = source
        self._config = {
            **bootstrap_config,
            "group.id": f"spec-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        self._decoder = EventDecoder([DatasetSpecRegistered], max_bytes=10_000_000)
        self._versions: dict[str, dict[int, VersionedSpec]] = {}
        self._positions: dict[int, int] = {}
        self._lock = threading.RLock()

    def refresh(self, timeout_s: float = 10.0) -> None:
        """Reads every spec event published since the last refresh."""
        with self._lock:
            consumer = Consumer(self._config)
            try:
                self._catch_up(consumer, timeout_s)
            finally:
                consumer.close()

    def _catch_up(self, consumer: Consumer, timeout_s: float) -> None:
        metadata = consumer.list_topics(self._topic, timeout=timeout_s)
        partitions = sorted(metadata.topics[self._topic].partitions)
        ends = {
            p: _end_offset(consumer, TopicPartition(self._topic, p), timeout_s) for p in partitions
        }
        pending = {p for p in partitions if self._positions.get(p, 0) < ends[p]}
        if not pending:
            return
        consumer.assign(
            [TopicPartition(self._topic, p, self._positions.get(p, 0)) for p in pending]
        )
        while pending:
            message = consumer.poll(timeout_s)
            if message is None:
                raise TimeoutError(f"spec registry: no message from {self._topic} in {timeout_s}s")
            if message.error() is not None:
                continue
            self._apply(self._decoder.decode(message.value()).data.registered)
            self._positions[message.partition()] = message.offset() + 1
            if self._positions[message.partition()] >= ends[message.partition()]:
                pending.discard(message.partition())

    def _apply(self, versioned: VersionedSpec) -> None:
        self._versions.setdefault(versioned.spec.name, {})[versioned.version] = versioned

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._versions)

    def latest(self, name: str) -> VersionedSpec:
        """The newest version of a dataset; raises UnknownDataset naming the known ones."""
        with self._lock:
            if name not in self._versions:
                self.refresh()
            versions = self._versions.get(name)
            if not versions:
                raise UnknownDataset(name, self.names())
            return versions[max(versions)]

    def get(self, name: str, version: int) -> VersionedSpec:
        with self._lock:
            if version not in self._versions.get(name, {}):
                self.refresh()
            try:
                return self._versions[name][version]
            except KeyError:
                if name not in self._versions:
                    raise UnknownDataset(name, self.names()) from None
                raise LookupError(f"dataset {name!r} has no version {version}") from None

    def register(self, spec: DatasetSpec, producer: EventProducer) -> VersionedSpec:
        """The spec's registered version: an existing one with the same content, or the next."""
        with self._lock:
            self.refresh()
            fingerprint = spec.fingerprint()
            versions = self._versions.get(spec.name, {})
            for existing in versions.values():
                if existing.fingerprint == fingerprint:
                    return existing
            versioned = VersionedSpec(
                version=max(versions, default=0) + 1, fingerprint=fingerprint, spec=spec
            )
            event = Event.create(
                DatasetSpecRegistered(registered=versioned),
                source=self._source,
                subject=f"{spec.name}:{versioned.version}",
            )
            producer.publish_confirmed([OutgoingMessage.for_event(self._topic, event)])
            self._apply(versioned)
            return versioned


_ELECTING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}


class SpecRegistries:
    """The spec registry of any namespace (its `<namespace>.data.specs`), for work on data
    of another namespace than the service's own (a version trained on a replay): made when
    first asked, refreshed each time it is handed out. At most `max_other` namespaces besides
    the `known` ones are kept (the least recently asked goes first)."""

    def __init__(
        self,
        config_for: Callable[[str], dict[str, Any]],
        source: str,
        known: dict[str, SpecRegistry] | None = None,
        max_other: int = 16,
    ) -> None:
        """`config_for(namespace)`: the Kafka client config of that namespace's reader."""
        self._config_for = config_for
        self._source = source
        self._known = dict(known or {})
        self._others: dict[str, SpecRegistry] = {}
        self._max_other = max_other
        self._lock = threading.Lock()

    def __call__(self, namespace: str) -> SpecRegistry:
        with self._lock:
            registry = self._known.get(namespace) or self._others.pop(namespace, None)
            if registry is None:
                registry = SpecRegistry(
                    self._config_for(namespace), f"{namespace}.data.specs", self._source
                )
            if namespace not in self._known:
                self._others[namespace] = registry  # the most recently asked last
                while len(self._others) > self._max_other:
                    self._others.pop(next(iter(self._others)))
        registry.refresh()
        return registry


def _end_offset(consumer: Consumer, partition: TopicPartition, timeout_s: float) -> int:
    """The partition's end offset, waiting out a new topic's leader election."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return consumer.get_watermark_offsets(partition, timeout_s)[1]
        except KafkaException as error:
            kafka_error = error.args[0] if error.args else None
            electing = kafka_error is not None and (
                kafka_error.code() in _ELECTING or kafka_error.retriable()
            )
            if not electing or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
