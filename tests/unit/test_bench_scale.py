"""The pure helpers of bench-scale (tests/bench/scale_stats.py): percentiles, ratios, the
/proc parsing and the table layout."""

from __future__ import annotations

import math

import pytest

from tests.bench.scale_stats import (
    CLOCK_TICKS,
    Column,
    chunks,
    cpu_seconds_from_stat,
    format_ratio,
    memory_from_status,
    mib,
    net_cpu_s,
    per_thousand,
    percentile,
    ratio,
    spread,
    table,
    verdict,
    weighted_mean,
)


@pytest.mark.parametrize(("q", "expected"), [(0, 1.0), (50, 50.5), (99, 99.01), (100, 100.0)])
def test_percentile_interpolates_between_closest_ranks(q: float, expected: float) -> None:
    samples = [float(n) for n in range(100, 0, -1)]
    assert percentile(samples, q) == pytest.approx(expected)


def test_percentile_of_one_sample_is_that_sample_and_of_none_is_nan() -> None:
    assert percentile([7.5], 99) == 7.5
    assert math.isnan(percentile([], 50))


def test_ratio_is_nan_without_a_reference_and_formats_as_times() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert math.isnan(ratio(3.0, 0.0))
    assert math.isnan(ratio(3.0, math.nan))
    assert format_ratio(376.0, 223.0) == "1.69x"
    assert format_ratio(1.0, 0.0) == "n/a"


def test_verdict_says_met_or_not() -> None:
    assert verdict(True) == "met"
    assert verdict(False) == "NOT met"


def test_cpu_per_thousand_events_nets_out_the_idle_rate() -> None:
    assert net_cpu_s(10.0, idle_cpu_per_s=0.01, elapsed_s=100.0) == pytest.approx(9.0)
    assert net_cpu_s(0.1, idle_cpu_per_s=0.01, elapsed_s=100.0) == 0.0
    assert per_thousand(9000.0, 20_000) == 450.0
    assert math.isnan(per_thousand(1.0, 0))


def test_weighted_mean_weighs_each_dataset_by_its_share() -> None:
    costs = {"loans": 300.0, "friedman": 200.0, "phishing": 100.0}
    shares = {"loans": 0.5, "friedman": 0.25, "phishing": 0.25}
    assert weighted_mean(costs, shares) == pytest.approx(225.0)
    with pytest.raises(ValueError, match="weights for"):
        weighted_mean(costs, {"loans": 1.0})


def test_cpu_seconds_come_from_utime_and_stime_even_with_spaces_in_the_name() -> None:
    fields = ["S", *["0"] * 10, str(3 * CLOCK_TICKS), str(CLOCK_TICKS), *["0"] * 30]
    stat = "4242 (python -m x) " + " ".join(fields)
    assert cpu_seconds_from_stat(stat) == pytest.approx(4.0)


def test_memory_lines_are_read_in_bytes() -> None:
    status = "Name:\tpython\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t12\n"
    assert memory_from_status(status) == {"VmHWM": 2048 * 1024, "VmRSS": 1024 * 1024}
    assert mib(1_572_864) == "1.5 MiB"


def test_spread_gives_every_item_its_share_round_robin() -> None:
    assert spread(7, 3) == [0, 1, 2, 0, 1, 2, 0]
    assert [len(chunk) for chunk in chunks(list(range(7)), 3)] == [3, 3, 1]


def test_table_aligns_the_first_column_left_and_the_others_right() -> None:
    lines = table([Column("route", 8), Column("p99", 6)], [["/models", "12.5"]])
    assert lines == ["route       p99", "---------------", "/models    12.5"]
