"""The Kafka adapters on fakes: refusals instead of Kafka errors, bounded waits while Kafka is
down, and the shipped specs registered as soon as it answers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from services.ingestion.adapters.kafka import (
    KafkaPublisher,
    RegistryCatalog,
    ShippedSpecRegistration,
)
from services.ingestion.domain.errors import (
    BrokerUnavailable,
    RecordTooLarge,
    UnknownDataset,
    UnknownVersion,
)
from services.ingestion.handlers import ingest_record
from shared.datasets.registry import UnknownDataset as RegistryUnknownDataset
from shared.datasets.spec import DatasetSpec, VersionedSpec
from shared.kafka.producer import DeliveryError, DeliveryFailure
from tests.unit.test_ingestion_usecases import shipped

DOWN = KafkaException(KafkaError(KafkaError._TRANSPORT, "Broker transport failure"))


class FakeRegistry:
    """shared.datasets.registry.SpecRegistry's interface, in memory."""

    def __init__(self) -> None:
        self.versions: dict[str, dict[int, VersionedSpec]] = {}
        self.down = False
        self.refreshes = 0

    def refresh(self, timeout_s: float = 10.0) -> None:
        self.refreshes += 1
        if self.down:
            raise DOWN

    def names(self) -> list[str]:
        return sorted(self.versions)

    def latest(self, name: str) -> VersionedSpec:
        if name not in self.versions:
            raise RegistryUnknownDataset(name, self.names())
        return self.versions[name][max(self.versions[name])]

    def get(self, name: str, version: int) -> VersionedSpec:
        if name not in self.versions:
            raise RegistryUnknownDataset(name, self.names())
        try:
            return self.versions[name][version]
        except KeyError:
            raise LookupError(f"dataset {name!r} has no version {version}") from None

    def register(self, spec: DatasetSpec, producer: Any) -> VersionedSpec:
        if self.down:
            raise DeliveryError("1 of 1 writes failed: Local: Message timed out")
        versions = self.versions.setdefault(spec.name, {})
        versioned = VersionedSpec(
            version=len(versions) + 1, fingerprint=spec.fingerprint(), spec=spec
        )
        versions[versioned.version] = versioned
        return versioned


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.step = 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def catalog() -> tuple[RegistryCatalog, FakeRegistry, Clock]:
    registry, clock = FakeRegistry(), Clock()
    return RegistryCatalog(registry, producer=None, timeout_s=5.0, clock=clock), registry, clock  # type: ignore[arg-type]


def test_registration_is_idempotent_by_content_and_versions_changes() -> None:
    specs, _, _ = catalog()
    loans = shipped("loans")
    first = specs.register(loans)
    assert first.created and first.versioned.version == 1
    assert specs.register(loans) == type(first)(first.versioned, created=False)
    changed = DatasetSpec.model_validate({**loans.model_dump(), "description": "v2"})
    assert specs.register(changed).versioned.version == 2
    assert specs.register(loans).versioned.version == 1, "an older content keeps its version"
    assert specs.latest("loans").version == 2
    assert [v.version for v in specs.all_latest()] == [2]


def test_lookups_become_refusals() -> None:
    specs, _, _ = catalog()
    specs.register(shipped("loans"))
    with pytest.raises(UnknownDataset) as refused:
        specs.latest("nope")
    assert refused.value.extra["known"] == ["loans"]
    with pytest.raises(UnknownVersion, match="no version 4; versions: 1 to 1"):
        specs.get("loans", 4)
    with pytest.raises(UnknownDataset):
        specs.get("nope", 1)


def test_while_kafka_is_down_reads_fail_fast_after_one_wait() -> None:
    specs, registry, clock = catalog()
    registry.down = True
    with pytest.raises(BrokerUnavailable, match="cannot be read from Kafka"):
        specs.latest("loans")
    assert registry.refreshes == 1
    clock.now += 1
    with pytest.raises(BrokerUnavailable, match=r"unreachable .* 1\.0s ago"):
        specs.latest("loans")
    assert registry.refreshes == 1, "no second wait within the timeout"
    with pytest.raises(BrokerUnavailable):
        specs.register(shipped("loans"))
    registry.down = False
    clock.now += 5
    assert specs.register(shipped("loans")).created
    assert registry.refreshes == 2


def test_a_known_dataset_needs_no_kafka_read() -> None:
    specs, registry, _ = catalog()
    specs.register(shipped("loans"))
    registry.down = True
    assert specs.latest("loans").version == 1


def test_a_registration_kafka_did_not_confirm_is_a_503() -> None:
    specs, registry, _ = catalog()
    registry.refresh = lambda timeout_s=10.0: None  # type: ignore[method-assign]
    registry.down = True
    with pytest.raises(BrokerUnavailable, match="could not be registered"):
        specs.register(shipped("loans"))


def test_shipped_specs_are_registered_once_kafka_answers() -> None:
    specs, registry, clock = catalog()
    registry.down = True
    stop = threading.Event()
    registration = ShippedSpecRegistration(
        specs, [shipped("loans"), shipped("breast_cancer")], stop, initial_backoff_s=0.001
    )
    clock.step = 3.0  # time passes between attempts
    attempts = 0

    def recover_after_three(timeout_s: float = 10.0) -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 3:
            raise DOWN

    registry.refresh = recover_after_three  # type: ignore[method-assign]
    registry.down = False
    with pytest.raises(RuntimeError, match="not registered yet: loans, breast_cancer"):
        registration.check()
    registration.run()
    registration.check()
    assert registration.registered == {"loans": 1, "breast_cancer": 1}
    assert attempts == 5, "3 failed reads, then one per spec"


