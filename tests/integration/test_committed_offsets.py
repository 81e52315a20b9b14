"""Committed offsets read from the real broker by a consumer that carries the group's id but
never joins it (shared.kafka.committed), so the group's members and their assignment are
untouched: how far validation's group has handled the raw topic (training), and each group's
lag on the console's loop page."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from services.console.adapters.kafka import KafkaAdmin
from services.training.adapters.positions import KafkaPositions, Upstream
from tests.integration.kafka_helpers import (
    create_topic,
    member_that_committed,
    members,
    produce_round_robin,
    unique_name,
)
from tests.waiting import wait_until

PARTITIONS = 3
COMMITTED = {0: 4, 1: 7, 2: 10}


def test_the_upstream_group_s_committed_offsets_are_read_without_joining_it(
    admin: AdminClient, bootstrap: str
) -> None:
    raw = create_topic(admin, unique_name("positions-raw"), PARTITIONS)
    validated = create_topic(admin, unique_name("positions-validated"), PARTITIONS)
    group = unique_name("positions-group")
    produce_round_robin(bootstrap, raw, 30, PARTITIONS)
    positions = KafkaPositions(
        {"bootstrap.servers": bootstrap}, [validated], Upstream(raw, validated, group)
    )
    try:
        assert positions.upstream_handled() == {(raw, p): 0 for p in range(PARTITIONS)}
        with member_that_committed(bootstrap, raw, group, COMMITTED):
            assert positions.upstream_handled() == {(raw, p): o for p, o in COMMITTED.items()}
            assert members(admin, group) == 1, "the reader joined the group"
    finally:
        positions.close()


def test_the_console_s_lag_of_a_group_is_its_end_offsets_minus_its_commits(
    admin: AdminClient, bootstrap: str
) -> None:
    namespace = unique_name("lag")
    raw = create_topic(admin, f"{namespace}.data.raw", PARTITIONS)
    group = f"{namespace}.validation"
    produce_round_robin(bootstrap, raw, 30, PARTITIONS)
    kafka = KafkaAdmin({"bootstrap.servers": bootstrap}, namespace, timeout_s=10)
    try:
        with member_that_committed(bootstrap, raw, group, COMMITTED):
            offsets = wait_until(
                lambda: (found := kafka.offsets()).lag.get(group) is not None and found,
                what="the group listed with members",
            )
            assert offsets.error is None
            assert offsets.end["data.raw"] == 30
            assert offsets.lag[group] == 30 - sum(COMMITTED.values())
            assert members(admin, group) == 1, "the reader joined the group"
    finally:
        kafka.committed.close()
