"""End offsets read from the real broker by shared.kafka.watermarks: a topic's partitions, their
bounds, a topic that does not exist, and a read that fails leaving the next one working."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from shared.kafka.watermarks import HighWatermarks
from tests.integration.kafka_helpers import create_topic, produce_round_robin, unique_name


def test_the_ends_of_every_partition_of_a_topic_and_their_bounds(
    admin: AdminClient, bootstrap: str
) -> None:
    topic = create_topic(admin, unique_name("ends"), 3)
    produce_round_robin(bootstrap, topic, 10, 3)
    ends = HighWatermarks({"bootstrap.servers": bootstrap}, unique_name("ends-reader"))
    try:
        assert ends.of_topic(topic) == {(topic, 0): 4, (topic, 1): 3, (topic, 2): 3}
        assert ends.bounds([(topic, 1)]) == {(topic, 1): (0, 3)}
        with pytest.raises(LookupError, match="does not exist"):
            ends.of_topic(unique_name("no-such-topic"))
        with pytest.raises(KafkaException):
            ends.of([(topic, 7)])  # no such partition: the client is replaced
        produce_round_robin(bootstrap, topic, 3, 3)
        assert ends.of([(topic, 0), (topic, 2)]) == {(topic, 0): 5, (topic, 2): 4}
    finally:
        ends.close()
