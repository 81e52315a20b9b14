"""The consumer runner: at-least-once delivery into handlers, dead letters for poison messages.

Offsets are stored only after a message was handled (or dead-lettered) and every event its
handler emitted was confirmed by the broker, so a crash at any point replays, never skips.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind

from shared.events.codec import UndecodableMessage
from shared.events.envelope import Event
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.metrics import HANDLER_RETRIES, MESSAGES_DEAD_LETTERED, MESSAGES_HANDLED
from shared.telemetry import TRACE_HEADERS, extract_trace_context

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)


@dataclass(slots=True)
class MessageInfo:
    """Where a message came from: what lineage records and dead letters point back to."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int | None


@dataclass(frozen=True)
class Emit:
    """An event a handler wants published once its input is handled: in the trace of the
    message being handled, or under `parent` (a span of another trace, e.g. the one an
    earlier event this one follows from was published in)."""

    topic: str
    event: Event[Any]
    key: str | None = None
    parent: SpanContext | None = None


Handler = Callable[[Event[Any], MessageInfo], Iterable[Emit] | None]
Decoded = tuple[Event[Any], MessageInfo]
# Handles a whole consumed run at once (e.g. one SQL round trip for all of it) and returns what
# each message emits, in order. When it raises, the runner handles the run message by message
# with `handler`, so retries and dead letters stay per message.
BatchHandler = Callable[[Sequence[Decoded]], Sequence[Iterable[Emit] | None]]


class Decoder(Protocol):
    """Turns a message value into an event or raises UndecodableMessage; `info` says where
    the message sits, for decoders that derive ids from it."""

    def decode(self, value: bytes | None, info: MessageInfo | None = None) -> Event[Any]: ...


@dataclass(frozen=True)
class Subscription:
    """A topic, how to decode it, its handler, and the topics that handler may publish to.

    `emits` maps the names handlers use in `Emit.topic` (catalog names such as
    "data.validated") to the real topic names (with their namespace).
    """

    topic: str
    decoder: Decoder
    handler: Handler
    emits: Mapping[str, str] = field(default_factory=dict)
    batch_handler: BatchHandler | None = None


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0

    def backoff(self, attempt: int) -> float:
        return min(self.initial_backoff_s * 2 ** (attempt - 1), self.max_backoff_s)


def _trace_key(message: Message) -> tuple[str, bytes | None]:
    """Messages of one topic sent in one traced publish share a span on the way in, too."""
    traceparent = next((v for k, v in message.headers() or () if k == "traceparent"), None)
    return message.topic(), traceparent


def _info(message: Message) -> MessageInfo:
    return MessageInfo(
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        key=message.key(),
        timestamp_ms=message.timestamp()[1],
    )


class HandlerFailed(Exception):
    reason = "handler_failed"


class UndeclaredTopic(HandlerFailed):
    reason = "undeclared_topic"


def _declared_topic(subscription: Subscription, emit: Emit) -> str:
    try:
        return subscription.emits[emit.topic]
    except KeyError:
        declared = ", ".join(sorted(subscription.emits)) or "none"
        raise UndeclaredTopic(
            f"handler of {subscription.topic} emitted to {emit.topic!r}; declared: {declared}"
        ) from None


def dead_letter_headers(
    info: MessageInfo, group_id: str, error: Exception
) -> list[tuple[str, bytes]]:
    reason = getattr(error, "reason", type(error).__name__)
    return [
        ("dlq.original.topic", info.topic.encode()),
        ("dlq.original.partition", str(info.partition).encode()),
        ("dlq.original.offset", str(info.offset).encode()),
        ("dlq.consumer.group", group_id.encode()),
        ("dlq.reason", str(reason).encode()),
        ("dlq.error", str(error)[:4000].encode(errors="replace")),
    ]


