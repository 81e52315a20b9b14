"""Reads what the stall watch (domain/stall.py) needs from outside the faust stream: the
source partitions the worker holds, the group's committed offsets on them, their high
watermarks, and whether a batch is in progress."""

from __future__ import annotations

from typing import Any

from services.feature_store.adapters.streaming import FeaturePipeline, FeatureStream
from services.feature_store.domain.stall import StreamState
from shared.kafka.committed import CommittedOffsets
from shared.kafka.watermarks import HighWatermarks


class StreamProbe:
    def __init__(
        self,
        stream: FeatureStream,
        pipeline: FeaturePipeline,
        config: dict[str, Any],
        group: str,
        timeout_s: float = 10.0,
    ) -> None:
        self._stream = stream
        self._pipeline = pipeline
        self._group = group
        self._committed = CommittedOffsets(config, timeout_s)
        self._ends = HighWatermarks(config, f"{group}-stall-watch", timeout_s)

    def state(self) -> StreamState | None:
        """The stream's state now; None while it recovers or rebalances."""
        held = self._stream.assigned()
        if held is None:
            return None
        batches = self._pipeline.batches
        committed = self._committed.of(self._group, held)
        waiting = sum(
            max(high - committed.get(position, low), 0)
            for position, (low, high) in self._ends.bounds(held).items()
        )
        progress = (batches, tuple(sorted(held)), tuple(sorted(committed.items())))
        return StreamState(waiting, self._pipeline.busy, progress)

    def close(self) -> None:
        self._committed.close()
        self._ends.close()
