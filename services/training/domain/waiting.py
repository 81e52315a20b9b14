"""Waiting for a run's data: a TrainModel issued at time T trains on every record labelled
before T, so training first finds where data.validated and data.labels stood at T (per
partition, the first offset at or after T) and waits until the feature store's offline store
is written that far.

>>> needed = {("ns.data.labels", 0): 40, ("ns.data.validated", 0): 100}
>>> covered = {("ns.data.labels", 0): 40, ("ns.data.validated", 0): 90}
>>> describe_gaps(gaps(needed, covered))
'ns.data.validated[0] up to offset 100 (written up to 90)'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from services.training.domain.errors import DataNotArrived
from shared.events.models import DataWait, TopicOffset

Positions = dict[tuple[str, int], int]
"""(topic, partition) -> the next offset: everything before it."""


@dataclass(frozen=True)
class Gap:
    topic: str
    partition: int
    needed: int
    covered: int


def gaps(needed: Positions, covered: Positions) -> list[Gap]:
    """The partitions the offline store has not written as far as needed, in order."""
    return [
        Gap(topic, partition, offset, covered.get((topic, partition), 0))
        for (topic, partition), offset in sorted(needed.items())
        if covered.get((topic, partition), 0) < offset
    ]


def describe_gaps(missing: list[Gap]) -> str:
    return ", ".join(
        f"{gap.topic}[{gap.partition}] up to offset {gap.needed} (written up to {gap.covered})"
        for gap in missing
    )


def topic_offsets(positions: Positions) -> list[TopicOffset]:
    return [
        TopicOffset(topic=topic, partition=partition, offset=offset)
        for (topic, partition), offset in sorted(positions.items())
    ]


@dataclass(frozen=True)
class Waiting:
    """How long to wait for the offline store, and how often to ask it."""

    wait_s: float
    poll_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def until_covered(
        self,
        needed: Positions,
        coverage: Callable[[], Positions],
        writer: str = "the feature store's offline store",
    ) -> DataWait:
        """Asks `coverage` until it reaches `needed`; DataNotArrived naming what is missing
        when it does not within the wait."""
        started = self.clock()
        while True:
            covered = coverage() if needed else {}
            waited = self.clock() - started
            missing = gaps(needed, covered)
            if not missing:
                return DataWait(
                    needed=topic_offsets(needed),
                    covered=topic_offsets({k: covered.get(k, 0) for k in needed}),
                    waited_s=round(waited, 3),
                )
            if waited >= self.wait_s:
                raise DataNotArrived(
                    f"{writer} did not reach every record sent before the command within "
                    f"{self.wait_s:g}s: missing "
                    f"{describe_gaps(missing)}"
                )
            self.sleep(min(self.poll_s, max(self.wait_s - waited, 0.0)))


def at_least(positions: Positions, floor: Positions) -> Positions:
    """`positions` raised to `floor` where the floor is further (and extended by it)."""
    return {key: max(positions.get(key, 0), floor.get(key, 0)) for key in {*positions, *floor}}
