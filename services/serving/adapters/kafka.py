"""Serving's Kafka side: the prediction log (written behind the answers) and the position of
its models.lifecycle consumer.

The prediction log never makes a request wait for Kafka: answers put their predictions on an
in-memory queue, and a background thread turns them into PredictionServed events, publishes
them and flushes. A write the broker refuses is counted (mlops_delivery_failures_total,
mlops_serving_prediction_log_failures_total) and logged; a prediction that finds the queue
full (Kafka down for long) is counted and logged as dropped. None disappears unnoticed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from services.serving import metrics
from shared.kafka.consumer import ConsumerRunner, Emit
from shared.kafka.producer import DeliveryError, EventProducer, OutgoingMessage

log = logging.getLogger(__name__)

ToEmit = Callable[[Any], Emit]


class PredictionLog:
    """A background loop publishing what `record` queued; run it with `run(stop)`."""

    group_id = "prediction-log"

    def __init__(
        self,
        producer: EventProducer,
        topics: dict[str, str],
        to_emit: ToEmit,
        max_pending: int,
        flush_timeout_s: float = 10.0,
        idle_s: float = 0.2,
    ) -> None:
        self._producer = producer
        self._topics = topics
        self._to_emit = to_emit
        self._queue: queue.Queue[Any] = queue.Queue(max_pending)
        self._flush_timeout_s = flush_timeout_s
        self._idle_s = idle_s
        self._closed = False
        self._dropped_since_warning = 0

    def record(self, entries: Iterable[Any]) -> None:
        """Queues predictions for publishing; never blocks."""
        for entry in entries:
            if self._closed:
                self._drop("the prediction log is closed")
                continue
            try:
                self._queue.put_nowait(entry)
            except queue.Full:
                self._drop("the prediction log queue is full (is Kafka down?)")

    def _drop(self, why: str) -> None:
        metrics.LOG_DROPPED.inc()
        self._dropped_since_warning += 1
        if self._dropped_since_warning in (1, 1000) or self._dropped_since_warning % 100_000 == 0:
            log.error("prediction not logged: %s (%d so far)", why, self._dropped_since_warning)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def run(self, stop: threading.Event) -> None:
        """Publishes until `stop` is set and the queue stayed empty for `idle_s`, then flushes."""
        idle_since: float | None = None
        while True:
            batch = self._take(timeout_s=0.1)
            if batch:
                idle_since = None
                self._publish(batch)
                continue
            if not stop.is_set():
                continue
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= self._idle_s:
                break
        self._closed = True
        self._publish(self._take(timeout_s=0))

    def _take(self, timeout_s: float, limit: int = 10_000) -> list[Any]:
        try:
            batch = [self._queue.get(timeout=timeout_s) if timeout_s else self._queue.get_nowait()]
        except queue.Empty:
            return []
        while len(batch) < limit:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _publish(self, batch: list[Any]) -> None:
        if not batch:
            return
        messages = []
        for entry in batch:
            emit = self._to_emit(entry)
            messages.append(
                OutgoingMessage.for_event(self._topics[emit.topic], emit.event, emit.key)
            )
        self._producer.publish(messages)
        try:
            self._producer.flush(self._flush_timeout_s)
        except DeliveryError as error:
            metrics.LOG_FAILURES.inc()
            log.error("predictions not confirmed by Kafka: %s", error)


def start_at_end(consumer_config: dict[str, Any], topic: str, timeout_s: float = 10.0) -> None:
    """Commits the topic's current end offsets for the consumer's group, so it reads only
    what is published from now on (what came before, the registry already answers)."""
    consumer = Consumer({**consumer_config, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            raise RuntimeError(f"topic {topic} does not exist")
        ends = [
            TopicPartition(
                topic,
                partition,
                consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout_s)[1],
            )
            for partition in sorted(metadata.topics[topic].partitions)
        ]
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()


class LifecycleFollower:
    """Positions the lifecycle consumer at the topic's end, says so, then runs it."""

    def __init__(
        self,
        runner: ConsumerRunner,
        position: Callable[[], None],
        positioned: threading.Event,
        retry_s: float = 2.0,
    ) -> None:
        self.runner = runner
        self.group_id = runner.group_id
        self._position = position
        self.positioned = positioned
        self._retry_s = retry_s

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self._position()
                break
            except Exception as error:
                log.warning("cannot position on models.lifecycle yet: %s", error)
                stop.wait(self._retry_s)
        if stop.is_set():
            return
        self.positioned.set()
        self.runner.run(stop)
