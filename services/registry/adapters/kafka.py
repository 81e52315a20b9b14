"""Publishing lifecycle events from HTTP: confirmed by Kafka before the request is answered."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaException

from services.registry.domain.errors import PublishFailed
from services.registry.domain.events import lifecycle_key
from shared.events.envelope import Event
from shared.kafka.config import producer_config
from shared.kafka.producer import DeliveryError, EventProducer, OutgoingMessage
from shared.settings import PlatformSettings

_FLUSH_GRACE_S = 5.0


def lifecycle_message(topic: str, event: Event[Any]) -> OutgoingMessage:
    """models.lifecycle is compacted per model version: key "<model_name>:<version>"."""
    key = lifecycle_key(event.data.model_name, event.data.version)
    return OutgoingMessage.for_event(topic, event, key=key)


class LifecyclePublisher:
    """Writes events to models.lifecycle and waits for the broker; PublishFailed otherwise.

    librdkafka gives up on a message after `timeout_s` (message.timeout.ms), before the flush
    does, so an event reported as failed is never delivered later behind the caller's back.
    """

    def __init__(self, platform: PlatformSettings, topic: str, timeout_s: float) -> None:
        config = producer_config(platform, "registry-http")
        self._producer = EventProducer({**config, "message.timeout.ms": int(timeout_s * 1000)})
        self._topic = topic
        self._flush_timeout_s = timeout_s + _FLUSH_GRACE_S

    def __call__(self, events: Sequence[Event[Any]]) -> None:
        messages = [lifecycle_message(self._topic, event) for event in events]
        try:
            self._producer.publish_confirmed(messages, timeout=self._flush_timeout_s)
        except (DeliveryError, KafkaException, BufferError) as error:
            raise PublishFailed(
                f"Kafka did not confirm the lifecycle event, so nothing was changed: {error}"
            ) from error
