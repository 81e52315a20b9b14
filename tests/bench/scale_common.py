"""What every part of bench-scale needs: a namespace of its own (topics, SQL state dropped
afterwards), the environment of the processes it starts, and a process's CPU time and memory
read from /proc."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from infra.processes import drop_namespace_state
from shared.settings import PlatformSettings
from tests.bench.scale_stats import cpu_seconds_from_stat, memory_from_status
from tests.services import namespace_topics


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    return cpu_seconds_from_stat(Path(f"/proc/{pid}/stat").read_text())


def process_memory(pid: int) -> dict[str, int]:
    """VmRSS (resident now), VmHWM (the most resident so far) ... in bytes."""
    return memory_from_status(Path(f"/proc/{pid}/status").read_text())


def child_env(settings: PlatformSettings) -> dict[str, str]:
    return {
        **os.environ,
        "MLOPS_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "PYTHONUNBUFFERED": "1",
    }


@contextmanager
def namespace(admin: AdminClient, settings: PlatformSettings, prefix: str) -> Iterator[str]:
    """A fresh namespace with every catalog topic; its topics and SQL state go afterwards."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    try:
        with namespace_topics(admin, name):
            yield name
    finally:
        if settings.database_url is not None:
            drop_namespace_state(settings.database_url.get_secret_value(), name)


def assigned_members(admin: AdminClient, group: str) -> int:
    """Members of a stable consumer group that hold at least one partition (0 otherwise)."""
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    if description.state != ConsumerGroupState.STABLE:
        return 0
    return sum(
        1
        for member in description.members
        if member.assignment is not None and member.assignment.topic_partitions
    )


class NamespaceGroups:
    """The consumer groups of a namespace (named after it) and how far each is behind on the
    topics its members hold, whatever stages a service chains (a group per stage)."""

    def __init__(self, admin: AdminClient, bootstrap: str, ns: str) -> None:
        self.admin, self.ns = admin, ns
        self._watermarks = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"{ns}-bench-watermarks"}
        )

    def close(self) -> None:
        self._watermarks.close()

    def lags(self) -> dict[str, dict[str, int]] | None:
        """group -> topic -> messages not committed yet; None while a group rebalances."""
        listed = self.admin.list_consumer_groups(request_timeout=10).result(timeout=10)
        groups = [g.group_id for g in listed.valid if g.group_id.startswith(self.ns)]
        groups = [g for g in groups if not g.endswith("-bench-watermarks")]
        if not groups:
            return None
        lags = {}
        for group, future in self.admin.describe_consumer_groups(groups).items():
            description = future.result(timeout=10)
            if description.state != ConsumerGroupState.STABLE:
                return None
            held = [
                TopicPartition(tp.topic, tp.partition)
                for member in description.members
                if member.assignment is not None
                for tp in member.assignment.topic_partitions
            ]
            lags[group] = self._group_lag(group, held)
        return lags

    def settled(self, inputs: tuple[str, ...]) -> bool:
        """Every group holds its partitions and has committed all it reads, the `inputs`
        topics (full names) among them."""
        lags = self.lags()
        if lags is None:
            return False
        read = {topic for by_topic in lags.values() for topic in by_topic}
        backlog = sum(lag for by_topic in lags.values() for lag in by_topic.values())
        return set(inputs) <= read and backlog == 0

    def _group_lag(self, group: str, held: list[TopicPartition]) -> dict[str, int]:
        request = [ConsumerGroupTopicPartitions(group, held or None)]
        answer = self.admin.list_consumer_group_offsets(request)[group].result(timeout=10)
        lag: dict[str, int] = {}
        for tp in answer.topic_partitions:
            end = self._watermarks.get_watermark_offsets(tp, timeout=10)[1]
            lag[tp.topic] = lag.get(tp.topic, 0) + end - max(tp.offset, 0)
        return lag
