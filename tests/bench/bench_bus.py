"""Benchmark: the shared producer -> consumer path against a raw confluent-kafka loop.

    make bench-bus            (or: python -m tests.bench.bench_bus --events 50000)

Both sides send the same payloads to the same broker, each through a fresh topic, and are
timed from the first produce to the last message consumed. Prints events/s and the ratio.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from shared.events import Event, RecordIngested
from shared.events.codec import EventDecoder
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.consumer import ConsumerRunner, MessageInfo, Subscription
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.settings import PlatformSettings
from shared.telemetry import configure_tracing, shutdown_tracing

PARTITIONS = 3


def make_events(count: int) -> list[Event[RecordIngested]]:
    now = datetime.now(UTC)
    return [
        Event.create(
            RecordIngested(
                dataset="bench",
                entity=f"customer-{n % 1000}",
                values={"age": 20 + n % 50, "income": 1000.5 * (n % 90), "region": "north", "n": n},
                ingested_at=now,
            ),
            source="bench",
            subject=f"customer-{n % 1000}",
        )
        for n in range(count)
    ]


def fresh_topic(admin: AdminClient, label: str) -> str:
    name = f"bench-{label}-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(30)
    return name


@dataclass
class Timing:
    """Seconds spent producing, and consuming from the first message to the last."""

    produce_s: float
    consume_s: float

    @property
    def total_s(self) -> float:
        return self.produce_s + self.consume_s


def run_shared(settings: PlatformSettings, admin: AdminClient, events: list[Event[Any]]) -> Timing:
    topic, dead = fresh_topic(admin, "shared"), fresh_topic(admin, "shared-dlq")
    group = f"bench-{uuid.uuid4().hex[:8]}"
    done = threading.Event()
    handled = 0
    first_at = 0.0

    def handle(event: Event[Any], info: MessageInfo) -> None:
        nonlocal handled, first_at
        if handled == 0:
            first_at = time.perf_counter()
        handled += 1
        if handled >= len(events):
            done.set()

    runner = ConsumerRunner(
        group_id=group,
        subscriptions=[Subscription(topic, EventDecoder([RecordIngested], 1_048_576), handle)],
        consumer_config=consumer_config(settings, "bench", group),
        producer=EventProducer(producer_config(settings, "bench-dlq")),
        dead_letter_topic=dead,
    )
    producer = EventProducer(producer_config(settings, "bench"))
    started = time.perf_counter()
    producer.publish(OutgoingMessage.for_event(topic, e) for e in events)
    producer.flush()
    produced = time.perf_counter()
    runner.run(done)  # returns once the last event is handled and offsets are committed
    finished = time.perf_counter()
    admin.delete_topics([topic, dead])
    return Timing(produced - started, finished - first_at)


def run_raw(
    settings: PlatformSettings, admin: AdminClient, payloads: list[tuple[bytes, bytes]]
) -> Timing:
    topic = fresh_topic(admin, "raw")
    producer = Producer(producer_config(settings, "bench-raw"))
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"bench-raw-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    started = time.perf_counter()
    for key, value in payloads:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush()
    produced = time.perf_counter()
    consumer.subscribe([topic])
    received = 0
    first_at = 0.0
    while received < len(payloads):
        for message in consumer.consume(500, 0.5):
            if message.error() is None:
                if received == 0:
                    first_at = time.perf_counter()
                received += 1
    consumer.commit(asynchronous=False)
    finished = time.perf_counter()
    consumer.close()
    admin.delete_topics([topic])
    return Timing(produced - started, finished - first_at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    settings = PlatformSettings()
    configure_tracing("bench-bus", settings)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    events = make_events(args.events)
    payloads = [((e.subject or "").encode(), e.to_json_bytes()) for e in events]
    size = sum(len(v) for _, v in payloads) / len(payloads)
    shared_runs, raw_runs = [], []
    for _ in range(args.rounds):
        raw_runs.append(run_raw(settings, admin, payloads))
        shared_runs.append(run_shared(settings, admin, events))
    shutdown_tracing()
    raw, shared = _median(raw_runs), _median(shared_runs)
    n = args.events
    print(
        f"bench-bus: {n} events of ~{size:.0f} bytes, {PARTITIONS} partitions, "
        f"median of {args.rounds} rounds (consumer group join excluded)"
    )
    print(f"{'path':36} {'produce/s':>10} {'consume/s':>10} {'end-to-end/s':>13}")
    for label, timing in (
        ("raw confluent-kafka loop", raw),
        ("shared producer -> consumer runner", shared),
    ):
        print(
            f"{label:36} {n / timing.produce_s:>10.0f} {n / timing.consume_s:>10.0f} "
            f"{n / timing.total_s:>13.0f}"
        )
    print(f"ratio shared/raw = {raw.total_s / shared.total_s:.2f} (target >= 0.70)")


def _median(runs: list[Timing]) -> Timing:
    ordered = sorted(runs, key=lambda timing: timing.total_s)
    return ordered[len(ordered) // 2]


if __name__ == "__main__":
    main()
