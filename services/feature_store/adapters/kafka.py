"""Publishing what a batch caused (features, dead letters) through the shared producer, each
in the trace of the message that caused it, and retrying side effects until they hold."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import TypeVar

from confluent_kafka import KafkaException
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy.exc import SQLAlchemyError

from services.feature_store.handlers import DEAD_LETTER, Incoming, Outcome, TracedEmit
from shared.failures import Failure, classify
from shared.kafka.consumer import dead_letter_headers
from shared.kafka.producer import DeliveryError, EventProducer, OutgoingMessage
from shared.telemetry import TRACE_HEADERS, KafkaHeaders, extract_trace_context

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)
T = TypeVar("T")
RETRYABLE: tuple[type[Exception], ...] = (
    DeliveryError,
    KafkaException,
    BufferError,
    SQLAlchemyError,
    OSError,
)


def retryable(error: Exception) -> bool:
    """A side effect worth trying again: a broker, database or object store that should come
    back (urllib3's and MinIO's errors of an unreachable store included)."""
    return isinstance(error, RETRYABLE) or classify(error) is Failure.TRANSIENT


class Stopping(Exception):
    """The service is stopping while a side effect still failed: nothing is acknowledged."""


def retry_until_done(
    action: Callable[[], T], what: str, stop: threading.Event, max_backoff_s: float
) -> T:
    """Runs `action` until it succeeds; every side effect retried here is idempotent."""
    backoff = 0.1
    while True:
        try:
            return action()
        except Exception as error:
            if not retryable(error):
                raise
            log.warning("%s failed (%s: %s); retrying in %.1fs", what, type(error).__name__,
                        error, backoff)  # fmt: skip
            if stop.wait(backoff):
                raise Stopping(f"stopped while {what} kept failing: {error}") from error
            backoff = min(backoff * 2, max_backoff_s)


def _traceparent(headers: KafkaHeaders) -> bytes | None:
    return next((value for name, value in headers if name == "traceparent"), None)


class OutcomePublisher:
    """Writes a batch's events to their topics and waits until the broker confirmed them."""

    def __init__(
        self,
        producer: EventProducer,
        topics: Mapping[str, str],
        consumed_topic: str,
        group_id: str,
    ) -> None:
        self._producer = producer
        self._topics = topics
        self._consumed = consumed_topic
        self._group_id = group_id

    def publish(self, outcome: Outcome) -> int:
        messages: list[tuple[int, KafkaHeaders, OutgoingMessage]] = [
            (traced.source_partition, traced.headers, self._event_message(traced))
            for traced in outcome.emits
        ]
        messages += [
            (item.info.partition, item.headers, self._dead_letter(item, error))
            for item, error in outcome.dead_letters
        ]
        # A batch interleaves partitions, and with them the traces of their records: taken
        # partition by partition (each in order, as an entity's records share a partition),
        # a trace's messages follow each other and get one span.
        messages.sort(key=lambda item: item[0])
        for _, run in groupby(messages, key=lambda item: _traceparent(item[1])):
            batch = list(run)
            with _tracer.start_as_current_span(
                f"{self._consumed} process",
                context=extract_trace_context(batch[0][1]),
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.destination.name": self._consumed,
                    "messaging.consumer.group.name": self._group_id,
                    "messaging.batch.message_count": len(batch),
                },
            ):
                self._producer.publish(message for _, _, message in batch)
        self._producer.flush()
        return len(messages)

    def _event_message(self, traced: TracedEmit) -> OutgoingMessage:
        emit = traced.emit
        return OutgoingMessage.for_event(self._topics[emit.topic], emit.event, emit.key)

    def _dead_letter(self, item: Incoming, error: Exception) -> OutgoingMessage:
        log.warning(
            "dead-lettering %s[%d]@%d: %s", item.info.topic, item.info.partition,
            item.info.offset, error,
        )  # fmt: skip
        return OutgoingMessage(
            topic=self._topics[DEAD_LETTER],
            value=item.value or b"",
            key=item.info.key,
            headers=[
                *(h for h in item.headers if h[0] not in TRACE_HEADERS),
                *dead_letter_headers(item.info, self._group_id, error),
            ],
        )


@dataclass(frozen=True)
class SavedState:
    """An entity's state as the table holds it, and its changelog partition."""

    key: str
    value: str
    partition: int


class ChangelogWriter:
    """Saves entity states to the faust table's changelog through the shared producer, as
    faust itself writes them (JSON-encoded text keys and values, the state's partition), and
    returns once the broker confirmed every one: librdkafka batches a whole batch's states
    where faust's own producer sends them one by one."""

    def __init__(self, producer: EventProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    def write(self, states: Sequence[SavedState]) -> int:
        return self._producer.publish_confirmed(
            OutgoingMessage(
                topic=self._topic,
                value=json.dumps(state.value).encode(),
                key=json.dumps(state.key).encode(),
                partition=state.partition,
            )
            for state in states
        )
