"""The models.trained route: what it consumes, what it emits, and how lifecycle events are keyed."""

from __future__ import annotations

from datetime import UTC, datetime

from services.registry.adapters.database import create_registry_engine, migrate
from services.registry.domain.policy import PromotionPolicy
from services.registry.handlers import PUBLISHES, Deps, routes
from services.registry.lifecycle import Registry
from services.registry.queries import RegistryQueries
from shared.events import Event
from shared.events.models import (
    ArtifactRef,
    DriftDetected,
    Evaluation,
    ModelDeployed,
    ModelTrained,
    TrainingFailed,
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
    route, drifts, lifecycle = routes(Deps(registry()))
    assert (route.consumes, route.payloads, route.emits) == (
        "models.trained",
        (ModelTrained, TrainingFailed),
        ("models.lifecycle",),
    )
    assert (drifts.consumes, drifts.payloads, drifts.emits) == (
        "monitoring.drift",
        (DriftDetected,),
        (),
    )
    assert lifecycle.consumes == "models.lifecycle" and ModelDeployed in lifecycle.payloads
    assert lifecycle.emits == ()
    assert PUBLISHES == ("models.lifecycle",)
    (subscription,) = bind([route], "ns1", 1_000_000)
    assert subscription.topic == "ns1.models.trained"
    assert subscription.emits == {"models.lifecycle": "ns1.models.lifecycle"}


def test_lifecycle_events_are_keyed_by_model_and_version() -> None:
    route, _, _ = routes(Deps(registry()))
    info = MessageInfo("ns1.models.trained", 0, 0, b"churn", None)
    emits = route.handler(a_model_trained(), info)
    assert emits is not None
    assert [(e.topic, e.key, e.event.type) for e in emits] == [
        ("models.lifecycle", "churn:1", "mlops.ModelRegistered"),
        ("models.lifecycle", "churn:1", "mlops.ModelPromoted"),
    ]


def test_a_failed_training_registers_nothing_and_is_not_dead_lettered() -> None:
    service = registry()
    route, _, _ = routes(Deps(service))
    failed = TrainingFailed(
        model_name="churn",
        dataset="churn",
        command_id="cmd-1",
        trigger=TrainingTrigger(kind="manual"),
        outcome="refused",
        reason="unknown dataset 'churn'",
        error="TrainingRefused",
        failed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    info = MessageInfo("ns1.models.trained", 0, 0, b"churn", None)
    assert route.handler(Event.create(failed, source="training"), info) == []
    emits = route.handler(a_model_trained(), info)
    assert emits is not None and emits[0].key == "churn:1", "the failure took a version number"


def a_drift() -> Event[DriftDetected]:
    payload = DriftDetected(
        dataset="churn",
        model_name="churn",
        model_version=1,
        signal="error",
        signal_kind="error",
        detector="ADWIN",
        detector_params={"delta": 0.002},
        position=812,
        detected_at=datetime(2026, 1, 1, tzinfo=UTC),
        reference={"mean": 0.1},
        current={"mean": 0.4},
    )
    return Event.create(payload, source="monitoring", subject="churn").model_copy(
        update={"id": "drift-1"}
    )


def a_deployment(version: int, instance: str) -> Event[ModelDeployed]:
    payload = ModelDeployed(
        model_name="churn",
        version=version,
        instance=instance,
        artifact=ArtifactRef(uri="s3://models/churn/run-7.skops", sha256="0" * 64, size_bytes=9),
        cause_event_id="promoted-1",
        deployed_at=datetime(2026, 1, 2, tzinfo=UTC),
    )
    return Event.create(payload, source="serving", subject="churn")


def test_lineage_shows_the_drift_the_decisions_and_the_deployments_of_a_version() -> None:
    kept = registry()
    trained, drifts, lifecycle = (route.handler for route in routes(Deps(kept)))
    drift = a_drift()
    info = MessageInfo("ns1.x", 0, 0, None, None)
    drifts(drift, info)
    drifts(drift, info)  # redelivered: kept once
    emitted = list(trained(a_model_trained(), info) or [])
    for emit in emitted:  # the registry reads its own events back and leaves them alone
        lifecycle(emit.event, info)
    deployed = a_deployment(1, "serving-a")
    lifecycle(deployed, info)
    lifecycle(deployed, info)
    lifecycle(a_deployment(2, "serving-a"), info)

    document = RegistryQueries(kept).lineage_document("churn", 1)

    assert document.trigger.kind == "drift"
    assert document.trigger.event is not None
    assert document.trigger.event["id"] == "drift-1"
    assert document.trigger.event["data"]["detector"] == "ADWIN"
    assert document.trigger.event["data"]["current"] == {"mean": 0.4}
    assert [d.action for d in document.decisions] == ["registered", "promoted"]
    assert [d.event_id for d in document.decisions] == [e.event.id for e in emitted]
    assert [(d.instance, d.event_id) for d in document.deployments] == [("serving-a", deployed.id)]
    assert document.spec_version == 2 and document.training.run_id == "run-7"
