"""The models.trained route: what it consumes, what it emits, and how lifecycle events are keyed."""

from __future__ import annotations

from datetime import UTC, datetime

from services.registry.adapters.database import create_registry_engine, migrate
from services.registry.domain.policy import PromotionPolicy
from services.registry.handlers import PUBLISHES, Deps, routes
from services.registry.lifecycle import Registry
from shared.events import Event
from shared.events.models import (
    ArtifactRef,
    Evaluation,
    ModelTrained,
    TrainingLineage,
    TrainingTrigger,
)
from shared.kafka.consumer import MessageInfo
from shared.kafka.routes import bind


def a_model_trained() -> Event[ModelTrained]:
    payload = ModelTrained(
        model_name="churn",
        run_id="run-7",
        estimator="sklearn.linear_model.LogisticRegression",
        params={"C": 0.5},
        seed=1,
        artifact=ArtifactRef(uri="s3://models/churn/run-7.skops", sha256="0" * 64, size_bytes=9),
        evaluation=Evaluation(metrics={"f1": 0.7}, primary_metric="f1", holdout="last 10%"),
        lineage=TrainingLineage(
            dataset="churn",
            spec_version=2,
            spec_fingerprint="abc",
            offsets=[],
            training_set_sha256="1" * 64,
            rows=10,
            holdout_rows=1,
            feature_columns=["x"],
            code_version="unknown",
            trigger=TrainingTrigger(kind="drift", event_id="drift-1", reason="psi 0.3"),
        ),
        trained_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return Event.create(payload, source="training", subject="churn")


def registry() -> Registry:
    engine = create_registry_engine("sqlite://")
    migrate(engine)
    return Registry(engine, PromotionPolicy())


def test_the_registry_consumes_models_trained_and_emits_to_models_lifecycle() -> None:
    (route,) = routes(Deps(registry()))
    assert (route.consumes, route.payloads, route.emits) == (
        "models.trained",
        (ModelTrained,),
        ("models.lifecycle",),
    )
    assert PUBLISHES == ("models.lifecycle",)
    (subscription,) = bind([route], "ns1", 1_000_000)
    assert subscription.topic == "ns1.models.trained"
    assert subscription.emits == {"models.lifecycle": "ns1.models.lifecycle"}


def test_lifecycle_events_are_keyed_by_model_and_version() -> None:
    (route,) = routes(Deps(registry()))
    info = MessageInfo("ns1.models.trained", 0, 0, b"churn", None)
    emits = route.handler(a_model_trained(), info)
    assert emits is not None
    assert [(e.topic, e.key, e.event.type) for e in emits] == [
        ("models.lifecycle", "churn:1", "mlops.ModelRegistered"),
        ("models.lifecycle", "churn:1", "mlops.ModelPromoted"),
    ]
