"""A separate consumer process built on the shared consumer runner.

    python -m tests.integration.procs.consume --topic T --group G --dead-letter D \
        --service NAME (--record FILE | --effects-table TABLE) [--stop-after N]
        [--slow-n N --slow-s S --slow-marker FILE]

--record appends one JSON line per handled event with the trace id the handler ran in.
--effects-table applies one row per event to that SQL table, guarded by IdempotentEffects,
so redeliveries after a crash never apply an effect twice. --slow-n makes the handler of the
event whose value n is N take S seconds, once across processes (the first to create the
marker file): a handler slower than max.poll.interval.ms. SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import trace
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert

from shared.events import Event, RecordIngested
from shared.events.codec import EventDecoder
from shared.idempotency import IdempotentEffects
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.consumer import ConsumerRunner, Handler, MessageInfo, Subscription
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.settings import PlatformSettings
from shared.telemetry import configure_tracing, shutdown_tracing


def publish_numbered(settings: PlatformSettings, topic: str, count: int, source: str) -> None:
    """`count` RecordIngested events whose value n is 0..count-1, each keyed by its n: what
    the effect handler turns into one row each."""
    producer = EventProducer(producer_config(settings, source))
    now = datetime.now(UTC)
    try:
        producer.publish_confirmed(
            OutgoingMessage.for_event(
                topic,
                Event.create(
                    RecordIngested(dataset=source, entity=str(n), values={"n": n}, ingested_at=now),
                    source=source,
                    subject=str(n),
                ),
            )
            for n in range(count)
        )
    finally:
        producer.close()


def effects_table(name: str) -> Table:
    return Table(
        name,
        MetaData(),
        Column("row_id", Integer, primary_key=True, autoincrement=True),
        Column("event_id", String(200), nullable=False),
        Column("n", Integer, nullable=False),
    )


def recording_handler(path: Path) -> Handler:
    def handle(event: Event[Any], info: MessageInfo) -> None:
        context = trace.get_current_span().get_span_context()
        line = {"event_id": event.id, "trace_id": format(context.trace_id, "032x")}
        with path.open("a") as out:
            out.write(json.dumps(line) + "\n")

    return handle


def effect_handler(settings: PlatformSettings, table_name: str, group: str) -> Handler:
    engine = create_engine(settings.database_url_or_sqlite(), pool_pre_ping=True)
    table = effects_table(table_name)
    table.metadata.create_all(engine)
    effects = IdempotentEffects(engine)

    def handle(event: Event[Any], info: MessageInfo) -> None:
        with effects.once(consumer=group, event_id=event.id) as connection:
            if connection is not None:
                connection.execute(
                    insert(table).values(event_id=event.id, n=event.data.values["n"])
                )

    return handle


def take_long_once(marker: Path, seconds: float) -> None:
    try:
        marker.open("x").close()
    except FileExistsError:
        return
    time.sleep(seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--dead-letter", required=True)
    parser.add_argument("--service", required=True)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--record", type=Path)
    target.add_argument("--effects-table")
    parser.add_argument("--stop-after", type=int, default=0)
    parser.add_argument("--slow-n", type=int, default=None)
    parser.add_argument("--slow-s", type=float, default=0.0)
    parser.add_argument("--slow-marker", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    settings = PlatformSettings()
    configure_tracing(args.service, settings)
    if args.record:
        inner = recording_handler(args.record)
    else:
        inner = effect_handler(settings, args.effects_table, args.group)
    stop = threading.Event()
    handled = 0

    def handle(event: Event[Any], info: MessageInfo) -> None:
        nonlocal handled
        if args.slow_n is not None and event.data.values.get("n") == args.slow_n:
            take_long_once(args.slow_marker, args.slow_s)
        inner(event, info)
        handled += 1
        if args.stop_after and handled >= args.stop_after:
            stop.set()

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runner = ConsumerRunner(
        group_id=args.group,
        subscriptions=[
            Subscription(
                args.topic, EventDecoder([RecordIngested], settings.max_payload_bytes), handle
            )
        ],
        consumer_config=consumer_config(settings, args.service, args.group),
        producer=EventProducer(producer_config(settings, args.service)),
        dead_letter_topic=args.dead_letter,
    )
    runner.run(stop)
    shutdown_tracing()


if __name__ == "__main__":
    main()
