"""Window assignment over event time: tumbling and hopping windows, in integer microseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.feature_store.domain.windows import (
    MICROS,
    WindowShape,
    epoch_micros,
    trailing_start,
    window_starts,
)
from shared.datasets.spec import Aggregation

HOUR = 3600
DAY = 86400


def at(seconds: float) -> int:
    return round(seconds * MICROS)


def test_a_tumbling_window_holds_each_moment_exactly_once() -> None:
    hourly = WindowShape(HOUR, HOUR)
    assert window_starts(hourly, at(0)) == [0]
    assert window_starts(hourly, at(HOUR - 0.000001)) == [0]
    assert window_starts(hourly, at(HOUR)) == [HOUR], "the end of a window is exclusive"
    assert window_starts(hourly, at(5000)) == [HOUR]


def test_a_hopping_window_holds_each_moment_in_size_over_hop_windows() -> None:
    daily_by_hour = WindowShape(DAY, HOUR)
    starts = window_starts(daily_by_hour, at(90_000))
    assert len(starts) == DAY // HOUR
    assert starts == list(range(2 * HOUR, 26 * HOUR, HOUR))
    assert all(start <= 90_000 < start + DAY for start in starts)
    assert HOUR not in starts, "the window starting at 1h ends exactly at the moment"


def test_hops_that_do_not_divide_the_size_still_cover_every_window() -> None:
    shape = WindowShape(10, 4)
    assert window_starts(shape, at(9)) == [0, 4, 8]
    assert window_starts(shape, at(10)) == [4, 8]


def test_moments_before_the_epoch_fall_in_negative_windows() -> None:
    assert window_starts(WindowShape(HOUR, HOUR), at(-1)) == [-HOUR]


def test_the_trailing_window_covers_the_most_history_up_to_the_moment() -> None:
    assert trailing_start(WindowShape(DAY, HOUR), at(90_000)) == 2 * HOUR
    assert trailing_start(WindowShape(HOUR, HOUR), at(5000)) == HOUR


def test_the_shape_of_an_aggregation_is_tumbling_without_a_hop() -> None:
    tumbling = Aggregation(name="n", function="count", window_seconds=HOUR)
    hopping = Aggregation(
        name="m", function="mean", feature="x", window_seconds=DAY, hop_seconds=HOUR
    )
    assert WindowShape.of(tumbling) == WindowShape(HOUR, HOUR)
    assert WindowShape.of(tumbling).tumbling
    assert WindowShape.of(hopping) == WindowShape(DAY, HOUR)
    assert not WindowShape.of(hopping).tumbling


def test_impossible_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="gaps"):
        WindowShape(10, 20)
    with pytest.raises(ValueError, match="positive"):
        WindowShape(0, 0)


def test_event_times_become_exact_microseconds_and_naive_times_are_refused() -> None:
    moment = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(microseconds=7)
    assert epoch_micros(moment) == 1_704_067_200 * MICROS + 7
    with pytest.raises(ValueError, match="no time zone"):
        epoch_micros(datetime(2024, 1, 1))


@pytest.mark.parametrize(("size", "hop"), [(HOUR, HOUR), (DAY, HOUR), (7 * DAY, DAY), (90, 30)])
def test_the_trailing_window_is_the_earliest_window_containing_the_moment(
    size: int, hop: int
) -> None:
    shape = WindowShape(size, hop)
    for moment in (0, 1, hop - 1, hop, size, size + 1, 1_700_000_123):
        moment_us = moment * MICROS + 17
        assert trailing_start(shape, moment_us) == window_starts(shape, moment_us)[0]
