"""GET /drift and GET /performance: what they show after a drift and a few labels."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from services.monitoring.adapters.history import History
from services.monitoring.domain.series import PerformanceSeries
from services.monitoring.http import monitoring_router
from tests.unit.test_monitoring_handlers import feed_shift, handler, info, label, make, prediction


def client_for(deps) -> TestClient:  # type: ignore[no-untyped-def]
    app = FastAPI()
    app.include_router(monitoring_router(deps, limit=10, label_wait_s=60))
    return TestClient(app)


def test_drift_shows_detectors_breakers_and_the_policy() -> None:
    deps, _, _ = make()
    feed_shift(deps)
    body = client_for(deps).get("/drift").json()
    salary = next(d for d in body["detectors"] if d["signal"] == "salary")
    assert salary["detector"] == "ADWIN" and salary["drifts"] >= 1 and salary["position"] == 800
    assert body["breakers"]["loans"]["open"] is False
    assert body["breakers"]["loans"]["retrains_last_hour"] == 1
    assert body["policy"]["min_labels_after_drift"] == 0


def test_performance_shows_accuracy_and_expiry_per_version() -> None:
    deps, _, clock = make()
    serve, labels = handler(deps, "serving.predictions"), handler(deps, "data.labels")
    for i in range(4):
        serve(prediction(i, 1), info("p", i))
    labels(label(0, 1), info("l", 0))
    labels(label(1, 0), info("l", 1))
    clock.now += 61
    body = client_for(deps).get("/performance").json()
    (row,) = body["models"]
    assert (row["model_name"], row["model_version"]) == ("loans", 3)
    assert row["labelled"] == 2 and row["accuracy"] == 0.5 and row["expired"] == 2
    assert body["join"]["expired_predictions"] == 2 and body["join"]["label_wait_s"] == 60


def test_performance_history_keeps_a_bounded_series_per_version() -> None:
    deps, _, _ = make()
    deps.series = PerformanceSeries(points_per_version=3)
    serve, labels = handler(deps, "serving.predictions"), handler(deps, "data.labels")
    for i in range(20):
        serve(prediction(i, 1), info("p", i))
        labels(label(i, 1 if i % 2 else 0), info("l", i))
    body = client_for(deps).get("/performance/loans/history").json()
    assert body["model"] == "loans" and body["source"] == "memory"
    points = body["points"]
    assert len(points) == 3  # 10 snapshots (every 2 labels), the last 3 kept
    assert [p["labelled"] for p in points] == [16, 18, 20]
    assert all(p["model_version"] == 3 and p["accuracy"] == 0.5 for p in points)
    assert points == sorted(points, key=lambda p: p["at"])


def test_performance_history_of_an_unknown_model_is_empty_and_a_bad_name_refused() -> None:
    deps, _, _ = make()
    deps.series = PerformanceSeries(points_per_version=3)
    client = client_for(deps)
    assert client.get("/performance/nobody/history").json()["points"] == []
    assert client.get("/performance/Bad%20Name/history").status_code == 422


def test_the_series_drops_the_oldest_points_of_each_version_alone() -> None:
    series = PerformanceSeries(points_per_version=2)
    for at in range(5):
        series.add(float(at), [{"model_name": "m", "model_version": 1, "accuracy": 0.1 * at}])
    series.add(9.0, [{"model_name": "m", "model_version": 2, "mae": 1.5, "task": "regression"}])
    series.add(9.0, [{"model_name": "other", "model_version": 1, "accuracy": 1.0}])
    points = series.of("m")
    assert [(p["model_version"], p["at"]) for p in points] == [(1, 3.0), (1, 4.0), (2, 9.0)]
    assert points[2]["mae"] == 1.5 and points[2]["task"] == "regression"
    assert series.models() == ["m", "other"]
    with pytest.raises(ValueError):
        PerformanceSeries(points_per_version=0)


def test_after_a_restart_the_history_comes_from_sql_bounded_per_version(tmp_path: Path) -> None:
    history = History(create_engine(f"sqlite:///{tmp_path / 'h.sqlite'}"), "ns")
    for at in range(6):
        rows = [
            {
                "model_name": "m",
                "model_version": version,
                "labelled": at,
                "served": at,
                "expired": 0,
            }
            for version in (1, 2)
        ]
        history.record_performance(float(at), [*rows, {**rows[0], "model_name": "other"}])
    deps, _, _ = make()
    deps.history = history  # type: ignore[assignment]
    deps.series = PerformanceSeries(points_per_version=4)  # empty: the process just started
    body = client_for(deps).get("/performance/m/history").json()
    assert body["source"] == "sql"
    kept = [(p["model_version"], p["labelled"]) for p in body["points"]]
    assert kept == [(1, 2), (1, 3), (1, 4), (1, 5), (2, 2), (2, 3), (2, 4), (2, 5)]
    again = client_for(deps).get("/performance/m/history").json()
    assert again["source"] == "memory" and again["points"] == body["points"]


def test_a_snapshot_of_classification_and_regression_models_together_is_saved(
    tmp_path: Path,
) -> None:
    """Rows of different shapes (accuracy for one task, mae and rmse for the other) in one
    snapshot: the insert takes every column of every row."""
    history = History(create_engine(f"sqlite:///{tmp_path / 'h.sqlite'}"), "ns")
    common = {"model_version": 1, "labelled": 10, "served": 10, "expired": 0}
    history.record_performance(
        1.0,
        [
            {**common, "model_name": "loans", "task": "classification", "accuracy": 0.9},
            {**common, "model_name": "homes", "task": "regression", "mae": 2.0, "rmse": 3.0},
        ],
    )
    saved = {row["model_name"]: row for row in history.performance_history(10)}
    assert saved["loans"]["accuracy"] == 0.9 and saved["loans"]["mae"] is None
    assert saved["homes"]["mae"] == 2.0 and saved["homes"]["accuracy"] is None
