"""The broker is standard Kafka: kcat, a plain librdkafka client, talks to it both ways."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from datetime import UTC, datetime

from confluent_kafka.admin import AdminClient

from shared.events import Event, RecordIngested
from shared.events.codec import EventDecoder
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.consumer import ConsumerRunner, MessageInfo, Subscription
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import topics, unique_name
from tests.waiting import wait_until

KCAT = shutil.which("kcat") or "kcat"


def an_event(n: int) -> Event:
    record = RecordIngested(
        dataset="kcat", entity=f"e-{n}", values={"n": n}, ingested_at=datetime.now(UTC)
    )
    return Event.create(record, source="kcat-test", subject=f"e-{n}")


def test_kcat_publishes_events_the_shared_consumer_handles(
    settings: PlatformSettings, admin: AdminClient, bootstrap: str
) -> None:
    topic, dead = unique_name("kcat-in"), unique_name("kcat-dlq")
    events = [an_event(n) for n in range(3)]
    lines = "".join(f"{e.subject}\t{e.model_dump_json()}\n" for e in events)
    with topics(admin, topic, dead):
        produced = subprocess.run(
            [KCAT, "-b", bootstrap, "-t", topic, "-P", "-K", "\t"],
            input=lines,
            text=True,
            capture_output=True,
            timeout=30,
        )
        assert produced.returncode == 0, produced.stderr

        seen: list[tuple[str, bytes | None]] = []

        def handle(event: Event, info: MessageInfo) -> None:
            seen.append((event.id, info.key))

        group = unique_name("kcat-group")
        runner = ConsumerRunner(
            group_id=group,
            subscriptions=[Subscription(topic, EventDecoder([RecordIngested], 10_000), handle)],
            consumer_config=consumer_config(settings, "kcat-test", group),
            producer=EventProducer(producer_config(settings, "kcat-test")),
            dead_letter_topic=dead,
        )
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,))
        thread.start()
        try:
            wait_until(lambda: len(seen) == 3, what="the consumer to handle kcat's three events")
        finally:
            stop.set()
            thread.join(30)
    assert seen == [(e.id, e.subject.encode()) for e in events]


def test_kcat_reads_what_the_shared_producer_wrote_with_its_headers(
    settings: PlatformSettings, admin: AdminClient, bootstrap: str
) -> None:
    topic = unique_name("kcat-out")
    events = [an_event(n) for n in range(3)]
    with topics(admin, topic):
        producer = EventProducer(producer_config(settings, "kcat-test"))
        producer.publish_confirmed(OutgoingMessage.for_event(topic, e) for e in events)
        consumed = subprocess.run(
            [KCAT, "-b", bootstrap, "-t", topic, "-C", "-o", "beginning", "-e", "-J"],
            text=True,
            capture_output=True,
            timeout=30,
        )
    assert consumed.returncode == 0, consumed.stderr
    messages = [json.loads(line) for line in consumed.stdout.splitlines() if line.startswith("{")]
    assert [json.loads(m["payload"])["id"] for m in messages] == [e.id for e in events]
    assert [m["key"] for m in messages] == [e.subject for e in events]
    headers = messages[0]["headers"]
    names = headers[0::2]
    assert "ce_type" in names
    assert headers[names.index("ce_type") * 2 + 1] == "mlops.RecordIngested"
