"""The platform's producer: idempotent, acks=all, and no write is ever silently dropped."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from shared.events.envelope import Event
from shared.metrics import DELIVERY_FAILURES, MESSAGES_PUBLISHED
from shared.telemetry import KafkaHeaders, inject_trace_headers

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)


class DeliveryError(Exception):
    """The broker did not confirm one or more writes."""


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to write: an event, or raw bytes (dead letters, replays)."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: KafkaHeaders = field(default_factory=list)

    @classmethod
    def for_event(
        cls,
        topic: str,
        event: Event[Any],
        key: str | None = None,
        headers: KafkaHeaders | None = None,
    ) -> OutgoingMessage:
        routing_key = key if key is not None else event.subject
        return cls(
            topic=topic,
            value=event.to_json_bytes(),
            key=routing_key.encode() if routing_key is not None else None,
            headers=[
                ("ce_type", event.type.encode()),
                ("ce_id", event.id.encode()),
                *(headers or []),
            ],
        )


def _count_delivery(error: KafkaError | None, message: Message) -> None:
    topic = message.topic() or "?"
    if error is None:
        MESSAGES_PUBLISHED.labels(topic).inc()
    else:
        DELIVERY_FAILURES.labels(topic).inc()


class _Pending:
    """Counts the confirmations one caller is waiting for."""

    def __init__(self, expected: int) -> None:
        self.remaining = expected
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def on_delivery(self, error: KafkaError | None, message: Message) -> None:
        _count_delivery(error, message)
        with self.lock:
            self.remaining -= 1
            if error is not None:
                self.errors.append(f"{message.topic()}: {error.str()}")


class EventProducer:
    """Wraps confluent_kafka.Producer; every write is either confirmed or raised."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer(config)
        self._unconfirmed_errors: list[str] = []
        self._errors_lock = threading.Lock()

    def publish(self, messages: Iterable[OutgoingMessage]) -> int:
        """Queues messages without waiting; a later `flush()` raises if any was not confirmed."""
        count = 0
        for message in messages:
            self._produce(message, self._record_background_delivery)
            count += 1
        self._producer.poll(0)
        return count

    def publish_confirmed(self, messages: Iterable[OutgoingMessage], timeout: float = 30.0) -> int:
        """Writes messages and returns only once the broker confirmed every one of them."""
        batch = list(messages)
        pending = _Pending(len(batch))
        for message in batch:
            self._produce(message, pending.on_delivery)
        deadline = time.monotonic() + timeout
        while pending.remaining > 0 and time.monotonic() < deadline:
            self._producer.poll(0.05)
        if pending.errors:
            raise DeliveryError("; ".join(pending.errors[:5]))
        if pending.remaining > 0:
            raise DeliveryError(
                f"{pending.remaining} of {len(batch)} writes unconfirmed after {timeout}s"
            )
        return len(batch)

    def flush(self, timeout: float = 30.0) -> None:
        """Waits for every queued write; raises DeliveryError for any failure since last flush."""
        left = self._producer.flush(timeout)
        with self._errors_lock:
            errors, self._unconfirmed_errors = self._unconfirmed_errors, []
        if errors:
            raise DeliveryError("; ".join(errors[:5]) + f" ({len(errors)} failed)")
        if left:
            raise DeliveryError(f"{left} writes unconfirmed after {timeout}s")

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)

    def _produce(self, message: OutgoingMessage, on_delivery: Any) -> None:
        headers = list(message.headers)
        with _tracer.start_as_current_span(
            f"{message.topic} publish",
            kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "kafka", "messaging.destination.name": message.topic},
        ):
            inject_trace_headers(headers)
            while True:
                try:
                    self._producer.produce(
                        message.topic,
                        value=message.value,
                        key=message.key,
                        headers=headers,
                        on_delivery=on_delivery,
                    )
                    return
                except BufferError:
                    self._producer.poll(0.05)

    def _record_background_delivery(self, error: KafkaError | None, message: Message) -> None:
        _count_delivery(error, message)
        if error is None:
            return
        topic = message.topic() or "?"
        log.error("delivery to %s failed: %s", topic, error.str())
        with self._errors_lock:
            self._unconfirmed_errors.append(f"{topic}: {error.str()}")
