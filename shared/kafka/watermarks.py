"""High watermarks (end offsets) of topic partitions, read without joining a group.

One kept consumer that never subscribes reads them. After brokers restarted, such a client's
metadata said "unknown partition" for minutes (the broker fault scenario), so a client that
failed is replaced before the next read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from shared.kafka.committed import Position


class HighWatermarks:
    def __init__(self, config: dict[str, Any], group: str, timeout_s: float = 10.0) -> None:
        """`group`: a group id the consumer carries (it never joins it)."""
        self._config = {**config, "group.id": group, "enable.auto.commit": False}
        self._timeout_s = timeout_s
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()  # a librdkafka handle is not shared between threads

    def of_topic(self, topic: str) -> dict[Position, int]:
        """The end offset of each of the topic's partitions (KafkaException when Kafka does
        not answer within the timeout, LookupError when the topic does not exist)."""
        with self._lock:
            metadata = self._read(lambda c: c.list_topics(topic, timeout=self._timeout_s))
            found = metadata.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                raise LookupError(f"topic {topic} does not exist")
            bounds = self._bounds((topic, p) for p in sorted(found.partitions))
            return {position: high for position, (_, high) in bounds.items()}

    def of(self, partitions: Iterable[Position]) -> dict[Position, int]:
        return {position: high for position, (_, high) in self.bounds(partitions).items()}

    def bounds(self, partitions: Iterable[Position]) -> dict[Position, tuple[int, int]]:
        """(low, high) watermarks: the first offset kept and the next one to be written."""
        with self._lock:
            return self._bounds(partitions)

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    def _bounds(self, partitions: Iterable[Position]) -> dict[Position, tuple[int, int]]:
        bounds = {}
        for topic, partition in partitions:
            asked = TopicPartition(topic, partition)
            low, high = self._read(
                lambda c, a=asked: c.get_watermark_offsets(a, timeout=self._timeout_s)
            )
            bounds[(topic, partition)] = (low, high)
        return bounds

    def _read(self, ask: Callable[[Consumer], Any]) -> Any:
        if self._consumer is None:
            self._consumer = Consumer(self._config)
        try:
            return ask(self._consumer)
        except KafkaException:
            self._consumer.close()
            self._consumer = None
            raise
