"""The stall watch's probe against the real broker: records waiting on a worker's partitions
are its high watermarks beyond the group's committed offsets (from the low watermark where the
group never committed), read without joining the group."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from services.feature_store.adapters.stall_probe import StreamProbe
from services.feature_store.domain.stall import StallWatch
from tests.integration.kafka_helpers import create_topic, unique_name
from tests.waiting import wait_until


@dataclass
class HeldPartitions:
    held: set[tuple[str, int]] | None

    def assigned(self) -> set[tuple[str, int]] | None:
        return self.held


@dataclass
class Batches:
    batches: int = 0
    busy: bool = False


def test_waiting_records_are_the_watermarks_beyond_the_commits_of_the_held_partitions(
    admin: AdminClient, bootstrap: str
) -> None:
    topic = create_topic(admin, unique_name("stall-source"), 3)
    group = unique_name("stall-group")
    producer = Producer({"bootstrap.servers": bootstrap})
    for n in range(30):
        producer.produce(topic, f"{n}".encode(), partition=n % 3)
    assert producer.flush(30) == 0
    member = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    stream, pipeline = HeldPartitions({(topic, 0), (topic, 1)}), Batches()
    probe = StreamProbe(stream, pipeline, {"bootstrap.servers": bootstrap}, group)  # type: ignore[arg-type]
    try:
        assert probe.state().waiting == 20  # type: ignore[union-attr]
        member.subscribe([topic])
        wait_until(lambda: member.poll(0.5) is not None or bool(member.assignment()),
                   what="the member to be assigned")  # fmt: skip
        member.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in {0: 10, 1: 3, 2: 1}.items()],
            asynchronous=False,
        )
        state = probe.state()
        assert state is not None and state.waiting == 0 + 7, "partition 2 is not held here"
        watch = StallWatch(timeout_s=10)
        assert watch.observe(0, state) is None
        assert watch.observe(11, probe.state()) is not None, "nothing moved: a stall"  # type: ignore[arg-type]
        pipeline.batches += 1
        assert watch.observe(22, probe.state()) is None, "a batch ended: it moves"  # type: ignore[arg-type]
        stream.held = None
        assert probe.state() is None, "rebalancing: nothing to conclude"
    finally:
        probe.close()
        member.close()
