"""The monitor's drift detection on River's Agrawal stream: a concept drift raises a drift on
the error stream soon after it starts; the same stream without the drift raises none."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

from services.monitoring.domain.detectors import DetectorSpec, SignalDetector, same_label
from services.monitoring.domain.join import LabelJoin
from services.monitoring.domain.monitor import DatasetDetectors, Monitor, Served
from shared.datasets.sources import agrawal_records

START = datetime(2026, 1, 1, tzinfo=UTC)
NUMERIC = ["salary", "commission", "age", "hvalue", "hyears", "loan"]
LENGTH = 3000
DRIFT_AT = 1500
WITHIN = 300


def _model() -> DecisionTreeClassifier:
    rows = list(agrawal_records(2000, seed=7, start=START))
    frame = pd.DataFrame([record for record, _ in rows])[NUMERIC]
    return DecisionTreeClassifier(max_depth=6, random_state=0).fit(
        frame, [label for _, label in rows]
    )


@pytest.fixture(scope="module")
def model() -> DecisionTreeClassifier:
    return _model()


def _errors(model: DecisionTreeClassifier, drift_at: int | None) -> list[float]:
    rows = list(agrawal_records(LENGTH, seed=11, start=START, drift_at=drift_at))
    frame = pd.DataFrame([record for record, _ in rows])[NUMERIC]
    predicted = model.predict(frame)
    return [0.0 if int(p) == label else 1.0 for p, (_, label) in zip(predicted, rows, strict=True)]


def test_concept_drift_raises_a_drift_on_the_error_stream_soon_after_it(model) -> None:
    detector = SignalDetector("error", "error", DetectorSpec("adwin", {"delta": 0.002}))
    positions = [p for p, e in enumerate(_errors(model, DRIFT_AT), 1) if detector.update(e)]
    assert positions, "no drift raised"
    assert DRIFT_AT < positions[0] <= DRIFT_AT + WITHIN, positions


def test_a_stationary_stream_raises_no_drift(model) -> None:
    detector = SignalDetector("error", "error", DetectorSpec("adwin", {"delta": 0.002}))
    assert [p for p, e in enumerate(_errors(model, None), 1) if detector.update(e)] == []


def test_page_hinkley_on_the_error_stream_also_sees_the_drift(model) -> None:
    detector = SignalDetector("error", "error", DetectorSpec("page_hinkley", {}))
    positions = [p for p, e in enumerate(_errors(model, DRIFT_AT), 1) if detector.update(e)]
    assert positions and positions[0] > DRIFT_AT


def test_a_drift_carries_reference_and_current_summaries() -> None:
    detector = SignalDetector("x", "feature", DetectorSpec("adwin", {}))
    found = [detector.update(float(v)) for v in [0.0] * 500 + [10.0] * 200]
    drift = next(d for d in found if d is not None)
    assert drift.detector == "ADWIN"
    assert drift.reference["mean"] < 1.0 and drift.reference["count"] >= 500
    assert drift.current["mean"] > drift.reference["mean"]
    assert 500 < drift.position < 700


def test_a_shifted_numeric_feature_drifts_and_categories_are_ignored() -> None:
    monitor = Monitor(lambda _: DatasetDetectors(), lambda d: d, LabelJoin(60))
    found = []
    for i in range(1200):
        salary = 50_000.0 + (i % 7) * 100 + (40_000.0 if i >= 600 else 0.0)
        values = {"salary": salary, "elevel": "3", "age": 40 + i % 3}
        found += monitor.observe_record("loans", values, None)
    assert {f.drift.signal for f in found} == {"salary"}
    assert all(f.model_name == "loans" and f.model_version is None for f in found)


def test_unknown_detector_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        DetectorSpec("nope", {}).build()  # type: ignore[arg-type]


def test_labels_and_predictions_compare_as_numbers_when_they_can() -> None:
    assert same_label(1, "1") and same_label("1.0", 1) and same_label(True, 1)
    assert not same_label(0, 1) and same_label("yes", "yes") and not same_label("a", "b")


def test_monitor_joins_in_either_order_and_counts_accuracy_per_version() -> None:
    monitor = Monitor(lambda _: DatasetDetectors(), lambda d: d, LabelJoin(60))

    def served(record_id: str, prediction: int, version: int = 1) -> Served:
        return Served("loans", "loans", version, record_id, prediction, False, START)

    monitor.observe_prediction(served("a", 1), now=0)
    _, labelled = monitor.observe_label("loans", "a", 1, now=1)
    assert [s.record_id for s in labelled] == ["a"]
    monitor.observe_label("loans", "b", 1, now=2)
    monitor.observe_prediction(served("b", 0), now=3)
    monitor.observe_prediction(served("c", 0, version=2), now=4)
    monitor.expire(now=100)
    rows = {row["model_version"]: row for row in monitor.performance()}
    assert rows[1]["labelled"] == 2 and rows[1]["accuracy"] == 0.5
    assert rows[2]["expired"] == 1 and rows[2]["labelled"] == 0
    assert monitor.join.counts()["joined"] == 2
