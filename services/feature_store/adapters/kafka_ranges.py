"""Reading exact offset ranges of topic partitions from Kafka: assign, seek to the first
offset, read to the last. No consumer group membership, no commits."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from shared.events.models import OffsetRange


class RangesGone(LookupError):
    """A range is no longer (or not yet) stored: retention deleted it, or it never existed."""


class KafkaUnavailable(ConnectionError):
    """Kafka did not answer, or stopped delivering a range that it holds."""


def range_reader_config(base: dict[str, Any]) -> dict[str, Any]:
    """A reader of explicit offsets: no group membership, no commits, large fetches."""
    return {
        **base,
        "group.id": f"rebuild-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        # An offset no longer stored is an error, never a silent jump to the end.
        "auto.offset.reset": "error",
        "fetch.max.bytes": 52_428_800,
        "max.partition.fetch.bytes": 8_388_608,
    }


class RangeReader:
    """Reads offset ranges of topic partitions."""

    def __init__(self, config: dict[str, Any], timeout_s: float = 30.0) -> None:
        self._config = config
        self._timeout_s = timeout_s

    def bounds(self, topic: str) -> dict[int, tuple[int, int]]:
        """Each partition's (first stored offset, next offset) of `topic`."""
        consumer = Consumer(range_reader_config(self._config))
        try:
            metadata = consumer.list_topics(topic, timeout=self._timeout_s)
            found = metadata.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                raise RangesGone(f"topic {topic!r} does not exist")
            return {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=self._timeout_s)
                for p in sorted(found.partitions)
            }
        except KafkaException as error:
            raise KafkaUnavailable(f"Kafka: {error.args[0]}") from None
        finally:
            consumer.close()

    def check(self, ranges: list[OffsetRange]) -> None:
        """Every range must still be stored: retention must keep what a model needs."""
        for topic in sorted({r.topic for r in ranges}):
            bounds = self.bounds(topic)
            for r in (r for r in ranges if r.topic == topic):
                low, high = bounds.get(r.partition, (0, 0))
                if r.first_offset > r.last_offset or r.first_offset < low or r.last_offset >= high:
                    held = f"offsets {low}..{high - 1}" if high > low else "no offset"
                    raise RangesGone(
                        f"{topic} [{r.partition}] holds {held}; the lineage needs "
                        f"{r.first_offset}..{r.last_offset} (deleted by retention, or never "
                        "written)"
                    )

    def whole(self, topic: str) -> list[OffsetRange]:
        """Every stored message of `topic`, as ranges."""
        return [
            OffsetRange(topic=topic, partition=p, first_offset=low, last_offset=high - 1)
            for p, (low, high) in self.bounds(topic).items()
            if high > low
        ]

    def read(self, ranges: list[OffsetRange]) -> Iterator[Message]:
        """Every message of the ranges, in offset order per partition."""
        pending = {(r.topic, r.partition): r.last_offset for r in ranges}
        if not pending:
            return
        consumer = Consumer(range_reader_config(self._config))
        try:
            consumer.assign([TopicPartition(r.topic, r.partition, r.first_offset) for r in ranges])
            yield from self._drain(consumer, pending)
        except KafkaException as error:
            raise KafkaUnavailable(f"Kafka: {error.args[0]}") from None
        finally:
            consumer.close()

    def _drain(self, consumer: Consumer, pending: dict[tuple[str, int], int]) -> Iterator[Message]:
        idle_since = time.monotonic()
        while pending:
            # consume() waits for the whole batch or the timeout: keep the wait short.
            batch = consumer.consume(1000, 0.2)
            if not batch:
                if time.monotonic() - idle_since > self._timeout_s:
                    left = ", ".join(f"{t}[{p}]" for t, p in sorted(pending))
                    raise KafkaUnavailable(
                        f"no message within {self._timeout_s:.0f}s reading {left}"
                    )
                continue
            idle_since = time.monotonic()
            for message in batch:
                key = (str(message.topic()), int(message.partition() or 0))
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.pop(key, None)  # the end: nothing more of the range is stored
                        continue
                    if error.code() == KafkaError.OFFSET_OUT_OF_RANGE:
                        raise RangesGone(f"{key[0]} [{key[1]}]: {error.str()}")
                    raise KafkaUnavailable(f"{key[0]}: {error.str()}")
                last = pending.get(key)
                offset = int(message.offset() or 0)
                if last is None or offset > last:
                    continue
                yield message
                if offset >= last:
                    del pending[key]
                    consumer.pause([TopicPartition(*key)])
