"""A minimal service on the shared skeleton, as `python -m services.<name>` would run one.

    python -m tests.integration.procs.example_service --port P --source-topic A \
        --target-topic B --dead-letter D --group G

It consumes RecordIngested events from A and emits each one, caused by the input, to B.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from fastapi import APIRouter

from shared.events import Event, RecordIngested
from shared.events.codec import EventDecoder
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.consumer import ConsumerRunner, Emit, MessageInfo, Subscription
from shared.kafka.producer import EventProducer
from shared.service import ServiceRuntime, create_app, kafka_reachable, serve
from shared.settings import PlatformSettings
from shared.telemetry import configure_tracing


def forward_record(target_topic: str) -> Any:
    def handle(event: Event[Any], info: MessageInfo) -> list[Emit]:
        forwarded = Event.create(
            event.data, source="example", subject=event.subject, caused_by=event
        )
        return [Emit(target_topic, forwarded)]

    return handle


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--port", "--source-topic", "--target-topic", "--dead-letter", "--group"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()

    settings = PlatformSettings()
    configure_tracing("example-service", settings)
    producer = EventProducer(producer_config(settings, "example-service"))
    runner = ConsumerRunner(
        group_id=args.group,
        subscriptions=[
            Subscription(
                args.source_topic,
                EventDecoder([RecordIngested], settings.max_payload_bytes),
                forward_record(args.target_topic),
                emits={args.target_topic: args.target_topic},
            )
        ],
        consumer_config=consumer_config(settings, "example-service", args.group),
        producer=producer,
        dead_letter_topic=args.dead_letter,
    )
    runtime = ServiceRuntime(
        name="example",
        settings=settings,
        producer=producer,
        runners=[runner],
        readiness_checks={"kafka": kafka_reachable(settings)},
    )
    router = APIRouter()

    @router.get("/hello")
    def hello() -> dict[str, str]:
        return {"service": "example"}

    @router.get("/slow")
    def slow(seconds: float) -> dict[str, float]:
        time.sleep(seconds)
        return {"slept": seconds}

    serve(create_app(runtime, [router]), "127.0.0.1", int(args.port))


if __name__ == "__main__":
    main()
