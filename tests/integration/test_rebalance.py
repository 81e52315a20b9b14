"""A second consumer joining the group takes partitions over without losing any event."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from confluent_kafka.admin import AdminClient

from shared.events import Event, RecordIngested
from shared.events.codec import EventDecoder
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.consumer import ConsumerRunner, MessageInfo, Subscription
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import committed_total, topics, unique_name
from tests.waiting import wait_until

EVENTS, PARTITIONS = 2_000, 4


def test_rebalance_mid_stream_loses_nothing_and_commits_only_processed_offsets(
    settings: PlatformSettings, admin: AdminClient, bootstrap: str
) -> None:
    topic, dead, group = unique_name("reb-in"), unique_name("reb-dlq"), unique_name("reb-group")
    handled: dict[str, list[int]] = {"a": [], "b": []}

    def slow_handler(name: str) -> Any:
        def handle(event: Event[Any], info: MessageInfo) -> None:
            time.sleep(0.005)
            handled[name].append(event.data.values["n"])

        return handle

    def runner(name: str) -> ConsumerRunner:
        decoder = EventDecoder([RecordIngested], 10_000)
        return ConsumerRunner(
            group_id=group,
            subscriptions=[Subscription(topic, decoder, slow_handler(name))],
            consumer_config=consumer_config(settings, f"reb-{name}", group),
            producer=EventProducer(producer_config(settings, f"reb-{name}")),
            dead_letter_topic=dead,
            batch_size=50,
        )

    with topics(admin, topic, partitions=PARTITIONS), topics(admin, dead):
        now = datetime.now(UTC)
        EventProducer(producer_config(settings, "reb")).publish_confirmed(
            OutgoingMessage.for_event(
                topic,
                Event.create(
                    RecordIngested(dataset="r", values={"n": n}, ingested_at=now),
                    source="reb",
                    subject=str(n),
                ),
            )
            for n in range(EVENTS)
        )
        stop = threading.Event()
        first = threading.Thread(target=runner("a").run, args=(stop,))
        first.start()
        wait_until(lambda: len(handled["a"]) >= 300, what="consumer a to get going")
        second = threading.Thread(target=runner("b").run, args=(stop,))
        second.start()
        try:
            wait_until(
                lambda: set(handled["a"]) | set(handled["b"]) >= set(range(EVENTS)),
                what="every event to be handled by a or b",
                timeout_s=120,
            )
            wait_until(lambda: handled["b"], what="consumer b to receive partitions")
        finally:
            stop.set()
            first.join(30)
            second.join(30)
        assert committed_total(bootstrap, group, topic, PARTITIONS) == EVENTS
