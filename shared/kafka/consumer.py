"""The consumer runner: at-least-once delivery into handlers, dead letters for poison messages.

Offsets are stored only after a message was handled (or dead-lettered) and every event its
handler emitted was confirmed by the broker, so a crash at any point replays, never skips.

No single message can stop the loop: whatever fails while decoding, handling, serializing or
publishing one message's outputs dead-letters that message (with its origin and a reason) and
consumption moves on. Failures are classified (shared/failures.py): a deterministic one is
dead-lettered at once, an unknown one after `RetryPolicy.max_attempts`, and a transient one
(broker, database, object store down) is never dead-lettered: the runner rewinds to the first
message not done and waits with backoff until the dependency answers again.
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
from shared.failures import Failure, classify
from shared.kafka.producer import DeliveryError, EventProducer, OutgoingMessage
from shared.metrics import (
    CONSUMER_WAITS,
    HANDLER_RETRIES,
    MESSAGES_DEAD_LETTERED,
    MESSAGES_HANDLED,
)
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


class DataError(HandlerFailed):
    """The handler met a deterministic failure (bad data): no retry can fix it."""

    reason = "data_error"


class UndeclaredTopic(HandlerFailed):
    reason = "undeclared_topic"


class OutputUnserializable(HandlerFailed):
    reason = "output_unserializable"


class OutputTooLarge(HandlerFailed):
    reason = "output_too_large"


class OutputRefused(HandlerFailed):
    """The broker refused an output for a reason no retry fixes (e.g. over a topic's limit)."""

    reason = "output_refused"


class DependencyUnavailable(Exception):
    """A transient failure: the message waits (never dead-lettered) until it passes."""


# What a message's record adds to its value on the broker (key, headers, framing, trace).
_RECORD_OVERHEAD_BYTES = 512


def record_size(message: OutgoingMessage) -> int:
    headers = sum(len(name) + len(value or b"") for name, value in message.headers)
    return len(message.value) + len(message.key or b"") + headers + _RECORD_OVERHEAD_BYTES


@dataclass(slots=True)
class _Done:
    """A message that is done with: what it emits, or its dead letter."""

    message: Message
    info: MessageInfo
    outputs: list[OutgoingMessage]


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


class PartitionListener(Protocol):
    """Told where a partition's handled messages end (state kept per partition can be
    checkpointed with that offset) and when partitions leave this consumer. Called on the
    consumer's thread; what it raises is logged, never stops the loop."""

    def stored(self, next_offsets: Mapping[tuple[str, int], int]) -> None:
        """Every message before these offsets is done: handled or dead-lettered, and what
        it emitted confirmed by the broker."""

    def revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        """These partitions leave this consumer (rebalance, or it stops), before the final
        commit of their stored offsets."""


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
        max_message_bytes: int = 1_048_576,
        listener: PartitionListener | None = None,
    ) -> None:
        """`max_message_bytes`: the largest message the broker takes (the platform's
        max_payload_bytes); an input whose output is larger is dead-lettered. `listener`:
        told of stored offsets and revoked partitions (e.g. to checkpoint state)."""
        self.group_id = group_id
        self._routes = {subscription.topic: subscription for subscription in subscriptions}
        self._config = {**consumer_config, "group.id": group_id}
        self._producer = producer
        self._dead_letter_topic = dead_letter_topic
        self._retry = retry or RetryPolicy()
        self._batch_size = batch_size
        self._poll_timeout_s = poll_timeout_s
        self._max_message_bytes = max_message_bytes
        self._consumer: Consumer | None = None
        self._waits = 0
        self._listener = listener

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
            if self._listener is not None:
                self._tell_revoked(_assignment(consumer))
            self._commit_stored(consumer)
            consumer.close()
            self._consumer = None

    def _process_batch(self, batch: list[Message], stop: threading.Event) -> None:
        done: list[_Done] = []
        queued = 0
        waiting: DependencyUnavailable | None = None
        valid = [m for m in batch if m.error() is None or self._on_consume_error(m.error())]
        for _, run in groupby(valid, key=_trace_key):
            run_queued, waiting = self._process_run(list(run), done, stop)
            queued += run_queued
            if waiting is not None or stop.is_set():
                break
        if queued and (unconfirmed := self._flush(done)) is not None:
            waiting, done = unconfirmed, []  # nothing of the batch is sure: all of it again
        next_offsets = {(d.info.topic, d.info.partition): d.info.offset + 1 for d in done}
        self._store(next_offsets)
        if waiting is None:
            self._waits = 0
            return
        self._rewind(valid, next_offsets)
        self._wait_out(waiting, stop)

    def _process_run(
        self, run: list[Message], done: list[_Done], stop: threading.Event
    ) -> tuple[int, DependencyUnavailable | None]:
        """Handles consecutive messages of one topic and trace in one span; appends the ones
        done to `done` and returns how many writes it queued, and what it waits for if any."""
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
            finished, handled, waiting = self._outgoing(subscription, run, stop, span)
            span.set_attribute("messaging.batch.message_count", len(finished))
            queued = self._publish(finished)
        done.extend(finished)
        MESSAGES_HANDLED.labels(topic, self.group_id).inc(handled)
        return queued, waiting

    def _outgoing(
        self,
        subscription: Subscription,
        run: list[Message],
        stop: threading.Event,
        span: trace.Span,
    ) -> tuple[list[_Done], int, DependencyUnavailable | None]:
        """What the run's leading messages emit (or their dead letters), how many were
        handled, and the transient failure the next message waits for, if any. All messages
        are done unless asked to stop midway or a dependency is unavailable."""
        decoded = [(message, *self._decode(subscription, message)) for message in run]
        events = [(item, info) for _, info, item in decoded if isinstance(item, Event)]
        results = iter(self._handle_all(subscription, events, stop))
        finished: list[_Done] = []
        handled = 0
        for message, info, item in decoded:
            failure: UndecodableMessage | HandlerFailed | None = None
            if isinstance(item, UndecodableMessage):
                failure = item
            else:
                result = next(results, None)
                if result is None:  # asked to stop before this message
                    break
                if isinstance(result, DependencyUnavailable):
                    return finished, handled, result
                try:
                    if isinstance(result, HandlerFailed):
                        raise result
                    finished.append(_Done(message, info, self._outputs(subscription, result)))
                    handled += 1
                except HandlerFailed as error:
                    failure = error
            if failure is not None:
                span.add_event("dead-lettered", {"offset": info.offset, "reason": failure.reason})
                finished.append(_Done(message, info, [self._dead_letter(message, info, failure)]))
        return finished, handled, None

    @staticmethod
    def _decode(
        subscription: Subscription, message: Message
    ) -> tuple[MessageInfo, Event[Any] | UndecodableMessage]:
        info = _info(message)
        try:
            return info, subscription.decoder.decode(message.value(), info)
        except UndecodableMessage as error:
            return info, error
        except Exception as error:  # a decoder bug must not stop the loop either
            return info, UndecodableMessage(f"decoder failed: {type(error).__name__}: {error}")

    def _outputs(self, subscription: Subscription, emits: Iterable[Emit]) -> list[OutgoingMessage]:
        """The messages a handler's emits become; raises HandlerFailed for one that cannot be
        published (undeclared topic, unserializable, over the broker's limit)."""
        outputs = []
        try:
            for e in emits:
                topic = _declared_topic(subscription, e)
                outputs.append(OutgoingMessage.for_event(topic, e.event, e.key, parent=e.parent))
        except HandlerFailed:
            raise
        except Exception as error:
            raise OutputUnserializable(f"{type(error).__name__}: {error}") from error
        for output in outputs:
            if record_size(output) > self._max_message_bytes:
                raise OutputTooLarge(
                    f"an output to {output.topic} has {len(output.value)} bytes, over the "
                    f"limit of {self._max_message_bytes}"
                )
        return outputs

    def _publish(self, finished: list[_Done]) -> int:
        """Queues every output; an input whose output librdkafka refuses is dead-lettered."""
        refused: list[tuple[OutgoingMessage, Exception]] = []
        outputs = [output for item in finished for output in item.outputs]
        queued = self._producer.publish(outputs, lambda m, e: refused.append((m, e)))
        if refused:
            letters = self._letters_for(finished, [(m.topic, m.value, e) for m, e in refused])
            queued += self._producer.publish(letters)
        return queued - len(refused)

    def _flush(self, done: list[_Done]) -> DependencyUnavailable | None:
        """Waits for the batch's writes. A write the broker refused for good is tried once
        more alone (a batch is refused whole for one message over a topic's limit); refused
        again, it dead-letters its input. Any other failure: the whole batch is done again."""
        try:
            self._producer.flush()
            return None
        except DeliveryError as error:
            if error.kind is not Failure.DETERMINISTIC:
                return DependencyUnavailable(f"writes not confirmed: {error}")
            failures = error.failures
        refused: list[tuple[str, bytes | None, Exception]] = []
        try:
            for failure in failures:
                alone = OutgoingMessage(failure.topic, failure.value or b"")
                output = next((o for d in done for o in d.outputs if _same(o, alone)), alone)
                try:
                    self._producer.publish_confirmed([output])
                except DeliveryError as again:
                    if again.kind is not Failure.DETERMINISTIC:
                        raise
                    refused.append((failure.topic, failure.value, again))
            self._producer.publish_confirmed(self._letters_for(done, refused))
        except DeliveryError as error:
            return DependencyUnavailable(f"writes not confirmed: {error}")
        return None

    def _letters_for(
        self, finished: list[_Done], refused: list[tuple[str, bytes | None, Exception]]
    ) -> list[OutgoingMessage]:
        """Dead letters for the inputs whose outputs were refused (found by topic and value)."""
        letters: list[OutgoingMessage] = []
        lettered: set[int] = set()
        for topic, value, error in refused:
            for index, item in enumerate(finished):
                wanted = OutgoingMessage(topic, value or b"")
                if index in lettered or not any(_same(o, wanted) for o in item.outputs):
                    continue
                lettered.add(index)
                was_letter = topic == self._dead_letter_topic
                failure = OutputRefused(f"{topic}: {error}")
                letters.append(
                    self._dead_letter(item.message, item.info, failure, keep_value=not was_letter)
                )
                break
            else:
                log.error("a refused write to %s matches no input of the batch: %s", topic, error)
        return letters

    def _store(self, next_offsets: dict[tuple[str, int], int]) -> None:
        if not next_offsets or self._consumer is None:
            return
        try:
            self._consumer.store_offsets(
                offsets=[TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
            )
        except KafkaException as error:  # revoked meanwhile: the new owner redelivers
            log.warning("offsets not stored (%s); they will be redelivered", error)
            return
        if self._listener is not None:
            try:
                self._listener.stored(next_offsets)
            except Exception:
                log.exception("the partition listener failed on stored offsets")

    def _rewind(self, valid: list[Message], next_offsets: dict[tuple[str, int], int]) -> None:
        """Seeks each partition back to its first message not done, to consume it again."""
        first_not_done: dict[tuple[str, int], int] = {}
        for message in valid:
            key = (message.topic(), message.partition())
            if message.offset() >= next_offsets.get(key, -1) and key not in first_not_done:
                first_not_done[key] = message.offset()
        if self._consumer is None:
            return
        for (topic, partition), offset in first_not_done.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as error:  # no longer ours: the new owner starts there
                log.warning("could not rewind %s[%d] to %d: %s", topic, partition, offset, error)

    def _wait_out(self, waiting: DependencyUnavailable, stop: threading.Event) -> None:
        self._waits += 1
        CONSUMER_WAITS.labels(self.group_id).inc()
        backoff = self._retry.backoff(self._waits)
        log.warning(
            "a dependency is unavailable (%s); waiting %.1fs before trying again", waiting, backoff
        )
        stop.wait(backoff)

    def _handle_all(
        self, subscription: Subscription, events: list[Decoded], stop: threading.Event
    ) -> list[Iterable[Emit] | HandlerFailed | DependencyUnavailable]:
        """Each event's emits, or the failure that dead-letters it; stops early on `stop`, and
        after a transient failure (the last result then)."""
        if subscription.batch_handler is not None and events:
            try:
                emitted = subscription.batch_handler(events)
                if len(emitted) != len(events):
                    raise ValueError(f"{len(emitted)} results for {len(events)} events")
                return [result or () for result in emitted]
            except Exception as error:
                if classify(error) is Failure.TRANSIENT:
                    return [_unavailable(error)]
                log.warning(
                    "batch handler of %s failed, one by one now: %s", events[0][1].topic, error
                )
        results: list[Iterable[Emit] | HandlerFailed | DependencyUnavailable] = []
        for event, info in events:
            try:
                results.append(self._handle(subscription, event, info))
            except HandlerFailed as failure:
                results.append(failure)
            except DependencyUnavailable as waiting:
                results.append(waiting)
                break
            if stop.is_set():
                break
        return results

    def _handle(
        self, subscription: Subscription, event: Event[Any], info: MessageInfo
    ) -> Iterable[Emit]:
        """Runs the handler. A deterministic failure becomes DataError at once, a transient
        one DependencyUnavailable, any other is retried with backoff, then HandlerFailed."""
        attempt = 1
        while True:
            try:
                return subscription.handler(event, info) or ()
            except Exception as error:
                kind = classify(error)
                if kind is Failure.TRANSIENT:
                    raise _unavailable(error) from error
                if kind is Failure.DETERMINISTIC:
                    raise DataError(f"{type(error).__name__}: {error}") from error
                if attempt >= self._retry.max_attempts:
                    raise HandlerFailed(f"{type(error).__name__}: {error}") from error
                HANDLER_RETRIES.labels(info.topic, self.group_id).inc()
                log.warning("handler failed on %s (attempt %d): %s", event.id, attempt, error)
                time.sleep(self._retry.backoff(attempt))
                attempt += 1

    def _dead_letter(
        self, message: Message, info: MessageInfo, error: Exception, keep_value: bool = True
    ) -> OutgoingMessage:
        """The message as it came, with headers saying where from and why. When it would not
        fit the broker's limit with those headers, its value is left out (the origin keeps it)."""
        reason = getattr(error, "reason", type(error).__name__)
        MESSAGES_DEAD_LETTERED.labels(info.topic, self.group_id, reason).inc()
        log.warning("dead-lettering %s[%d]@%d: %s", info.topic, info.partition, info.offset, error)
        letter = OutgoingMessage(
            topic=self._dead_letter_topic,
            value=message.value() or b"",
            key=info.key,
            headers=[
                *(h for h in message.headers() or [] if h[0] not in TRACE_HEADERS),
                *dead_letter_headers(info, self.group_id, error),
            ],
        )
        if keep_value and record_size(letter) <= self._max_message_bytes:
            return letter
        letter.headers = [
            *dead_letter_headers(info, self.group_id, error),
            ("dlq.value.omitted", f"{len(letter.value)} bytes; read it at its origin".encode()),
        ]
        letter.value = b""
        letter.key = (info.key or b"")[:1000] or None
        return letter

    @staticmethod
    def _on_consume_error(error: KafkaError) -> bool:
        """Raises on fatal errors; logs the others. Never keeps the errored message."""
        if error.fatal():
            raise KafkaException(error)
        log.warning("consumer error: %s", error.str())
        return False

    def _commit_before_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._tell_revoked(partitions)
        self._commit_stored(consumer)

    def _tell_revoked(self, partitions: list[TopicPartition]) -> None:
        if self._listener is None or not partitions:
            return
        try:
            self._listener.revoked([(p.topic, p.partition) for p in partitions])
        except Exception:
            log.exception("the partition listener failed on revoked partitions")

    @staticmethod
    def _commit_stored(consumer: Consumer) -> None:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as error:
            if error.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("offset commit failed: %s", error)


def _assignment(consumer: Consumer) -> list[TopicPartition]:
    try:
        return list(consumer.assignment())
    except KafkaException as error:
        log.warning("assignment unknown at stop: %s", error)
        return []


def _same(output: OutgoingMessage, other: OutgoingMessage) -> bool:
    return output.topic == other.topic and output.value == other.value


def _unavailable(error: Exception) -> DependencyUnavailable:
    return DependencyUnavailable(f"{type(error).__name__}: {error}")
