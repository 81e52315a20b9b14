"""faust-streaming (aiokafka) on our broker: an agent and a changelog-backed table process
messages, and a worker killed with SIGKILL recovers the table from its changelog and loses
no message after the restart (the feature store's faust set-up, flow-control fix included)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from services.feature_store.adapters.streaming import app_id, changelog_topic
from tests.integration.kafka_helpers import committed_total, create_topic, unique_name
from tests.waiting import wait_until

PARTITIONS = 3
KEYS = [f"k{n}" for n in range(6)]


@pytest.fixture
def probe_topic(admin: AdminClient) -> Iterator[tuple[str, str]]:
    namespace = unique_name("fsfaust").replace("-", "")
    topic = create_topic(admin, f"{namespace}.probe", partitions=PARTITIONS)
    try:
        yield namespace, topic
    finally:
        admin.delete_topics([topic, changelog_topic(namespace)], operation_timeout=10)
        admin.delete_consumer_groups([app_id(namespace)])


def produce(bootstrap: str, topic: str, values: range) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for value in values:
        producer.produce(topic, key=KEYS[value % len(KEYS)], value=str(value))
    assert producer.flush(30) == 0


def start_probe(env: dict[str, str], namespace: str, topic: str, out: Path) -> subprocess.Popen:
    log = out.with_suffix(".log").open("a")
    return subprocess.Popen(
        [
            sys.executable, "-m", "tests.integration.procs.feature_store_faust_probe",
            "--namespace", namespace, "--topic", topic, "--out", str(out),
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def applied(out: Path) -> list[tuple[int, int, str, int]]:
    if not out.exists():
        return []
    lines = [line.split() for line in out.read_text().splitlines()]
    return [(int(p), int(o), key, int(total)) for p, o, key, total in lines]


def changelog_messages(bootstrap: str, namespace: str) -> int:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("probe-read")})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(changelog_topic(namespace), p), 10)[1]
            for p in range(PARTITIONS)
        )
    finally:
        consumer.close()


def test_a_killed_faust_worker_recovers_its_table_from_the_changelog_and_loses_nothing(
    probe_topic: tuple[str, str], bootstrap: str, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    namespace, topic = probe_topic
    out = tmp_path / "applied.txt"
    produce(bootstrap, topic, range(0, 30))
    first = start_probe(subprocess_env, namespace, topic, out)
    try:
        wait_until(lambda: len(applied(out)) >= 30, what="30 messages applied", timeout_s=90)
        wait_until(
            lambda: committed_total(bootstrap, app_id(namespace), topic, PARTITIONS) == 30,
            what="faust to commit the 30 offsets",
            timeout_s=30,
            interval_s=0.5,
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert changelog_messages(bootstrap, namespace) >= len(KEYS)

    produce(bootstrap, topic, range(30, 60))
    second = start_probe(subprocess_env, namespace, topic, out)
    try:
        wait_until(lambda: len(applied(out)) >= 60, what="60 messages applied", timeout_s=90)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
    log = out.with_suffix(".log").read_text()[-3000:]
    assert second.returncode == 0, log

    rows = applied(out)
    positions = [(partition, offset) for partition, offset, _, _ in rows]
    assert len(positions) == len(set(positions)) == 60, "every message once, none lost"
    final = {key: total for _, _, key, total in rows}
    expected = {key: sum(v for v in range(60) if KEYS[v % len(KEYS)] == key) for key in KEYS}
    assert final == expected, "totals after restart must continue the recovered ones"
