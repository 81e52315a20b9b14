"""Topic replay against the real broker: exactly the range, as it was, into another namespace;
resumable without duplicates; production untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from shared.cli.ranges import Checkpoint, parse_position, topic_names
from shared.cli.replay import Replayer, ReplayRequest
from shared.kafka.topics import TopicCatalog
from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import unique_name
from tests.services import namespace_topics

PER_PARTITION = 400
PARTITIONS = TopicCatalog.load()["data.raw"].partitions
BASE_MS = 1_700_000_000_000


@dataclass(frozen=True)
class Stored:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int

    def content(self) -> tuple[object, ...]:
        return (self.partition, self.key, self.value, self.headers, self.timestamp)


def namespace() -> str:
    return unique_name("rp").replace("-", "")


def fill(bootstrap: str, topic: str) -> None:
    """PER_PARTITION messages on every partition, each with its own key, headers and time."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(PER_PARTITION):
        for p in range(PARTITIONS):
            producer.produce(
                topic,
                json.dumps({"n": i, "p": p}).encode(),
                f"key-{p}-{i % 7}".encode(),
                partition=p,
                timestamp=BASE_MS + i * 1000,
                headers=[
                    ("traceparent", f"00-{i:032x}-{p:016x}-01".encode()),
                    ("n", str(i).encode()),
                ],
            )
    assert producer.flush(30) == 0


