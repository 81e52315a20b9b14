"""The platform's producer: idempotent, acks=all, and no write is ever silently dropped."""

from __future__ import annotations

import functools
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, set_span_in_context

from shared.events.envelope import Event
from shared.failures import Failure, classify_kafka_error
from shared.metrics import DELIVERY_FAILURES, MESSAGES_PUBLISHED
from shared.telemetry import KafkaHeaders, inject_trace_headers

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """One write the broker refused: where it went, why, and its value (to find its origin)."""

    topic: str
    error: KafkaError
    value: bytes | None


class DeliveryError(Exception):
    """The broker did not confirm one or more writes."""

    def __init__(
        self, message: str, failures: list[DeliveryFailure] | None = None, unconfirmed: int = 0
    ) -> None:
        super().__init__(message)
        self.failures = failures or []
        self.unconfirmed = unconfirmed

    @property
    def kind(self) -> Failure:
        """Deterministic only when every write was refused for a reason no retry fixes."""
        kinds = {classify_kafka_error(failure.error) for failure in self.failures}
        if self.unconfirmed or not kinds or kinds - {Failure.DETERMINISTIC}:
            return Failure.TRANSIENT
        return Failure.DETERMINISTIC


Refused = Callable[["OutgoingMessage", KafkaException], None]
"""Told about a write librdkafka refused at once (e.g. too large), instead of raising."""


@functools.cache
def _encoded(text: str) -> bytes:
    return text.encode()


@dataclass(slots=True)
class OutgoingMessage:
    """One message to write: an event, or raw bytes (dead letters, replays).

    Trace headers are added on the way out; `headers` must not carry any of its own.
    """

    topic: str
    value: bytes
    key: bytes | None = None
    headers: KafkaHeaders = field(default_factory=list)
    partition: int = -1
    """-1: the partitioner chooses (by key)."""
    parent: SpanContext | None = None
    """Published in this span's trace rather than the current one."""

    @classmethod
    def for_event(
        cls,
        topic: str,
        event: Event[Any],
        key: str | None = None,
        headers: KafkaHeaders | None = None,
        parent: SpanContext | None = None,
    ) -> OutgoingMessage:
        routing_key = key if key is not None else event.subject
        return cls(
            topic=topic,
            value=event.to_json_bytes(),
            key=routing_key.encode() if routing_key is not None else None,
            headers=[
                ("ce_type", _encoded(event.type)),
                *(headers or []),
            ],
            parent=parent,
        )


class _Failures:
    """Collects the writes the broker refused; librdkafka reports only failures to us."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: list[DeliveryFailure] = []

    def on_delivery(self, error: KafkaError | None, message: Message) -> None:
        topic = message.topic() or "?"
        DELIVERY_FAILURES.labels(topic).inc()
        log.error("delivery to %s failed: %s", topic, error.str() if error else "?")
        failure = DeliveryFailure(topic, error or KafkaError(KafkaError._FAIL), message.value())
        with self._lock:
            self._errors.append(failure)

    def drain(self) -> list[DeliveryFailure]:
        with self._lock:
            errors, self._errors = self._errors, []
        return errors


def _describe(failures: list[DeliveryFailure]) -> str:
    return "; ".join(f"{failure.topic}: {failure.error.str()}" for failure in failures[:5])


class EventProducer:
    """Wraps confluent_kafka.Producer; every write is either confirmed or raised.

    Delivery reports come back only for failures (delivery.report.only.error), so a
    successful write costs no Python callback; `flush` turns any failure into an error.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer({**config, "delivery.report.only.error": True})
        self._background = _Failures()

    def publish(self, messages: Iterable[OutgoingMessage], refused: Refused | None = None) -> int:
        """Queues messages without waiting; a later `flush()` raises if any was not confirmed.
        A write librdkafka refuses at once raises, or is handed to `refused` when given."""
        batch = list(messages)
        for parent, run in groupby(batch, key=lambda message: message.parent):
            self._send(list(run), self._background.on_delivery, parent, refused)
        if batch:
            self._producer.poll(0)
        return len(batch)

    def publish_confirmed(self, messages: Iterable[OutgoingMessage], timeout: float = 30.0) -> int:
        """Writes messages and returns only once the broker confirmed every one of them."""
        batch = list(messages)
        failures = _Failures()
        for parent, run in groupby(batch, key=lambda message: message.parent):
            self._send(list(run), failures.on_delivery, parent)
        left = self._producer.flush(timeout)
        errors = failures.drain()
        if errors:
            raise DeliveryError(
                f"{len(errors)} of {len(batch)} writes failed: {_describe(errors)}", errors, left
            )
        if left:
            raise DeliveryError(
                f"writes unconfirmed after {timeout}s ({left} still queued)", unconfirmed=left
            )
        return len(batch)

    def flush(self, timeout: float = 30.0) -> None:
        """Waits for every queued write; raises DeliveryError for any failure since last flush."""
        left = self._producer.flush(timeout)
        errors = self._background.drain()
        if errors:
            raise DeliveryError(f"{len(errors)} writes failed: {_describe(errors)}", errors, left)
        if left:
            raise DeliveryError(f"{left} writes unconfirmed after {timeout}s", unconfirmed=left)

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)

    def _send(
        self,
        batch: list[OutgoingMessage],
        on_delivery: Any,
        parent: SpanContext | None = None,
        refused: Refused | None = None,
    ) -> None:
        """One producer span per call, a child of `parent` when given, else of the current
        span; every message carries that span's trace context."""
        per_topic = Counter(message.topic for message in batch)
        name = f"{next(iter(per_topic))} publish" if len(per_topic) == 1 else "publish"
        attributes = {
            "messaging.system": "kafka",
            "messaging.destination.name": ",".join(sorted(per_topic)),
            "messaging.batch.message_count": len(batch),
        }
        context = set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
        with _tracer.start_as_current_span(
            name, context=context, kind=SpanKind.PRODUCER, attributes=attributes
        ):
            trace_headers: KafkaHeaders = []
            inject_trace_headers(trace_headers)
            produce = self._producer.produce
            for message in batch:
                headers = message.headers + trace_headers
                try:
                    produce(
                        message.topic,
                        message.value,
                        message.key,
                        partition=message.partition,
                        headers=headers,
                        on_delivery=on_delivery,
                    )
                except BufferError:
                    self._produce_when_queue_frees(message, headers, on_delivery)
                except KafkaException as error:
                    if refused is None:
                        raise
                    refused(message, error)
        for topic, count in per_topic.items():
            MESSAGES_PUBLISHED.labels(topic).inc(count)

    def _produce_when_queue_frees(
        self, message: OutgoingMessage, headers: KafkaHeaders, on_delivery: Any
    ) -> None:
        while True:
            self._producer.poll(0.05)
            try:
                self._producer.produce(
                    message.topic,
                    message.value,
                    message.key,
                    partition=message.partition,
                    headers=headers,
                    on_delivery=on_delivery,
                )
                return
            except BufferError:
                continue
