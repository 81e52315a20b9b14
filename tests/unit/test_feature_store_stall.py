"""The stall watch: a worker whose stream stopped while records wait is told apart from an idle
one, a busy one (a batch retried while a dependency is down) and a slow one that moves."""

from __future__ import annotations

import pytest

from services.feature_store.domain.stall import StallWatch, StreamState


def watched(states: list[tuple[float, StreamState]], timeout_s: float = 60) -> list[str | None]:
    watch = StallWatch(timeout_s)
    return [watch.observe(now, state) for now, state in states]


def test_records_waiting_on_a_stream_that_does_not_move_is_a_stall_after_the_timeout() -> None:
    stuck = StreamState(waiting=40, busy=False, progress=(7, ()))

    verdicts = watched([(0, stuck), (30, stuck), (59, stuck), (61, stuck)])

    assert verdicts[:3] == [None, None, None]
    assert verdicts[3] is not None
    assert "40 record(s) wait" in verdicts[3] and "61 s" in verdicts[3]


@pytest.mark.parametrize(
    "later",
    [
        StreamState(waiting=0, busy=False, progress=(7, ())),
        StreamState(waiting=40, busy=True, progress=(7, ())),
        StreamState(waiting=40, busy=False, progress=(8, ())),
    ],
    ids=["nothing-waits", "a-batch-in-progress", "a-batch-ended"],
)
def test_an_idle_busy_or_moving_stream_starts_the_clock_again(later: StreamState) -> None:
    stuck = StreamState(waiting=40, busy=False, progress=(7, ()))

    verdicts = watched([(0, stuck), (50, later), (100, stuck), (140, stuck), (161, stuck)])

    assert verdicts[:4] == [None, None, None, None]
    assert verdicts[4] is not None, "stuck again from 100 s on: a stall 61 s later"


def test_a_stream_that_keeps_moving_is_never_a_stall_however_long_records_wait() -> None:
    states = [(t * 10.0, StreamState(40, False, (t, ()))) for t in range(100)]

    assert set(watched(states)) == {None}