def read_range(bootstrap: str, topic: str) -> list[Stored]:
    """Every message of a topic, up to its current end, ordered by partition and offset."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("rd"),
            "enable.partition.eof": True,
        }
    )
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)
            for p in range(PARTITIONS)
        }
        wanted = {p for p, (low, high) in ends.items() if high > low}
        consumer.assign([TopicPartition(topic, p, ends[p][0]) for p in sorted(wanted)])
        found: list[Stored] = []
        while wanted:
            left = sum(ends[p][1] for p in wanted) - sum(1 for s in found if s.partition in wanted)
            for m in consumer.consume(max(1, min(1000, left)), 5):
                if m.error() is not None:
                    continue
                found.append(
                    Stored(m.partition(), m.offset(), m.key(), m.value(),
                           tuple(m.headers() or ()), m.timestamp()[1])
                )  # fmt: skip
                if m.offset() + 1 >= ends[m.partition()][1]:
                    wanted.discard(m.partition())
    finally:
        consumer.close()
    return sorted(found, key=lambda s: (s.partition, s.offset))


def end_offsets(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("wm")})
    try:
        return {
            (topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
            for topic in topics
            for p in range(TopicCatalog.load()[topic.split(".", 1)[1]].partitions)
        }
    finally:
        consumer.close()


@pytest.fixture
def source(admin: AdminClient, bootstrap: str) -> Iterator[str]:
    ns = namespace()
    with namespace_topics(admin, ns):
        fill(bootstrap, f"{ns}.data.raw")
        yield ns


@pytest.fixture
def target(admin: AdminClient) -> Iterator[str]:
    ns = namespace()
    yield ns
    catalog = TopicCatalog.load()
    admin.delete_topics(
        [spec.full_name(ns) for spec in catalog.specs.values()], operation_timeout=10
    )


def request(src: str, into: str, start: str, end: str, limit: int | None = None) -> ReplayRequest:
    names = topic_names("data.raw", src, into, set(TopicCatalog.load().specs))
    return ReplayRequest(names, parse_position(start), parse_position(end), start, end, limit)


def replayer(src: str, tmp_path: Path) -> Replayer:
    return Replayer(PlatformSettings(namespace=src), tmp_path / "checkpoints")


def test_a_middle_range_arrives_exactly_as_it_was_and_production_is_untouched(
    source: str, target: str, bootstrap: str, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    catalog_topics = [spec.full_name(source) for spec in TopicCatalog.load().specs.values()]
    before = end_offsets(bootstrap, catalog_topics)
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "replay", "--topic", "data.raw", "--into", target,
         "--from", "100", "--to", "300", "--checkpoint-dir", str(tmp_path)],
        env={**subprocess_env, "MLOPS_NAMESPACE": source}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"replayed {200 * PARTITIONS} messages" in " ".join(result.stderr.split())

    expected = [s for s in read_range(bootstrap, f"{source}.data.raw") if 100 <= s.offset < 300]
    copied = read_range(bootstrap, f"{target}.data.raw")
    assert [s.content() for s in copied] == [s.content() for s in expected]
    assert [s.offset for s in copied if s.partition == 0] == list(range(200))
    assert end_offsets(bootstrap, catalog_topics) == before, "production topics unchanged"
    every_target_topic = TopicCatalog.load().specs.values()
    assert len(end_offsets(bootstrap, [s.full_name(target) for s in every_target_topic])) > 0


def test_a_time_range_selects_messages_by_their_timestamps_on_every_partition(
    source: str, target: str, bootstrap: str, tmp_path: Path
) -> None:
    start, end = "2023-11-14T22:15:00Z", "2023-11-14T22:16:00Z"  # 1_700_000_100_000 + 60 s
    low, high = 1_700_000_100_000, 1_700_000_160_000
    result = replayer(source, tmp_path).run(request(source, target, start, end), target)
    expected = [s for s in read_range(bootstrap, f"{source}.data.raw") if low <= s.timestamp < high]
    assert result.copied == len(expected) == 60 * PARTITIONS
    copied = read_range(bootstrap, f"{target}.data.raw")
    assert [s.content() for s in copied] == [s.content() for s in expected]


def test_an_interrupted_replay_resumes_where_it_stopped_without_duplicates(
    source: str, target: str, bootstrap: str, tmp_path: Path
) -> None:
    engine = replayer(source, tmp_path)
    runs = []
    while True:
        result = engine.run(request(source, target, "earliest", "end", limit=250), target)
        runs.append(result.copied)
        if result.checkpoint.complete:
            break
        assert len(runs) < 10, "the replay never completed"
    assert runs[0] == 250 and sum(runs) == PER_PARTITION * PARTITIONS
    copied = read_range(bootstrap, f"{target}.data.raw")
    source_messages = read_range(bootstrap, f"{source}.data.raw")
    assert [s.content() for s in copied] == [s.content() for s in source_messages]
    again = engine.run(request(source, target, "earliest", "end"), target)
    assert again.copied == 0, "a complete replay run again copies nothing"


def test_writes_confirmed_after_the_last_checkpoint_are_not_copied_again(
    source: str, target: str, bootstrap: str, tmp_path: Path
) -> None:
    """A crash after Kafka confirmed writes but before the checkpoint was saved: simulated by
    putting back an older checkpoint. The resume finds those writes on the target and skips
    them."""
    engine = replayer(source, tmp_path)
    first = engine.run(request(source, target, "0", "end", limit=300), target)
    path = tmp_path / "checkpoints" / f"{target}.data.raw.json"
    older = path.read_bytes()
    second = engine.run(request(source, target, "0", "end", limit=300), target)
    assert (first.copied, second.copied) == (300, 300)
    path.write_bytes(older)  # the second run's progress was "lost"
    assert Checkpoint.load(path).replayed == 300

    last = engine.run(request(source, target, "0", "end"), target)
    assert last.checkpoint.complete
    assert last.copied == PER_PARTITION * PARTITIONS - 600
    copied = read_range(bootstrap, f"{target}.data.raw")
    assert len(copied) == PER_PARTITION * PARTITIONS, "nothing copied twice"
    source_messages = read_range(bootstrap, f"{source}.data.raw")
    assert [s.content() for s in copied] == [s.content() for s in source_messages]


def test_a_different_range_into_the_same_target_is_refused_until_restart(
    source: str, target: str, tmp_path: Path
) -> None:
    engine = replayer(source, tmp_path)
    engine.run(request(source, target, "0", "10", limit=5), target)
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "replay", "--topic", "data.raw", "--into", target,
         "--from", "0", "--to", "20", "--checkpoint-dir", str(tmp_path / "checkpoints")],
        env={**os.environ, "MLOPS_NAMESPACE": source}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "--restart" in result.stderr and "Traceback" not in result.stderr
