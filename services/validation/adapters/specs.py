"""The spec registry as validation reads it: re-read only when the specs topic has grown.

shared.datasets.registry.SpecRegistry re-reads the topic (a new consumer, ~25 ms) on every
lookup of an unknown name or version, so a stream of records naming an unknown dataset would
crawl. Here a miss first asks the broker for the topic's end offsets (one request on a
long-lived client, ~1 ms) and re-reads only when they moved: an unknown name is answered
from memory, and a spec registered a moment ago is still found.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from shared.datasets.registry import SpecRegistry, UnknownDataset
from shared.datasets.spec import VersionedSpec

EndOffsets = Callable[[float], tuple[int, ...]]


def topic_end_offsets(bootstrap_config: dict[str, Any], topic: str) -> EndOffsets:
    """A function returning the topic's end offsets, on one client kept open."""
    consumer = Consumer(
        {
            **bootstrap_config,
            "group.id": f"spec-watermarks-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    lock = threading.Lock()

    def ends(timeout_s: float) -> tuple[int, ...]:
        with lock:
            partitions = sorted(
                consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions
            )
            return tuple(
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout_s)[1]
                for p in partitions
            )

    return ends


class WatermarkedSpecs:
    """The handlers' Specs: SpecRegistry lookups, re-reading the topic only when it grew."""

    def __init__(self, registry: SpecRegistry, end_offsets: EndOffsets) -> None:
        self._registry = registry
        self._end_offsets = end_offsets
        self._read_up_to: tuple[int, ...] | None = None
        self._lock = threading.RLock()

    def refresh(self, timeout_s: float = 10.0) -> None:
        with self._lock:
            ends = self._end_offsets(timeout_s)
            if ends != self._read_up_to:
                self._registry.refresh(timeout_s)
                self._read_up_to = ends

    def names(self) -> list[str]:
        return self._registry.names()

    def _known(self, name: str) -> None:
        with self._lock:
            if name not in self._registry.names():
                self.refresh()
            if name not in self._registry.names():
                raise UnknownDataset(name, self._registry.names())

    def latest(self, name: str) -> VersionedSpec:
        self._known(name)
        return self._registry.latest(name)

    def get(self, name: str, version: int) -> VersionedSpec:
        """Versions are numbered 1, 2, ... with no gap (SpecRegistry.register)."""
        self._known(name)
        with self._lock:
            if version > self._registry.latest(name).version:
                self.refresh()
            if not 1 <= version <= self._registry.latest(name).version:
                raise LookupError(f"dataset {name!r} has no version {version}")
            return self._registry.get(name, version)
