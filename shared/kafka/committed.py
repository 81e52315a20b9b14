"""A consumer group's committed offsets, read without the AdminClient.

Each group is read by a consumer that carries the group's id but never subscribes, so it never
joins the group nor commits. librdkafka's admin OffsetFetch dereferences a null consumer group
when the group's coordinator moves (NOT_COORDINATOR, as when a broker dies), which kills the
process: a segfault the broker fault scenario found in the training service.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

Position = tuple[str, int]


class CommittedOffsets:
    """Committed offsets of any number of groups, one non-joining consumer per group (kept,
    closed with `close` or when `forget` drops groups no longer read)."""

    def __init__(self, config: dict[str, Any], timeout_s: float = 10.0) -> None:
        self._config = {k: v for k, v in config.items() if k != "group.id"}
        self._timeout_s = timeout_s
        self._readers: dict[str, Consumer] = {}
        self._lock = threading.Lock()  # a librdkafka handle is not shared between threads

    def of(self, group: str, partitions: Iterable[Position]) -> dict[Position, int]:
        """The group's committed offset of each partition it has committed (KafkaException
        when Kafka does not answer within the timeout)."""
        asked = [TopicPartition(topic, partition) for topic, partition in partitions]
        if not asked:
            return {}
        with self._lock:
            answer = self._reader(group).committed(asked, timeout=self._timeout_s)
        return {(tp.topic, tp.partition): tp.offset for tp in answer if tp.offset >= 0}

    def forget(self, keep: Iterable[str]) -> None:
        """Closes the readers of groups not in `keep`."""
        kept = set(keep)
        with self._lock:
            for group in [g for g in self._readers if g not in kept]:
                self._readers.pop(group).close()

    def close(self) -> None:
        self.forget(())

    def _reader(self, group: str) -> Consumer:
        reader = self._readers.get(group)
        if reader is None:
            reader = Consumer({**self._config, "group.id": group, "enable.auto.commit": False})
            self._readers[group] = reader
        return reader
