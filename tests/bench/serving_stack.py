"""What the serving tests and benchmark put on the stack for serving to find: the loans spec on
<namespace>.data.specs, and ModelTrained events the registry registers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from confluent_kafka import KafkaException

from shared.datasets.registry import SpecRegistry
from shared.datasets.spec import shipped_specs
from shared.events import Event
from shared.events.models import (
    ArtifactRef,
    Evaluation,
    ModelTrained,
    OffsetRange,
    TrainingLineage,
    TrainingTrigger,
)
from shared.kafka.config import client_config
from shared.kafka.producer import EventProducer
from shared.settings import PlatformSettings
from tests.waiting import wait_until


def register_loans_spec(settings: PlatformSettings, topic: str, producer: EventProducer) -> int:
    """Registers the shipped loans spec on a specs topic; returns its version."""
    specs = SpecRegistry(client_config(settings, "serving-tests"), topic, "serving-tests")
    loans = next(spec for spec in shipped_specs() if spec.name == "loans")

    def registered() -> int | None:
        try:
            return specs.register(loans, producer).version
        except KafkaException:  # a topic created a moment ago may have no leader yet
            return None

    return wait_until(registered, what="the loans spec to be registered", interval_s=0.5)


def loans_trained(
    artifact: ArtifactRef,
    run: str,
    namespace: str,
    feature_columns: Sequence[str],
    model_name: str = "loans",
) -> Event[ModelTrained]:
    """ModelTrained as training publishes it for a stored loans model. It has no baseline score,
    so the registry's policy promotes it only when no champion exists yet."""
    payload = ModelTrained(
        model_name=model_name,
        run_id=run,
        estimator="sklearn.pipeline.Pipeline",
        params={},
        seed=7,
        artifact=artifact,
        evaluation=Evaluation(
            metrics={"roc_auc": 0.9}, primary_metric="roc_auc", holdout="last 20% by event time"
        ),
        lineage=TrainingLineage(
            dataset="loans",
            spec_version=1,
            spec_fingerprint="serving-tests",
            offsets=[
                OffsetRange(
                    topic=f"{namespace}.data.features", partition=0, first_offset=0, last_offset=1
                )
            ],
            training_set_sha256="ab" * 32,
            rows=2000,
            holdout_rows=0,
            feature_columns=list(feature_columns),
            code_version="serving-tests",
            trigger=TrainingTrigger(kind="manual", requested_by="serving-tests"),
        ),
        trained_at=datetime.now(UTC),
    )
    return Event.create(payload, source="training", subject=model_name)
