"""Kafka behind ingestion's ports: the confirmed publisher, the spec catalog on the registry, and
the start-up registration of the shipped specs (retried until Kafka answers)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from confluent_kafka import KafkaError, KafkaException

from services.ingestion.domain.errors import (
    BrokerUnavailable,
    RecordTooLarge,
    UnknownDataset,
    UnknownVersion,
)
from services.ingestion.domain.ingestion import Registered
from shared.datasets.registry import SpecRegistry
from shared.datasets.registry import UnknownDataset as RegistryUnknownDataset
from shared.datasets.spec import DatasetSpec, VersionedSpec
from shared.kafka.consumer import Emit
from shared.kafka.producer import DeliveryError, EventProducer, OutgoingMessage

log = logging.getLogger(__name__)

KAFKA_FAILURES = (KafkaException, DeliveryError, TimeoutError, BufferError)


# Why Kafka did not confirm a write, for the client: librdkafka's code names what happened.
WHY = {
    "_MSG_TIMED_OUT": "not confirmed in time: a leader unreachable or too few replicas in sync",
    "NOT_ENOUGH_REPLICAS": "fewer replicas than min.insync.replicas are in sync",
    "NOT_ENOUGH_REPLICAS_AFTER_APPEND": "fewer replicas than min.insync.replicas are in sync",
    "_TRANSPORT": "the broker connection failed",
    "_ALL_BROKERS_DOWN": "no broker is reachable",
}


def _named(error: KafkaError) -> str:
    name = error.name()
    return f"{name} ({WHY.get(name, error.str())})"


def unconfirmed_reason(error: Exception, timeout_s: float) -> str:
    """What kept Kafka from confirming a batch, in one line that names librdkafka's codes."""
    if isinstance(error, DeliveryError) and error.failures:
        counted = Counter(_named(failure.error) for failure in error.failures)
        return "; ".join(f"{count} writes {why}" for why, count in counted.most_common())
    if isinstance(error, DeliveryError):
        return f"{error.unconfirmed} writes still unconfirmed after {timeout_s:g}s"
    if isinstance(error, KafkaException) and isinstance(error.args[0], KafkaError):
        return _named(error.args[0])
    if isinstance(error, BufferError):
        return "the producer's queue is full"
    return str(error)


