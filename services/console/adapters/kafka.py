"""Kafka's admin API, for the loop page: end offsets per topic and lag per consumer group."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

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
        for listing in groups.valid:
            group = listing.group_id
            if not group.startswith((prefix, f"{self.namespace}-")):
                continue
            if listing.state in IDLE:
                continue  # no member: a past instance's group (serving's are per instance)
            lag[group] = self._group_lag(group, partitions)
        return Offsets(end=end, partitions=partitions, lag=lag)

    def _group_lag(self, group: str, partitions: dict[str, dict[int, int]]) -> int:
        request = [ConsumerGroupTopicPartitions(group)]
        futures = self.admin.list_consumer_group_offsets(request, request_timeout=self.timeout_s)
        total = 0
        for future in futures.values():
            for tp in future.result().topic_partitions or []:
                if tp.offset < 0:
                    continue
                end = partitions.get(tp.topic, {}).get(tp.partition)
                if end is not None:
                    total += max(end - tp.offset, 0)
        return total
