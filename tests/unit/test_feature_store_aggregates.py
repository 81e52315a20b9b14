"""Aggregation arithmetic, window expiry and idempotent re-application of entity state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.feature_store.domain.aggregates import (
    AggregationError,
    EntityState,
    already_applied,
    apply_record,
    replay,
)
from shared.datasets.spec import Aggregation

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
COUNT_1H = Aggregation(name="applications_1h", function="count", window_seconds=3600)
SUM_1H = Aggregation(name="loan_sum_1h", function="sum", feature="loan", window_seconds=3600)
MEAN_1D = Aggregation(
    name="loan_mean_1d", function="mean", feature="loan", window_seconds=86400, hop_seconds=3600
)
LOANS = [COUNT_1H, SUM_1H, MEAN_1D]
GRACE = 86400


def records(*minutes_and_loans: tuple[float, float | None]) -> list:
    return [
        (T0 + timedelta(minutes=minutes), {"loan": loan}, 0, offset)
        for offset, (minutes, loan) in enumerate(minutes_and_loans)
    ]


def test_count_sum_and_mean_within_one_window() -> None:
    results = replay(records((0, 100.0), (10, 300.0), (20, 200.0)), LOANS, GRACE)
    assert [r["applications_1h"] for r in results] == [1, 2, 3]
    assert [r["loan_sum_1h"] for r in results] == [100.0, 400.0, 600.0]
    assert [r["loan_mean_1d"] for r in results] == [100.0, 200.0, 200.0]


def test_a_tumbling_window_starts_again_at_its_boundary() -> None:
    results = replay(records((0, 100.0), (59, 100.0), (60, 50.0)), [COUNT_1H, SUM_1H], GRACE)
    assert [r["applications_1h"] for r in results] == [1, 2, 1]
    assert results[-1]["loan_sum_1h"] == 50.0


def test_the_hopping_mean_keeps_the_last_day_to_within_one_hop() -> None:
    day = 24 * 60
    results = replay(records((0, 100.0), (day - 61, 300.0), (day + 60, 500.0)), [MEAN_1D], GRACE)
    assert results[1]["loan_mean_1d"] == 200.0, "both records lie within the last day"
    assert results[2]["loan_mean_1d"] == 400.0, "the first record left the trailing window"


def test_missing_values_add_nothing_to_sums_and_means_but_count_as_records() -> None:
    results = replay(records((0, 100.0), (1, None)), LOANS, GRACE)
    assert results[1] == {"applications_1h": 2, "loan_sum_1h": 100.0, "loan_mean_1d": 100.0}
    only_missing = replay(records((0, None)), [MEAN_1D, SUM_1H], GRACE)[0]
    assert only_missing == {"loan_mean_1d": None, "loan_sum_1h": 0.0}


def test_a_record_out_of_order_lands_in_its_own_event_time_window() -> None:
    results = replay(records((70, 10.0), (10, 20.0), (75, 30.0)), [COUNT_1H, SUM_1H], GRACE)
    assert results[1] == {"applications_1h": 1, "loan_sum_1h": 20.0}
    assert results[2] == {"applications_1h": 2, "loan_sum_1h": 40.0}


def test_windows_older_than_the_grace_are_dropped_and_a_late_record_is_flagged() -> None:
    state = EntityState()
    for offset, minutes in enumerate((0, 30, 24 * 60 * 3)):
        applied = apply_record(
            state, [COUNT_1H], T0 + timedelta(minutes=minutes), {}, 0, offset, grace_s=3600
        )
        state = applied.state
    assert len(state.windows["applications_1h:count::3600:3600"]) == 1, "old windows dropped"
    late = apply_record(state, [COUNT_1H], T0 + timedelta(minutes=5), {}, 0, 3, grace_s=3600)
    assert late.late
    assert late.aggregates == {"applications_1h": 1}, "its window was gone: counted afresh"


def test_a_replayed_position_is_recognised_as_already_applied() -> None:
    applied = apply_record(
        EntityState(), LOANS, T0, {"loan": 1.0}, partition=2, offset=41, grace_s=0
    )
    assert already_applied(applied.state, partition=2, offset=41)
    assert already_applied(applied.state, partition=2, offset=3)
    assert not already_applied(applied.state, partition=2, offset=42)
    assert not already_applied(applied.state, partition=1, offset=3), "another partition"
    assert not already_applied(None, partition=2, offset=0)


def test_skipping_replays_gives_exactly_the_values_of_an_uninterrupted_run() -> None:
    inputs = records(*((minutes * 7.0, 10.0 + minutes) for minutes in range(60)))
    expected = replay(inputs, LOANS, GRACE)

    # A crash after record 40 was saved: the stream resumes from an earlier committed offset.
    state = EntityState()
    for event_time, values, partition, offset in inputs[:41]:
        state = apply_record(state, LOANS, event_time, values, partition, offset, GRACE).state
    saved = EntityState.from_json(state.to_json())
    resumed = []
    for event_time, values, partition, offset in inputs[25:]:
        if already_applied(saved, partition=partition, offset=offset):
            continue
        applied = apply_record(saved, LOANS, event_time, values, partition, offset, GRACE)
        saved = applied.state
        resumed.append(applied.aggregates)
    assert resumed == expected[41:]


def test_state_survives_its_serialization_bit_for_bit() -> None:
    state = EntityState()
    for event_time, values, partition, offset in records((0, 0.1), (1, 0.2), (2, 0.7)):
        state = apply_record(state, LOANS, event_time, values, partition, offset, GRACE).state
    assert EntityState.from_json(state.to_json()) == state


def test_a_changed_aggregation_definition_starts_from_nothing() -> None:
    first = apply_record(EntityState(), [COUNT_1H], T0, {}, 0, 0, GRACE).state
    widened = Aggregation(name="applications_1h", function="count", window_seconds=7200)
    applied = apply_record(first, [widened], T0 + timedelta(minutes=1), {}, 0, 1, GRACE)
    assert applied.aggregates == {"applications_1h": 1}
    assert list(applied.state.windows) == ["applications_1h:count::7200:7200"]


def test_text_cannot_be_summed() -> None:
    with pytest.raises(AggregationError, match="needs a number"):
        apply_record(EntityState(), [SUM_1H], T0, {"loan": "lots"}, 0, 0, GRACE)
    with pytest.raises(AggregationError, match="needs a number"):
        apply_record(EntityState(), [SUM_1H], T0, {"loan": True}, 0, 0, GRACE)
