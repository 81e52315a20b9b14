"""Committed offsets read from the real broker by a consumer that carries the group's id but
never joins it (shared.kafka.committed), so the group's members and their assignment are
untouched: how far validation's group has handled the raw topic (training), and each group's
lag on the console's loop page."""

from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from services.console.adapters.kafka import KafkaAdmin
from services.training.adapters.positions import KafkaPositions, Upstream
from tests.integration.kafka_helpers import create_topic, unique_name
from tests.waiting import wait_until

PARTITIONS = 3


def test_the_upstream_group_s_committed_offsets_are_read_without_joining_it(
    admin: AdminClient, bootstrap: str
) -> None:
    raw = create_topic(admin, unique_name("positions-raw"), PARTITIONS)
    validated = create_topic(admin, unique_name("positions-validated"), PARTITIONS)
    group = unique_name("positions-group")
    producer = Producer({"bootstrap.servers": bootstrap})
    for n in range(30):
        producer.produce(raw, f"{n}".encode(), partition=n % PARTITIONS)
    assert producer.flush(30) == 0

    member = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    positions = KafkaPositions(
        {"bootstrap.servers": bootstrap}, [validated], Upstream(raw, validated, group)
    )
    try:
        assert positions.upstream_handled() == {(raw, p): 0 for p in range(PARTITIONS)}
        committed = {0: 4, 1: 7, 2: 10}
        member.subscribe([raw])
        wait_until(lambda: member.poll(0.5) is not None or bool(member.assignment()),
                   what="the member to be assigned")  # fmt: skip
        member.commit(
            offsets=[TopicPartition(raw, p, o) for p, o in committed.items()], asynchronous=False
        )
        assert positions.upstream_handled() == {(raw, p): o for p, o in committed.items()}
        [described] = admin.describe_consumer_groups([group]).values()
        assert len(described.result(timeout=10).members) == 1, "the reader joined the group"
    finally:
        positions.close()
        member.close()


def test_the_console_s_lag_of_a_group_is_its_end_offsets_minus_its_commits(
    admin: AdminClient, bootstrap: str
) -> None:
    namespace = unique_name("lag")
    raw = create_topic(admin, f"{namespace}.data.raw", PARTITIONS)
    group = f"{namespace}.validation"
    producer = Producer({"bootstrap.servers": bootstrap})
    for n in range(30):
        producer.produce(raw, f"{n}".encode(), partition=n % PARTITIONS)
    assert producer.flush(30) == 0
    member = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    kafka = KafkaAdmin({"bootstrap.servers": bootstrap}, namespace, timeout_s=10)
    try:
        member.subscribe([raw])
        wait_until(lambda: member.poll(0.5) is not None or bool(member.assignment()),
                   what="the member to be assigned")  # fmt: skip
        member.commit(
            offsets=[TopicPartition(raw, p, o) for p, o in {0: 4, 1: 7, 2: 10}.items()],
            asynchronous=False,
        )
        offsets = wait_until(
            lambda: (found := kafka.offsets()).lag.get(group) is not None and found,
            what="the group listed with members",
        )
        assert offsets.error is None
        assert offsets.end["data.raw"] == 30
        assert offsets.lag[group] == 30 - (4 + 7 + 10)
        [described] = admin.describe_consumer_groups([group]).values()
        assert len(described.result(timeout=10).members) == 1, "the reader joined the group"
    finally:
        kafka.committed.close()
        member.close()
