"""The producer confirms every write or raises: nothing is dropped silently."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.events import Event, RecordIngested
from shared.kafka.config import producer_config
from shared.kafka.producer import DeliveryError, EventProducer, OutgoingMessage
from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import unique_name


def a_message(topic: str) -> OutgoingMessage:
    record = RecordIngested(dataset="p", values={"n": 1}, ingested_at=datetime.now(UTC))
    return OutgoingMessage.for_event(topic, Event.create(record, source="test"))


def test_a_write_to_a_topic_that_does_not_exist_raises(settings: PlatformSettings) -> None:
    config = {**producer_config(settings, "failure-test"), "message.timeout.ms": 3000}
    producer = EventProducer(config)
    missing = unique_name("never-created")
    with pytest.raises(DeliveryError, match=missing):
        producer.publish_confirmed([a_message(missing)], timeout=20)


def test_a_queued_write_that_fails_surfaces_at_flush(settings: PlatformSettings) -> None:
    config = {**producer_config(settings, "failure-test"), "message.timeout.ms": 3000}
    producer = EventProducer(config)
    assert producer.publish([a_message(unique_name("never-created"))]) == 1
    with pytest.raises(DeliveryError, match="1 writes failed"):
        producer.flush(timeout=20)
    producer.flush(timeout=5)  # the failure was reported once, and the queue is empty now


def test_an_unreachable_broker_raises_instead_of_acknowledging() -> None:
    settings = PlatformSettings(_env_file=None, kafka_bootstrap_servers="127.0.0.1:1")
    config = {**producer_config(settings, "failure-test"), "message.timeout.ms": 2000}
    with pytest.raises(DeliveryError):
        EventProducer(config).publish_confirmed([a_message("anything")], timeout=10)
