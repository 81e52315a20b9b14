"""Poison messages go to the dead-letter topic with their reason; the consumer moves on."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from shared.events import Event, RecordIngested
from shared.events.codec import EventDecoder
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.consumer import ConsumerRunner, MessageInfo, RetryPolicy, Subscription
from shared.kafka.producer import EventProducer
from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import read_all, topics, unique_name
from tests.waiting import wait_until

LIMIT = 4_096


def valid(n: int, **values: object) -> bytes:
    record = RecordIngested(
        dataset="bus-test",
        entity=f"e-{n}",
        values={"n": n, **values},
        ingested_at=datetime.now(UTC),
    )
    return Event.create(record, source="test", subject=f"e-{n}").to_json_bytes()


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batch-handler"])
def test_poison_messages_are_dead_lettered_with_reasons_and_valid_ones_all_processed(
    settings: PlatformSettings, admin: AdminClient, bootstrap: str, batched: bool
) -> None:
    """With a batch handler too: a batch that fails is handled again message by message, so
    retries and dead letters stay per message."""
    source, dead = unique_name("poison-in"), unique_name("poison-dlq")
    with topics(admin, source, dead):
        sequence = [
            ("valid", valid(1)),
            ("invalid_json", b"{this is not json"),
            ("valid", valid(2)),
            ("schema_violation", b'{"specversion": "1.0", "source": "s", "data": {"x": 1}}'),
            ("valid", valid(3)),
            ("payload_too_large", valid(99, padding="x" * (LIMIT * 2))),
            ("valid", valid(4)),
            ("handler_failed", valid(5, explode=True)),
            ("valid", valid(6)),
        ]
        raw = Producer({"bootstrap.servers": bootstrap})
        for _, value in sequence:
            raw.produce(source, value=value)
        assert raw.flush(10) == 0

        handled: list[int] = []
        attempts: dict[int, int] = {}

        def record(event: Event, info: MessageInfo) -> None:
            n = event.data.values["n"]
            attempts[n] = attempts.get(n, 0) + 1
            if event.data.values.get("explode"):
                raise RuntimeError("the handler cannot cope with this record")
            handled.append(n)

        batch_calls: list[int] = []

        def record_all(items: Sequence[tuple[Event, MessageInfo]]) -> list[None]:
            batch_calls.append(len(items))
            if any(event.data.values.get("explode") for event, _ in items):
                raise RuntimeError("one record of the batch cannot be handled")
            return [record(event, info) for event, info in items]

        group = unique_name("poison-group")
        runner = ConsumerRunner(
            group_id=group,
            subscriptions=[
                Subscription(
                    source,
                    EventDecoder([RecordIngested], LIMIT),
                    record,
                    batch_handler=record_all if batched else None,
                )
            ],
            consumer_config=consumer_config(settings, "poison-test", group),
            producer=EventProducer(producer_config(settings, "poison-test")),
            dead_letter_topic=dead,
            retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.01),
        )
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,))
        thread.start()
        try:
            wait_until(lambda: len(handled) >= 5, what="the five valid records to be handled")
            letters = read_all(bootstrap, dead, expected=4)
        finally:
            stop.set()
            thread.join(30)

    assert handled == [1, 2, 3, 4, 6]
    assert bool(batch_calls) == batched
    assert attempts[5] == 3, "a failing handler is retried before its message is dead-lettered"
    poison = [(i, reason, value) for i, (reason, value) in enumerate(sequence) if reason != "valid"]
    assert len(letters) == len(poison)
    for letter, (offset, reason, value) in zip(letters, poison, strict=True):
        headers = {k: v.decode() for k, v in letter.headers()}
        assert headers["dlq.reason"] == reason
        assert headers["dlq.original.topic"] == source
        assert headers["dlq.original.partition"] == "0"
        assert headers["dlq.original.offset"] == str(offset)
        assert headers["dlq.consumer.group"] == group
        assert headers["dlq.error"]
        assert letter.value() == value
