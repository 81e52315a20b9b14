"""How bench-drift scores detections against known drift points (tests/bench/drift_streams.py)."""

from __future__ import annotations

import pytest

from tests.bench.drift_streams import drift_windows, score_detections

DRIFTS = (1000, 2000)
LENGTH = 3000


def test_delay_counts_the_new_concept_events_seen_when_it_fired() -> None:
    score = score_detections([1000, 2099], DRIFTS, LENGTH, tolerance=500)

    assert score.delays == (1, 100)
    assert score.missed == 0
    assert score.false_alarms == 0


def test_only_the_first_detection_after_a_drift_gives_its_delay() -> None:
    score = score_detections([1300, 1040, 1200, 2010], DRIFTS, LENGTH, tolerance=500)

    assert score.delays == (41, 11)
    assert score.repeats == 2
    assert score.false_alarms == 0


def test_detections_on_stationary_segments_are_false_alarms() -> None:
    before_any_drift, after_the_window, just_before_drift = 10, 1500, 1999
    detections = [before_any_drift, 1100, after_the_window, just_before_drift, 2200]

    score = score_detections(detections, DRIFTS, LENGTH, tolerance=500)

    assert score.false_alarms == 3
    assert score.delays == (101, 201)


def test_a_drift_without_detection_in_its_window_is_missed() -> None:
    too_late_for_the_first = 1500

    score = score_detections([too_late_for_the_first, 2050], DRIFTS, LENGTH, tolerance=500)

    assert score.delays == (None, 51)
    assert score.missed == 1
    assert score.detected == [51]
    assert score.false_alarms == 1


def test_no_detection_misses_every_drift_without_false_alarm() -> None:
    score = score_detections([], DRIFTS, LENGTH, tolerance=500)

    assert score.missed == 2
    assert score.false_alarms == 0


def test_a_drift_window_ends_at_the_next_drift_point() -> None:
    assert drift_windows(DRIFTS, LENGTH, tolerance=5000) == [(1000, 2000), (2000, 3000)]

    score = score_detections([1999, 2000], DRIFTS, LENGTH, tolerance=5000)

    assert score.delays == (1000, 1)


@pytest.mark.parametrize(
    ("drifts", "tolerance"),
    [((2000, 1000), 100), ((1000, 1000), 100), ((3000,), 100), ((1000,), 0)],
)
def test_inconsistent_drift_points_or_tolerance_are_refused(
    drifts: tuple[int, ...], tolerance: int
) -> None:
    with pytest.raises(ValueError):
        score_detections([], drifts, LENGTH, tolerance)


def test_a_detection_outside_the_stream_is_refused() -> None:
    with pytest.raises(ValueError, match="outside the stream"):
        score_detections([LENGTH], DRIFTS, LENGTH, tolerance=500)


def test_the_regression_stream_s_error_is_the_absolute_residual() -> None:
    from tests.bench.drift_streams import drift_stream

    stream = drift_stream("friedman", seed=1, segment=50, training=200)
    assert stream.task == "regression" and stream.drifts == (50, 100) and len(stream) == 150
    assert all(isinstance(p, float) for p in stream.predictions)
    residuals = [abs(p - y) for p, y in zip(stream.predictions, stream.labels, strict=True)]
    assert stream.errors == residuals and any(e not in (0.0, 1.0) for e in stream.errors)
