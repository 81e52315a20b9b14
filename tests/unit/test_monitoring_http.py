"""GET /drift and GET /performance: what they show after a drift and a few labels."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

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
