"""A tiny faust worker on the feature store's faust set-up: an agent summing each key's values
in a table backed by its changelog topic.

    python -m tests.integration.procs.feature_store_faust_probe --namespace NS --topic T \
        --out FILE

Each message's value is an integer; after applying one it appends
"<partition> <offset> <key> <running total>" to FILE; like the feature store, it skips a
message its table state has already counted (faust may hand one over again after a restart).
SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import logging

import faust
from confluent_kafka.admin import AdminClient

from services.feature_store.adapters.streaming import (
    ensure_changelog,
    partition_count,
    streaming_app,
)
from shared.settings import PlatformSettings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    settings = PlatformSettings()
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    partitions = partition_count(admin, args.topic)
    ensure_changelog(admin, args.namespace, partitions, replication=1)
    app = streaming_app(args.namespace, settings.kafka_bootstrap_servers, replication=1)
    topic = app.topic(args.topic, key_type=bytes, value_type=bytes)
    totals = app.Table(
        "entity-state", default=None, partitions=partitions, key_type=str, value_type=str
    )
    out = open(args.out, "a", buffering=1)  # noqa: SIM115 - open for the worker's lifetime

    async def count(stream: faust.StreamT) -> None:
        async for event in stream.events():
            key, message = event.key.decode(), event.message
            # As the feature store does: the state remembers the last offset it counted, so a
            # message faust hands over again (a redelivery after a restart) is not counted twice.
            applied = f"{key}@{message.partition}"
            if int(totals.get(applied) or "-1") >= message.offset:
                continue
            total = int(totals.get(key) or "0") + int(event.value)
            totals[key] = str(total)
            totals[applied] = str(message.offset)
            out.write(f"{message.partition} {message.offset} {key} {total}\n")

    app.agent(topic, name="count")(count)
    faust.Worker(
        app, loglevel="INFO", quiet=True, redirect_stdouts=False
    ).execute_from_commandline()


if __name__ == "__main__":
    main()