class KafkaPublisher:
    """Publishes emits to their namespaced topics; returns once Kafka confirmed every write.

    After a batch Kafka did not confirm, batches within the next `retry_after_s` are refused
    at once with the same reason instead of each waiting `timeout_s` for Kafka again (two
    brokers of three down: no write can be made durable); the first batch after that tries.
    """

    def __init__(
        self,
        producer: EventProducer,
        topics: Mapping[str, str],
        *,
        max_record_bytes: int,
        timeout_s: float,
        retry_after_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._producer = producer
        self._topics = dict(topics)
        self._max_record_bytes = max_record_bytes
        self._timeout_s = timeout_s
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._last_failure: tuple[float, str] | None = None

    def publish(self, emits: Sequence[Emit]) -> None:
        messages = self._messages(emits)
        self._refuse_while_failing()
        try:
            self._producer.publish_confirmed(messages, timeout=self._timeout_s)
        except KAFKA_FAILURES as error:
            reason = unconfirmed_reason(error, self._timeout_s)
            self._last_failure = (self._clock(), reason)
            raise BrokerUnavailable(
                f"Kafka cannot make the records durable: {reason}; nothing of this batch is "
                "acknowledged: send it again",
                retry_after_s=self._retry_after_s,
            ) from None
        self._last_failure = None

    def _messages(self, emits: Sequence[Emit]) -> list[OutgoingMessage]:
        messages = []
        for position, emit in enumerate(emits):
            try:
                topic = self._topics[emit.topic]
            except KeyError:
                declared = ", ".join(sorted(self._topics))
                raise ValueError(
                    f"{emit.topic!r} is not declared in PUBLISHES ({declared})"
                ) from None
            message = OutgoingMessage.for_event(topic, emit.event, key=emit.key)
            if len(message.value) > self._max_record_bytes:
                raise RecordTooLarge(position, len(message.value), self._max_record_bytes)
            messages.append(message)
        return messages

    def _refuse_while_failing(self) -> None:
        failure = self._last_failure
        if failure is None:
            return
        ago = self._clock() - failure[0]
        if ago < self._retry_after_s:
            left = self._retry_after_s - ago
            raise BrokerUnavailable(
                f"Kafka cannot make the records durable: {failure[1]} ({ago:.1f}s ago); "
                f"nothing of this batch is acknowledged: send it again in {left:.1f}s",
                retry_after_s=round(left, 1),
            )


class RegistryCatalog:
    """The spec registry (shared.datasets.registry) with bounded waits and refusals.

    Ingestion is the registry's one writer: registrations are serialized here, so the answer
    "created or already registered" is exact within this process.
    """

    def __init__(
        self,
        registry: SpecRegistry,
        producer: EventProducer,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._producer = producer
        self._timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_failure: tuple[float, str] | None = None

    def _refresh(self) -> None:
        """Reads what is new on the specs topic. After a failed read, calls within the next
        `timeout_s` fail at once instead of each waiting `timeout_s` for Kafka again."""
        failure = self._last_failure
        ago = None if failure is None else self._clock() - failure[0]
        if failure is not None and ago is not None and ago < self._timeout_s:
            raise BrokerUnavailable(
                f"Kafka is unreachable (the spec registry could not be read {ago:.1f}s ago: "
                f"{failure[1]}); retry shortly"
            )
        try:
            self._registry.refresh(timeout_s=self._timeout_s)
        except KAFKA_FAILURES as error:
            self._last_failure = (self._clock(), str(error))
            raise BrokerUnavailable(
                f"the spec registry cannot be read from Kafka: {error}"
            ) from None
        self._last_failure = None

    def latest(self, name: str) -> VersionedSpec:
        if name not in self._registry.names():
            self._refresh()
        try:
            return self._registry.latest(name)
        except RegistryUnknownDataset as error:
            raise UnknownDataset(name, error.known) from None
        except KAFKA_FAILURES as error:
            raise BrokerUnavailable(
                f"the spec registry cannot be read from Kafka: {error}"
            ) from None

    def get(self, name: str, version: int) -> VersionedSpec:
        self._refresh()
        try:
            return self._registry.get(name, version)
        except RegistryUnknownDataset as error:
            raise UnknownDataset(name, error.known) from None
        except KAFKA_FAILURES as error:
            raise BrokerUnavailable(
                f"the spec registry cannot be read from Kafka: {error}"
            ) from None
        except LookupError:
            latest = self._registry.latest(name).version
            raise UnknownVersion(
                f"dataset {name!r} has no version {version}; versions: 1 to {latest}",
                versions=list(range(1, latest + 1)),
            ) from None

    def all_latest(self) -> list[VersionedSpec]:
        self._refresh()
        return [self._registry.latest(name) for name in self._registry.names()]

    def _versions(self, name: str) -> list[VersionedSpec]:
        if name not in self._registry.names():
            return []
        latest = self._registry.latest(name)
        return [self._registry.get(name, v) for v in range(1, latest.version + 1)]

    def register(self, spec: DatasetSpec) -> Registered:
        with self._lock:
            self._refresh()
            fingerprint = spec.fingerprint()
            try:
                for existing in self._versions(spec.name):
                    if existing.fingerprint == fingerprint:
                        return Registered(existing, created=False)
                return Registered(self._registry.register(spec, self._producer), created=True)
            except KAFKA_FAILURES as error:
                raise BrokerUnavailable(
                    f"the spec could not be registered, Kafka did not confirm it: {error}"
                ) from None


class ShippedSpecRegistration:
    """Registers the shipped specs at start-up, in the background, retrying with backoff while
    Kafka is unreachable; `check` is a readiness check that passes once all are registered."""

    def __init__(
        self,
        catalog: RegistryCatalog,
        specs: list[DatasetSpec],
        stop: threading.Event,
        *,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 15.0,
    ) -> None:
        self._catalog = catalog
        self._pending = list(specs)
        self._stop = stop
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self.registered: dict[str, int] = {}
        self.last_error: str | None = None

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="shipped-specs", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        backoff = self._initial_backoff_s
        while self._pending and not self._stop.is_set():
            spec = self._pending[0]
            try:
                outcome = self._catalog.register(spec)
            except Exception as error:
                self.last_error = f"{spec.name}: {getattr(error, 'message', error)}"
                log.warning("shipped spec %s not registered yet: %s", spec.name, self.last_error)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            self._pending.pop(0)
            self.registered[spec.name] = outcome.versioned.version
            self.last_error = None
            log.info(
                "shipped spec %s: version %d (%s)",
                spec.name,
                outcome.versioned.version,
                "registered" if outcome.created else "already registered",
            )

    def check(self) -> None:
        if self._pending:
            names = ", ".join(spec.name for spec in self._pending)
            raise RuntimeError(
                f"shipped specs not registered yet: {names}"
                + (f" (last error: {self.last_error})" if self.last_error else "")
            )
