"""Kafka's admin API, for the loop page: end offsets per topic and lag per consumer group
(committed offsets read by shared.kafka.committed, not the admin API's OffsetFetch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupState, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from shared.kafka.committed import CommittedOffsets

IDLE = frozenset({ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD})


@dataclass(frozen=True)
class Offsets:
    """Sum of end offsets per topic and partition, the lag of each consumer group with
    members (behind the end offsets); `error` when Kafka did not answer."""

    end: dict[str, int] = field(default_factory=dict)
    partitions: dict[str, dict[int, int]] = field(default_factory=dict)
    lag: dict[str, int] = field(default_factory=dict)
    error: str | None = None


class KafkaAdmin:
    def __init__(self, config: dict[str, Any], namespace: str, timeout_s: float) -> None:
        self.admin = AdminClient(config)
        self.committed = CommittedOffsets(config, timeout_s)
        self.namespace = namespace
        self.timeout_s = timeout_s

    def offsets(self) -> Offsets:
        try:
            return self._offsets()
        except Exception as error:
            return Offsets(error=f"kafka unavailable ({error})")

    def _offsets(self) -> Offsets:
        prefix = f"{self.namespace}."
        metadata = self.admin.list_topics(timeout=self.timeout_s)
        wanted = {
            TopicPartition(name, p): OffsetSpec.latest()
            for name, topic in metadata.topics.items()
            if name.startswith(prefix)
            for p in topic.partitions
        }
        partitions: dict[str, dict[int, int]] = {}
        if wanted:
            futures = self.admin.list_offsets(wanted, request_timeout=self.timeout_s)
            for tp, future in futures.items():
                offset = future.result().offset
                partitions.setdefault(tp.topic, {})[tp.partition] = max(offset, 0)
        end = {topic[len(prefix) :]: sum(parts.values()) for topic, parts in partitions.items()}
        groups = self.admin.list_consumer_groups(request_timeout=self.timeout_s).result()
        lag: dict[str, int] = {}
        positions = [(topic, p) for topic, parts in partitions.items() for p in parts]
        for listing in groups.valid:
            group = listing.group_id
            if not group.startswith((prefix, f"{self.namespace}-")):
                continue
            if listing.state in IDLE:
                continue  # no member: a past instance's group (serving's are per instance)
            committed = self.committed.of(group, positions)
            lag[group] = sum(
                max(partitions[topic][p] - offset, 0) for (topic, p), offset in committed.items()
            )
        self.committed.forget(lag)
        return Offsets(end=end, partitions=partitions, lag=lag)
