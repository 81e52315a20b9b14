"""The streaming engine's own floor in `make bench-data`: a bare faust-streaming relay.

    python -m tests.bench.faust_relay --source A --target B --app-id ID

Built like the feature store's stream: one faust agent takes batches of up to 500 records
within 0.1 s and publishes them through a confluent-kafka producer. It forwards every message
from A to B (same key, same value) until SIGTERM: no decoding, no state, no work, and unlike
the feature store it does not wait for the broker's confirmation before acknowledging a batch,
so it is an upper bound. The feature store runs on this engine, so its throughput cannot
exceed this relay's on the same machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

import faust
from confluent_kafka import Producer

from shared.settings import PlatformSettings

BATCH_MAX = 500
WITHIN_S = 0.1


def relay_app(bootstrap: str, app_id: str, datadir: Path) -> faust.App:
    return faust.App(
        app_id,
        broker=[f"kafka://{host.strip()}" for host in bootstrap.split(",")],
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        stream_wait_empty=False,
        producer_acks=-1,
        autodiscover=False,
        datadir=str(datadir),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--app-id", required=True)
    args = parser.parse_args()
    bootstrap = PlatformSettings().kafka_bootstrap_servers
    with TemporaryDirectory() as datadir:
        app = relay_app(bootstrap, args.app_id, Path(datadir))
        source = app.topic(args.source, key_type=bytes, value_type=bytes)
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})

        @app.agent(source)
        async def forward(stream: faust.StreamT) -> None:
            async for events in stream.noack_take(BATCH_MAX, within=WITHIN_S):
                for event in events:
                    producer.produce(args.target, event.message.value, event.message.key)
                producer.poll(0)
                for event in events:
                    await stream.ack(event)

        sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
        try:
            app.main()
        finally:
            producer.flush(10)


if __name__ == "__main__":
    main()
