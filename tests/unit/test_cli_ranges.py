"""Replay ranges: bounds, per-partition resolution, checkpoints and resume arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.cli.ranges import (
    EARLIEST,
    END,
    Checkpoint,
    PartitionProgress,
    RangeError,
    Watermarks,
    check_order,
    parse_position,
    resolve_offset,
    topic_names,
    unrecorded_writes,
)

CATALOG = {"data.raw", "data.validated"}


def test_a_bound_is_an_offset_a_time_or_a_word() -> None:
    assert parse_position("1200") == 1200
    assert parse_position("earliest") == EARLIEST
    assert parse_position("END") == END
    assert parse_position("2026-11-21T10:00:00Z") == datetime(2026, 11, 21, 10, tzinfo=UTC)
    assert parse_position("2026-11-21T10:00:00+01:00") == datetime(2026, 11, 21, 9, tzinfo=UTC)


def test_a_time_without_zone_is_utc() -> None:
    assert parse_position("2026-11-21T10:00:00") == datetime(2026, 11, 21, 10, tzinfo=UTC)


@pytest.mark.parametrize("text", ["-5", "ten", "12.5", "2026-13-40", ""])
def test_anything_else_is_refused_with_what_is_expected(text: str) -> None:
    with pytest.raises(RangeError, match="neither an offset"):
        parse_position(text)


def test_offsets_are_clamped_to_what_the_partition_still_stores() -> None:
    marks = Watermarks(low=100, high=500)
    assert resolve_offset(50, marks, None) == 100
    assert resolve_offset(250, marks, None) == 250
    assert resolve_offset(9000, marks, None) == 500
    assert resolve_offset(EARLIEST, marks, None) == 100
    assert resolve_offset(END, marks, None) == 500


def test_a_time_is_the_partition_s_first_offset_at_or_after_it() -> None:
    marks = Watermarks(low=0, high=500)
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    assert resolve_offset(moment, marks, 321) == 321
    assert resolve_offset(moment, marks, -1) == 500, "no message that late: the end"
    assert resolve_offset(moment, marks, None) == 500


def test_a_reversed_range_is_refused() -> None:
    with pytest.raises(RangeError, match="before"):
        check_order(200, 100)
    with pytest.raises(RangeError, match="before"):
        check_order(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    check_order(100, 100)
    check_order(EARLIEST, 5)
    check_order(5, datetime(2026, 1, 1, tzinfo=UTC))  # different kinds: resolved per partition


def test_catalog_and_full_names_map_to_the_same_target() -> None:
    by_logical = topic_names("data.raw", "mlops", "replay1", CATALOG)
    by_full = topic_names("mlops.data.raw", "mlops", "replay1", CATALOG)
    assert by_logical == by_full
    assert (by_full.source, by_full.target) == ("mlops.data.raw", "replay1.data.raw")
    other = topic_names("orders", "mlops", "replay1", CATALOG)
    assert (other.source, other.target) == ("orders", "replay1.orders")


def test_a_replay_into_the_source_namespace_is_refused() -> None:
    with pytest.raises(RangeError, match="production"):
        topic_names("data.raw", "mlops", "mlops", CATALOG)


def progress(start: int, end: int, next_offset: int, target_end: int) -> PartitionProgress:
    return PartitionProgress(start=start, end=end, next_offset=next_offset, target_end=target_end)


def test_writes_confirmed_after_the_checkpoint_are_counted_from_the_target_end() -> None:
    saved = progress(start=10, end=110, next_offset=40, target_end=30)
    assert unrecorded_writes(saved, target_end_now=30) == 0
    assert unrecorded_writes(saved, target_end_now=37) == 7
    assert unrecorded_writes(saved, target_end_now=500) == 70, "never more than remain"


def test_a_target_shorter_than_recorded_is_refused() -> None:
    with pytest.raises(RangeError, match="--restart"):
        unrecorded_writes(progress(0, 10, 5, 5), target_end_now=2)


def test_a_checkpoint_survives_a_round_trip_and_knows_its_request(tmp_path: Path) -> None:
    checkpoint = Checkpoint(
        source_topic="mlops.data.raw",
        target_topic="r.data.raw",
        from_position="10",
        to_position="end",
        partitions={0: progress(10, 50, 20, 10), 1: progress(10, 12, 12, 2)},
        replayed=12,
    )
    path = tmp_path / "nested" / "r.data.raw.json"
    checkpoint.save(path)
    loaded = Checkpoint.load(path)
    assert loaded == checkpoint
    assert loaded.remaining == 30
    assert [r.size for r in loaded.ranges()] == [40, 2]
    assert loaded.same_request("mlops.data.raw", "r.data.raw", "10", "end")
    assert not loaded.same_request("mlops.data.raw", "r.data.raw", "11", "end")
    assert Checkpoint.load(tmp_path / "missing.json") is None
