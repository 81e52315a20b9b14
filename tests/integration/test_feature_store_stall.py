"""The stall watch's probe against the real broker: records waiting on a worker's partitions
are its high watermarks beyond the group's committed offsets (from the low watermark where the
group never committed), read without joining the group."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka.admin import AdminClient

from services.feature_store.adapters.stall_probe import StreamProbe
from services.feature_store.domain.stall import StallWatch
from tests.integration.kafka_helpers import (
    create_topic,
    member_that_committed,
    produce_round_robin,
    unique_name,
)


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
    produce_round_robin(bootstrap, topic, 30, 3)
    stream, pipeline = HeldPartitions({(topic, 0), (topic, 1)}), Batches()
    probe = StreamProbe(stream, pipeline, {"bootstrap.servers": bootstrap}, group)  # type: ignore[arg-type]
    try:
        assert probe.state().waiting == 20  # type: ignore[union-attr]
        with member_that_committed(bootstrap, topic, group, {0: 10, 1: 3, 2: 1}):
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
