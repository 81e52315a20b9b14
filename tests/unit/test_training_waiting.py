"""Waiting for a run's data: the offline store must cover every topic partition up to the
offsets at the command's time; a fake clock stands in for time."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from services.training.domain.errors import DataNotArrived
from services.training.domain.waiting import Positions, Waiting, describe_gaps, gaps

VALIDATED, LABELS = "ns.data.validated", "ns.data.labels"


@dataclass
class FakeClock:
    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class GrowingStore:
    """An offline store that writes `step` more messages per partition each time asked."""

    covered: Positions
    step: int
    asked: int = 0

    def coverage(self) -> Positions:
        self.asked += 1
        reached = dict(self.covered)
        self.covered = {key: offset + self.step for key, offset in self.covered.items()}
        return reached


def waiting(clock: FakeClock, wait_s: float = 10.0) -> Waiting:
    return Waiting(wait_s=wait_s, poll_s=1.0, clock=lambda: clock.now, sleep=clock.sleep)


def test_a_partition_is_missing_until_the_store_reaches_its_offset() -> None:
    needed = {(VALIDATED, 0): 10, (VALIDATED, 1): 0, (LABELS, 0): 5}
    missing = gaps(needed, {(VALIDATED, 0): 9, (LABELS, 0): 5})
    assert [(g.topic, g.partition, g.needed, g.covered) for g in missing] == [(VALIDATED, 0, 10, 9)]
    assert gaps(needed, {(VALIDATED, 0): 12, (LABELS, 0): 5}) == []
    unknown = gaps({(LABELS, 2): 3}, {})
    assert describe_gaps(unknown) == f"{LABELS}[2] up to offset 3 (written up to 0)"


def test_a_run_waits_until_the_store_covers_what_was_written_before_its_command() -> None:
    clock = FakeClock()
    store = GrowingStore({(VALIDATED, 0): 0, (LABELS, 0): 0}, step=2)
    needed = {(VALIDATED, 0): 6, (LABELS, 0): 4}
    waited = waiting(clock).until_covered(needed, store.coverage)
    assert store.asked == 4  # covered 0, 2, 4, then 6
    assert waited.waited_s == 3.0 and clock.slept == [1.0, 1.0, 1.0]
    assert [(o.topic, o.partition, o.offset) for o in waited.needed] == [
        (LABELS, 0, 4),
        (VALIDATED, 0, 6),
    ]
    assert [o.offset for o in waited.covered] == [6, 6]


def test_data_already_written_is_not_waited_for() -> None:
    clock = FakeClock()
    store = GrowingStore({(VALIDATED, 0): 100}, step=0)
    waited = waiting(clock).until_covered({(VALIDATED, 0): 100}, store.coverage)
    assert waited.waited_s == 0 and clock.slept == []


def test_empty_topics_need_nothing_and_the_store_is_not_asked() -> None:
    store = GrowingStore({}, step=0)
    waited = waiting(FakeClock()).until_covered({}, store.coverage)
    assert store.asked == 0 and waited.needed == [] and waited.waited_s == 0


def test_data_that_never_arrives_fails_after_the_wait_naming_what_is_missing() -> None:
    clock = FakeClock()
    store = GrowingStore({(VALIDATED, 0): 3, (LABELS, 1): 7}, step=0)
    needed = {(VALIDATED, 0): 3, (LABELS, 1): 9}
    with pytest.raises(DataNotArrived) as failed:
        waiting(clock, wait_s=5).until_covered(needed, store.coverage)
    assert str(failed.value) == (
        "the feature store's offline store did not reach every record sent before the "
        f"command within 5s: missing {LABELS}[1] up to offset 9 (written up to 7)"
    )
    assert clock.now == 5.0, "the wait is bounded by wait_s"
