"""Benchmark: `mlops replay` throughput next to a raw confluent-kafka consume of the same range.

    make bench-replay            (or: python -m tests.bench.bench_replay --events 200000)

One source topic (3 partitions) is filled with small messages carrying a key, a traceparent
header and a timestamp. Each round reads the whole range twice: a bare consume (batches, no
processing) and a replay into a fresh namespace (consume, produce with acks=all and
idempotence to the same partition, flush, checkpoint). Both are timed from the moment they
start reading to the last message read (raw) or the last write confirmed (replay); for the
native copier that includes starting its processes. Target: replay at 0.5x the raw consume or
better. `--engine python` measures the Python copy loop that replay falls back to.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from shared.cli.ranges import EARLIEST, END, topic_names
from shared.cli.replay import (
    CONSUME_BATCH,
    ENGINE_LABELS,
    Engine,
    Replayer,
    ReplayRequest,
    end_offsets,
    fast_consumer_config,
)
from shared.kafka.config import client_config, producer_config
from shared.settings import PlatformSettings

PARTITIONS = 3
TARGET = 0.5
DEFAULT_WORKERS = os.cpu_count() or 1  # as `mlops replay` by default


def fill(settings: PlatformSettings, topic: str, events: int) -> None:
    producer = Producer({**producer_config(settings, "bench-replay-fill"), "linger.ms": 20})
    start_ms = int(time.time() * 1000) - events
    for n in range(events):
        value = b'{"dataset":"bench","entity":"customer-%d","values":{"n":%d,"x":1.5}}' % (
            n % 1000,
            n,
        )
        while True:
            try:
                producer.produce(
                    topic,
                    value,
                    b"customer-%d" % (n % 1000),
                    partition=n % PARTITIONS,
                    timestamp=start_ms + n,
                    headers=[("traceparent", b"00-%032x-%016x-01" % (n, n))],
                )
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0, "the source topic was not filled"


def raw_consume(settings: PlatformSettings, topic: str, ends: dict[int, int]) -> tuple[int, float]:
    """Messages read and seconds from assign() to the last message of the range."""
    consumer = Consumer(fast_consumer_config(settings, "bench-replay-raw"))
    open_partitions = {p for p, end in ends.items() if end > 0}
    count = 0
    started = time.perf_counter()
    consumer.assign([TopicPartition(topic, p, 0) for p in sorted(open_partitions)])
    while open_partitions:
        for message in consumer.consume(CONSUME_BATCH, 0.5):
            if message.error() is not None:
                continue
            count += 1
            if message.offset() + 1 >= ends[message.partition()]:
                open_partitions.discard(message.partition())
    elapsed = time.perf_counter() - started
    consumer.close()
    return count, elapsed


def replay_once(
    settings: PlatformSettings, topic: str, checkpoints: Path, workers: int, engine: Engine
) -> tuple[int, float, float, str, str]:
    """Messages copied, seconds of the copy, seconds including planning, target topic, engine."""
    into = f"benchreplay{uuid.uuid4().hex[:8]}"
    names = topic_names(topic, settings.namespace, into, set())
    request = ReplayRequest(names, EARLIEST, END, EARLIEST, END)
    started = time.perf_counter()
    result = Replayer(settings, checkpoints, engine=engine).run(request, into, workers=workers)
    total = time.perf_counter() - started
    assert result.checkpoint.complete, "the replay did not complete"
    return result.copied, result.seconds, total, names.target, result.engine


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_replay")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--engine", choices=["auto", "native", "python"], default="auto")
    args = parser.parse_args()
    settings = PlatformSettings(namespace=f"benchsrc{uuid.uuid4().hex[:8]}")
    admin = AdminClient(client_config(settings, "bench-replay"))
    source = f"bench-replay-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(source, PARTITIONS, 1)])[source].result(30)
    created = [source]
    try:
        fill(settings, source, args.events)
        ends = end_offsets(admin, source, list(range(PARTITIONS)))
        raw_rates, replay_rates, replay_totals = [], [], []
        with TemporaryDirectory() as checkpoints:
            for _ in range(args.rounds):
                count, seconds = raw_consume(settings, source, ends)
                assert count == args.events, f"raw consume read {count} of {args.events}"
                raw_rates.append(count / seconds)
                copied, copy_s, total_s, target, engine = replay_once(
                    settings, source, Path(checkpoints), args.workers, args.engine
                )
                created.append(target)
                assert copied == args.events, f"replay copied {copied} of {args.events}"
                replay_rates.append(copied / copy_s)
                replay_totals.append(copied / total_s)
        report(
            args.events, args.rounds, args.workers, engine, raw_rates, replay_rates, replay_totals
        )
    finally:
        admin.delete_topics(created, operation_timeout=30)


def report(
    events: int,
    rounds: int,
    workers: int,
    engine: str,
    raw: list[float],
    replay: list[float],
    replay_total: list[float],
) -> None:
    raw_rate, replay_rate = statistics.median(raw), statistics.median(replay)
    print(
        f"bench-replay: {events} messages (~90 bytes, key, traceparent header), "
        f"{PARTITIONS} partitions, median of {rounds} rounds"
    )
    print(f"{'path':60}{'events/s':>10}")
    print(f"{'raw confluent-kafka consume of the range':60}{raw_rate:>10,.0f}")
    label = f"mlops replay: {ENGINE_LABELS[engine]}, {workers} process(es)"
    print(f"{label:60}{replay_rate:>10,.0f}")
    print(
        f"{'  the same, including planning (offsets, topics)':60}{statistics.median(replay_total):>10,.0f}"
    )
    ratio = replay_rate / raw_rate
    verdict = "met" if ratio >= TARGET else "MISSED"
    print(f"ratio replay/raw = {ratio:.2f} (target >= {TARGET:.2f}: {verdict})")


if __name__ == "__main__":
    main()
