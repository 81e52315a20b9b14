"""Small real-broker helpers for integration tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.waiting import wait_until


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topic(admin: AdminClient, name: str, partitions: int = 1) -> str:
    future = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    future[name].result(timeout=30)
    wait_until(lambda: name in admin.list_topics(timeout=5).topics, what=f"topic {name} to exist")
    return name


def read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[Message]:
    """Reads a topic from the beginning until `expected` messages arrived (or fails)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Message] = []

    def collect() -> bool:
        for message in consumer.consume(500, 0.5):
            if message.error() is None:
                messages.append(message)
        return len(messages) >= expected

    try:
        wait_until(
            collect, what=f"{expected} messages on {topic}", timeout_s=timeout_s, interval_s=0
        )
    finally:
        consumer.close()
    return messages


def committed_total(bootstrap: str, group_id: str, topic: str, partitions: int) -> int:
    """Sum of the offsets a consumer group has committed on a topic."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id})
    try:
        offsets = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in offsets)


def stable_members(admin: AdminClient, group: str, with_partitions: bool = False) -> int:
    """How many members a consumer group has once stable (0 while it rebalances), or how many
    of them hold partitions."""
    described = admin.describe_consumer_groups([group])[group].result(timeout=10)
    if not str(described.state).endswith("STABLE"):
        return 0
    if with_partitions:
        return sum(1 for m in described.members if m.assignment.topic_partitions)
    return len(described.members)


@contextmanager
def topics(admin: AdminClient, *names: str, partitions: int = 1) -> Iterator[list[str]]:
    """Creates uniquely named topics for one test and deletes them afterwards."""
    created = [create_topic(admin, name, partitions) for name in names]
    try:
        yield created
    finally:
        admin.delete_topics(created, operation_timeout=10)


def produce_round_robin(bootstrap: str, topic: str, count: int, partitions: int) -> None:
    """`count` small messages spread over the topic's partitions in turn, confirmed."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for n in range(count):
        producer.produce(topic, f"{n}".encode(), partition=n % partitions)
    assert producer.flush(30) == 0


@contextmanager
def member_that_committed(
    bootstrap: str, topic: str, group: str, offsets: dict[int, int]
) -> Iterator[Consumer]:
    """A member of `group`, assigned `topic`'s partitions, that committed `offsets`
    (partition -> offset) and stays in the group until the block ends."""
    member = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        member.subscribe([topic])
        wait_until(lambda: member.poll(0.5) is not None or bool(member.assignment()),
                   what="the member to be assigned")  # fmt: skip
        member.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
        )
        yield member
    finally:
        member.close()


def members(admin: AdminClient, group: str) -> int:
    [described] = admin.describe_consumer_groups([group]).values()
    return len(described.result(timeout=10).members)
