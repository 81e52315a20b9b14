"""Where data topics stood at a moment: per partition, the first offset whose message was
written at or after it (the high watermark when none was), read from Kafka's time index; and
how far validation's consumer group has handled the raw topic (its committed offsets, read
by shared.kafka.committed: never the AdminClient, whose OffsetFetch can crash the process)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from services.training.adapters.errors import DependencyUnavailable
from services.training.domain.waiting import Positions
from shared.kafka.committed import CommittedOffsets


@dataclass(frozen=True)
class Upstream:
    """The hop before the waited topics: validation's group reads `raw` and writes `validated`."""

    raw: str
    validated: str
    group_id: str


class KafkaPositions:
    """offsets_for_times over a consumer that never joins a group nor commits."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: list[str],
        upstream: Upstream | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._consumer = Consumer(
            {**config, "group.id": "training-positions", "enable.auto.commit": False}
        )
        self._committed = CommittedOffsets(config, timeout_s)
        self._topics = topics
        self._upstream = upstream
        self._timeout_s = timeout_s
        self._lock = threading.Lock()  # a librdkafka handle is shared by HTTP and the runner

    def at(self, moment: datetime) -> Positions:
        return self._at(self._topics, moment)

    def upstream_at(self, moment: datetime) -> Positions:
        return {} if self._upstream is None else self._at([self._upstream.raw], moment)

    def upstream_handled(self) -> Positions:
        if self._upstream is None:
            return {}
        upstream = self._upstream
        try:
            with self._lock:
                partitions = [(upstream.raw, p) for p in self._partitions(upstream.raw)]
            committed = self._committed.of(upstream.group_id, partitions)
        except KafkaException as error:
            raise DependencyUnavailable(f"offsets of group {upstream.group_id}: {error}") from None
        return {position: committed.get(position, 0) for position in partitions}

    def downstream_now(self) -> Positions:
        if self._upstream is None:
            return {}
        topic = self._upstream.validated
        try:
            with self._lock:
                return {
                    (topic, partition): int(
                        self._consumer.get_watermark_offsets(
                            TopicPartition(topic, partition), timeout=self._timeout_s
                        )[1]
                    )
                    for partition in self._partitions(topic)
                }
        except KafkaException as error:
            raise DependencyUnavailable(f"high watermarks of {topic}: {error}") from None

    def _at(self, topics: list[str], moment: datetime) -> Positions:
        millis = int(moment.timestamp() * 1000)
        try:
            with self._lock:
                asked = [
                    TopicPartition(topic, partition, millis)
                    for topic in topics
                    for partition in self._partitions(topic)
                ]
                found = self._consumer.offsets_for_times(asked, timeout=self._timeout_s)
                return {(p.topic, p.partition): self._offset(p) for p in found}
        except KafkaException as error:
            raise DependencyUnavailable(f"Kafka offsets at {moment.isoformat()}: {error}") from None

    def _partitions(self, topic: str) -> list[int]:
        metadata = self._consumer.list_topics(topic, timeout=self._timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise DependencyUnavailable(
                f"no metadata for topic {topic}: {metadata and metadata.error}"
            )
        return sorted(metadata.partitions)

    def _offset(self, position: TopicPartition) -> int:
        if position.error is not None:
            raise DependencyUnavailable(f"{position.topic}[{position.partition}]: {position.error}")
        if position.offset >= 0:
            return int(position.offset)
        _, high = self._consumer.get_watermark_offsets(
            TopicPartition(position.topic, position.partition), timeout=self._timeout_s
        )
        return int(high)

    def close(self) -> None:
        self._consumer.close()
        self._committed.close()
