"""How training reads the answers of the feature store and the registry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.registry.views import AliasView, VersionDetail
from services.training.adapters.errors import DependencyRefused
from services.training.adapters.feature_store import training_set_ref
from services.training.adapters.registry import champion_of
from shared.events.models import ArtifactRef, OffsetRange

ARTIFACT = ArtifactRef(uri="s3://mlops-models/ns/loans/run-1.skops", sha256="c" * 64, size_bytes=9)


def training_set_answer() -> dict[str, Any]:
    """An answer of the feature store's POST /training-sets."""
    offsets = [
        {"topic": "ns.data.labels", "partition": 0, "first_offset": 0, "last_offset": 99},
        {"topic": "ns.data.validated", "partition": 1, "first_offset": 5, "last_offset": 80},
    ]
    return {
        "id": "a1b2",
        "dataset": "loans",
        "until": "2024-01-01T00:00:00+00:00",
        "uri": "s3://mlops-offline/ns/training-sets/loans/a1b2.parquet",
        "location": {"bucket": "mlops-offline", "key": "ns/training-sets/loans/a1b2.parquet"},
        "rows": 176,
        "columns": ["record_id", "entity", "event_time", "salary", "label"],
        "spec_version": 2,
        "lineage": {
            "offsets": offsets,
            "features": [{**offsets[1], "rows": 76}],
            "labels": [{**offsets[0], "rows": 100}],
        },
        "counts": {"rows": 176, "labels_read": 180, "labels_unmatched": 4, "files_read": 3},
    }


def test_a_training_set_answer_gives_location_rows_columns_version_and_offsets() -> None:
    ref = training_set_ref(training_set_answer())
    assert ref.uri == "s3://mlops-offline/ns/training-sets/loans/a1b2.parquet"
    assert (ref.rows, ref.spec_version) == (176, 2)
    assert ref.columns[:3] == ["record_id", "entity", "event_time"]
    assert ref.offsets == [
        OffsetRange(topic="ns.data.labels", partition=0, first_offset=0, last_offset=99),
        OffsetRange(topic="ns.data.validated", partition=1, first_offset=5, last_offset=80),
    ]


@pytest.mark.parametrize("missing", ["uri", "rows", "lineage"])
def test_a_training_set_answer_without_its_essentials_is_refused(missing: str) -> None:
    answer = training_set_answer()
    del answer[missing]
    with pytest.raises(DependencyRefused, match=missing):
        training_set_ref(answer)


def test_a_champion_is_read_from_the_registry_s_alias_view() -> None:
    now = datetime.now(UTC)
    version = VersionDetail(
        model_name="loans",
        version=3,
        run_id="run-1",
        estimator="sklearn.ensemble.HistGradientBoostingClassifier",
        primary_metric="roc_auc",
        primary_metric_value=0.9,
        higher_is_better=True,
        trigger="manual",
        created_at=now,
        aliases=["champion"],
        params={},
        seed=0,
        artifact=ARTIFACT,
        evaluation={},
        baseline=None,
        trained_at=now,
        source_event_id="e",
        tags={},
        lineage={"dataset": "loans", "feature_columns": ["salary", "age"]},
    )
    answer = AliasView(model_name="loans", alias="champion", version=version)
    champion = champion_of(answer.model_dump(mode="json"))
    assert (champion.version, champion.artifact) == (3, ARTIFACT)
    assert champion.feature_columns == ["salary", "age"]


def test_an_unreadable_champion_record_is_refused() -> None:
    with pytest.raises(DependencyRefused, match="unreadable champion"):
        champion_of({"version": {"version": 3}})
