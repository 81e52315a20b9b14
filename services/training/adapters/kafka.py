"""Publishing TrainModel commands from HTTP: keyed by model name, confirmed by the broker."""

from __future__ import annotations

from shared.events.envelope import Event
from shared.events.models import TrainModel
from shared.kafka.producer import EventProducer, OutgoingMessage


class CommandPublisher:
    def __init__(self, producer: EventProducer, topic: str, timeout_s: float) -> None:
        self.topic = topic
        self._producer = producer
        self._timeout_s = timeout_s

    def publish(self, command: Event[TrainModel]) -> None:
        """Returns once Kafka confirmed the command; raises DeliveryError when it did not."""
        message = OutgoingMessage.for_event(self.topic, command, key=command.data.model_name)
        self._producer.publish_confirmed([message], timeout=self._timeout_s)