class ConsumerRunner:
    """Polls its subscriptions and feeds each message to its handler until asked to stop."""

    def __init__(
        self,
        *,
        group_id: str,
        subscriptions: Sequence[Subscription],
        consumer_config: dict[str, Any],
        producer: EventProducer,
        dead_letter_topic: str,
        retry: RetryPolicy | None = None,
        batch_size: int = 500,
        poll_timeout_s: float = 0.5,
    ) -> None:
        self.group_id = group_id
        self._routes = {subscription.topic: subscription for subscription in subscriptions}
        self._config = {**consumer_config, "group.id": group_id}
        self._producer = producer
        self._dead_letter_topic = dead_letter_topic
        self._retry = retry or RetryPolicy()
        self._batch_size = batch_size
        self._poll_timeout_s = poll_timeout_s
        self._consumer: Consumer | None = None

    def run(self, stop: threading.Event) -> None:
        """Consumes until `stop` is set, then finishes the in-flight message and commits."""
        consumer = Consumer(self._config)
        self._consumer = consumer
        consumer.subscribe(list(self._routes), on_revoke=self._commit_before_revoke)
        try:
            while not stop.is_set():
                batch = consumer.consume(self._batch_size, self._poll_timeout_s)
                self._process_batch(batch, stop)
        finally:
            self._commit_stored(consumer)
            consumer.close()
            self._consumer = None

    def _process_batch(self, batch: list[Message], stop: threading.Event) -> None:
        next_offsets: dict[tuple[str, int], int] = {}
        queued = 0
        valid = [m for m in batch if m.error() is None or self._on_consume_error(m.error())]
        for _, run in groupby(valid, key=_trace_key):
            queued += self._process_run(list(run), next_offsets, stop)
            if stop.is_set():
                break
        if queued:
            self._producer.flush()
        if next_offsets and self._consumer is not None:
            self._consumer.store_offsets(
                offsets=[TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
            )

    def _process_run(
        self, run: list[Message], next_offsets: dict[tuple[str, int], int], stop: threading.Event
    ) -> int:
        """Handles consecutive messages of one topic and trace in one span; returns queued count."""
        first = run[0]
        topic = first.topic()
        subscription = self._routes[topic]
        with _tracer.start_as_current_span(
            f"{topic} process",
            context=extract_trace_context(first.headers()),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": topic,
                "messaging.consumer.group.name": self.group_id,
                "messaging.destination.partition.id": str(first.partition()),
                "messaging.kafka.offset": first.offset(),
            },
        ) as span:
            outgoing, handled, done = self._outgoing(subscription, run, stop, span)
            for message in run[:done]:
                next_offsets[(topic, message.partition())] = message.offset() + 1
            span.set_attribute("messaging.batch.message_count", done)
            queued = self._producer.publish(outgoing)
        MESSAGES_HANDLED.labels(topic, self.group_id).inc(handled)
        return queued

    def _outgoing(
        self,
        subscription: Subscription,
        run: list[Message],
        stop: threading.Event,
        span: trace.Span,
    ) -> tuple[list[OutgoingMessage], int, int]:
        """What the run's messages emit (or their dead letters), how many were handled, and how
        many leading messages of the run are done (all, unless asked to stop midway)."""
        decoded: list[tuple[Message, MessageInfo, Event[Any] | UndecodableMessage]] = []
        for message in run:
            info = _info(message)
            try:
                decoded.append((message, info, subscription.decoder.decode(message.value(), info)))
            except UndecodableMessage as error:
                decoded.append((message, info, error))
        events = [(item, info) for _, info, item in decoded if isinstance(item, Event)]
        results = iter(self._handle_all(subscription, events, stop))
        outgoing: list[OutgoingMessage] = []
        handled = done = 0
        for message, info, item in decoded:
            failure: UndecodableMessage | HandlerFailed | None = None
            if isinstance(item, UndecodableMessage):
                failure = item
            else:
                result = next(results, None)
                if result is None:  # asked to stop before this message
                    break
                try:
                    if isinstance(result, HandlerFailed):
                        raise result
                    outgoing.extend(
                        [
                            OutgoingMessage.for_event(
                                _declared_topic(subscription, e), e.event, e.key, parent=e.parent
                            )
                            for e in result
                        ]
                    )
                    handled += 1
                except HandlerFailed as error:
                    failure = error
            if failure is not None:
                span.add_event("dead-lettered", {"offset": info.offset, "reason": failure.reason})
                outgoing.append(self._dead_letter(message, info, failure))
            done += 1
        return outgoing, handled, done

    def _handle_all(
        self, subscription: Subscription, events: list[Decoded], stop: threading.Event
    ) -> list[Iterable[Emit] | HandlerFailed]:
        """Each event's emits, or the failure that dead-letters it; stops early on `stop`."""
        if subscription.batch_handler is not None and events:
            try:
                emitted = subscription.batch_handler(events)
                if len(emitted) != len(events):
                    raise ValueError(f"{len(emitted)} results for {len(events)} events")
                return [result or () for result in emitted]
            except Exception as error:
                log.warning(
                    "batch handler of %s failed, one by one now: %s", events[0][1].topic, error
                )
        results: list[Iterable[Emit] | HandlerFailed] = []
        for event, info in events:
            try:
                results.append(self._handle(subscription, event, info))
            except HandlerFailed as failure:
                results.append(failure)
            if stop.is_set():
                break
        return results

    def _handle(
        self, subscription: Subscription, event: Event[Any], info: MessageInfo
    ) -> Iterable[Emit]:
        """Runs the handler; a failure is retried with backoff, then becomes HandlerFailed."""
        attempt = 1
        while True:
            try:
                return subscription.handler(event, info) or ()
            except Exception as error:
                if attempt >= self._retry.max_attempts:
                    raise HandlerFailed(f"{type(error).__name__}: {error}") from error
                HANDLER_RETRIES.labels(info.topic, self.group_id).inc()
                log.warning("handler failed on %s (attempt %d): %s", event.id, attempt, error)
                time.sleep(self._retry.backoff(attempt))
                attempt += 1

    def _dead_letter(
        self, message: Message, info: MessageInfo, error: Exception
    ) -> OutgoingMessage:
        reason = getattr(error, "reason", type(error).__name__)
        MESSAGES_DEAD_LETTERED.labels(info.topic, self.group_id, reason).inc()
        log.warning("dead-lettering %s[%d]@%d: %s", info.topic, info.partition, info.offset, error)
        return OutgoingMessage(
            topic=self._dead_letter_topic,
            value=message.value() or b"",
            key=info.key,
            headers=[
                *(h for h in message.headers() or [] if h[0] not in TRACE_HEADERS),
                *dead_letter_headers(info, self.group_id, error),
            ],
        )

    @staticmethod
    def _on_consume_error(error: KafkaError) -> bool:
        """Raises on fatal errors; logs the others. Never keeps the errored message."""
        if error.fatal():
            raise KafkaException(error)
        log.warning("consumer error: %s", error.str())
        return False

    def _commit_before_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit_stored(consumer)

    @staticmethod
    def _commit_stored(consumer: Consumer) -> None:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as error:
            if error.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("offset commit failed: %s", error)