def test_shipped_spec_registration_stops_when_asked() -> None:
    specs, registry, _ = catalog()
    registry.down = True
    stop = threading.Event()
    stop.set()
    registration = ShippedSpecRegistration(specs, [shipped("loans")], stop)
    registration.run()
    with pytest.raises(RuntimeError):
        registration.check()


class FakeProducer:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.sent: list[Any] = []

    def publish_confirmed(self, messages: list[Any], timeout: float = 30.0) -> int:
        if self.error is not None:
            raise self.error
        self.sent.extend(messages)
        return len(messages)


def emit(values: dict[str, Any]):  # type: ignore[no-untyped-def]
    versioned = VersionedSpec(
        version=1, fingerprint=shipped("loans").fingerprint(), spec=shipped("loans")
    )
    return ingest_record(values, versioned, now=datetime(2024, 1, 1, tzinfo=UTC))


def test_the_publisher_writes_to_namespaced_topics_keyed_as_emitted() -> None:
    producer = FakeProducer()
    publisher = KafkaPublisher(
        producer,  # type: ignore[arg-type]
        {"data.raw": "ns.data.raw"},
        max_record_bytes=10_000,
        timeout_s=1,
    )
    publisher.publish([emit({"applicant_id": "a-1"})])
    [message] = producer.sent
    assert (message.topic, message.key) == ("ns.data.raw", b"a-1")
    assert ("ce_type", b"mlops.RecordIngested") in message.headers


def test_the_publisher_refuses_oversize_records_before_writing_and_maps_failures() -> None:
    producer = FakeProducer()
    publisher = KafkaPublisher(
        producer,  # type: ignore[arg-type]
        {"data.raw": "ns.data.raw"},
        max_record_bytes=1000,
        timeout_s=1,
    )
    with pytest.raises(RecordTooLarge) as too_large:
        publisher.publish([emit({"a": 1}), emit({"a": "x" * 2000})])
    assert too_large.value.position == 1 and producer.sent == []
    for error in (DeliveryError("1 of 1 writes failed"), DOWN, BufferError("queue full")):
        producer.error = error
        with pytest.raises(BrokerUnavailable, match="nothing of this batch is acknowledged"):
            publisher.publish([emit({"a": 1})])


def timed_out(*codes: int) -> DeliveryError:
    failures = [DeliveryFailure("ns.data.raw", KafkaError(code), b"{}") for code in codes]
    return DeliveryError(f"{len(failures)} writes failed", failures)


def test_an_unconfirmed_batch_is_refused_naming_why_and_the_next_ones_at_once_for_a_while() -> None:
    """Two brokers of three down: every write waits for its timeout; after the first, the
    batches of the next `retry_after_s` are refused without waiting for Kafka again."""
    now = [100.0]
    producer = FakeProducer(timed_out(KafkaError._MSG_TIMED_OUT, KafkaError._MSG_TIMED_OUT))
    publisher = KafkaPublisher(
        producer,  # type: ignore[arg-type]
        {"data.raw": "ns.data.raw"},
        max_record_bytes=10_000,
        timeout_s=20,
        retry_after_s=5,
        clock=lambda: now[0],
    )
    with pytest.raises(BrokerUnavailable) as first:
        publisher.publish([emit({"a": 1})])
    assert first.value.status == 503
    assert "Kafka cannot make the records durable: 2 writes _MSG_TIMED_OUT" in first.value.message
    assert first.value.extra == {"retry_after_s": 5}

    producer.error = None
    now[0] += 2
    with pytest.raises(BrokerUnavailable) as at_once:
        publisher.publish([emit({"a": 2})])
    assert "_MSG_TIMED_OUT" in at_once.value.message and "(2.0s ago)" in at_once.value.message
    assert at_once.value.extra == {"retry_after_s": 3.0}
    assert producer.sent == [], "refused without writing"

    now[0] += 3
    publisher.publish([emit({"a": 3})])
    publisher.publish([emit({"a": 4})])
    assert len(producer.sent) == 2, "tried again once the hold is over, and clear after"


@pytest.mark.parametrize(
    ("error", "named"),
    [
        (timed_out(KafkaError.NOT_ENOUGH_REPLICAS), "1 writes NOT_ENOUGH_REPLICAS (fewer replicas"),
        (DeliveryError("late", unconfirmed=3), "3 writes still unconfirmed after 20s"),
        (DOWN, "_TRANSPORT (the broker connection failed)"),
        (BufferError("full"), "the producer's queue is full"),
    ],
)
def test_the_refusal_names_kafkas_reason(error: Exception, named: str) -> None:
    publisher = KafkaPublisher(
        FakeProducer(error),  # type: ignore[arg-type]
        {"data.raw": "ns.data.raw"},
        max_record_bytes=10_000,
        timeout_s=20,
    )
    with pytest.raises(BrokerUnavailable, match="Kafka cannot make the records durable") as refused:
        publisher.publish([emit({"a": 1})])
    assert named in refused.value.message
