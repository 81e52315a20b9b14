"""Reads a range of one monitoring.inputs partition again, outside the consumer group (no
membership, no commit): the inputs between a restored checkpoint and the committed offset."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from shared.events.codec import UndecodableMessage
from shared.events.envelope import Event
from shared.failures import TransientError
from shared.kafka.consumer import Decoder, MessageInfo

log = logging.getLogger(__name__)


class PartitionReader:
    def __init__(
        self, config: dict[str, Any], topic: str, decoder: Decoder, timeout_s: float = 30.0
    ) -> None:
        """`timeout_s`: how long the range may go without a message before the read fails
        (TransientError: the consumer waits and the restore is tried again)."""
        self._config = {
            **config,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
        }
        self._topic = topic
        self._decoder = decoder
        self._timeout_s = timeout_s

    def read(
        self, partition: int, start: int, end: int
    ) -> Iterator[tuple[Event[Any], MessageInfo]]:
        """The decodable inputs of [start, end), in order (the others were dead-lettered)."""
        consumer = Consumer(self._config)
        try:
            consumer.assign([TopicPartition(self._topic, partition, start)])
            position, waited_since = start, time.monotonic()
            while position < end:
                if time.monotonic() - waited_since > self._timeout_s:
                    raise TransientError(
                        f"{self._topic}[{partition}] not readable from {position} to {end}"
                    )
                for message in consumer.consume(500, 0.5):
                    if message.error() is not None or position >= end:
                        continue
                    waited_since = time.monotonic()
                    position = message.offset() + 1
                    if message.offset() < end and (item := self._decode(message)) is not None:
                        yield item
        finally:
            consumer.close()

    def _decode(self, message: Any) -> tuple[Event[Any], MessageInfo] | None:
        info = MessageInfo(
            topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
            key=message.key(),
            timestamp_ms=message.timestamp()[1],
        )
        try:
            return self._decoder.decode(message.value(), info), info
        except UndecodableMessage:
            return None
