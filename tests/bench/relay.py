"""The baseline of `make bench-data`: a bare confluent-kafka consume -> produce relay.

    python -m tests.bench.relay --source A --target B --group G

Copies every message from A to B (same key, same value) until SIGTERM; no decoding at all.
"""

from __future__ import annotations

import argparse
import signal

from confluent_kafka import Consumer, Producer

from shared.settings import PlatformSettings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--group", required=True)
    args = parser.parse_args()
    bootstrap = PlatformSettings().kafka_bootstrap_servers
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": args.group, "auto.offset.reset": "earliest"}
    )
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    consumer.subscribe([args.source])
    while running:
        for message in consumer.consume(500, 0.2):
            if message.error() is None:
                producer.produce(args.target, message.value(), message.key())
        producer.poll(0)
    producer.flush(10)
    consumer.close()


if __name__ == "__main__":
    main()
