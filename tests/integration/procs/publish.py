"""A separate process that publishes events through the shared producer, in one traced span.

    python -m tests.integration.procs.publish --topic T --count N --service NAME
Prints one JSON line: {"trace_id": "...", "event_ids": [...]}.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from opentelemetry import trace

from shared.events import Event, RecordIngested
from shared.kafka.config import producer_config
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.settings import PlatformSettings
from shared.telemetry import configure_tracing, shutdown_tracing


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--service", required=True)
    args = parser.parse_args()

    settings = PlatformSettings()
    configure_tracing(args.service, settings)
    producer = EventProducer(producer_config(settings, args.service))
    events = [
        Event.create(
            RecordIngested(
                dataset="bus-test", entity=f"e-{n}", values={"n": n}, ingested_at=datetime.now(UTC)
            ),
            source=args.service,
            subject=f"e-{n}",
        )
        for n in range(args.count)
    ]
    with trace.get_tracer(args.service).start_as_current_span("publish batch") as span:
        producer.publish_confirmed(OutgoingMessage.for_event(args.topic, e) for e in events)
        trace_id = format(span.get_span_context().trace_id, "032x")
    shutdown_tracing()
    print(json.dumps({"trace_id": trace_id, "event_ids": [e.id for e in events]}), flush=True)


if __name__ == "__main__":
    main()
