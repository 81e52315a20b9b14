"""What the HTTP API answers: typed views of models, versions and the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared.events.models import ArtifactRef


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class ModelSummary(_View):
    name: str
    created_at: datetime
    versions: int
    latest_version: int | None
    aliases: dict[str, int]


class ModelDetail(ModelSummary):
    tags: dict[str, str]


class VersionSummary(_View):
    model_name: str
    version: int
    run_id: str
    estimator: str
    primary_metric: str | None
    primary_metric_value: Any
    higher_is_better: bool | None
    trigger: str | None
    created_at: datetime
    aliases: list[str]


class VersionDetail(VersionSummary):
    params: dict[str, Any]
    seed: int
    artifact: ArtifactRef
    evaluation: dict[str, Any]
    baseline: dict[str, Any] | None
    trained_at: datetime
    source_event_id: str
    tags: dict[str, str]
    lineage: dict[str, Any]


class AliasView(_View):
    model_name: str
    alias: str
    version: VersionDetail


class _VersionLineage(_View):
    """What both lineage views say of a version: its run, artifact, parameters and the lineage
    training recorded."""

    model_name: str
    version: int
    run_id: str
    source_event_id: str
    artifact: ArtifactRef
    params: dict[str, Any]
    seed: int
    lineage: dict[str, Any]


class Lineage(_VersionLineage):
    trigger: dict[str, Any]


class TrainingRun(_View):
    """How a version was trained, and the trace its ModelTrained came in."""

    run_id: str
    estimator: str
    params: dict[str, Any]
    seed: int
    evaluation: dict[str, Any]
    baseline: dict[str, Any] | None
    artifact: ArtifactRef
    trained_at: datetime
    code_version: str | None
    library_versions: dict[str, Any]
    source_event_id: str
    trace_id: str | None


class TriggerView(_View):
    """Why it was trained; for a drift, the DriftDetected itself and the trace it came in."""

    kind: str
    event_id: str | None
    reason: str
    requested_by: str | None
    since: datetime | None
    event: dict[str, Any] | None = None
    trace_id: str | None = None


class DeploymentView(_View):
    instance: str
    alias: str
    deployed_at: datetime
    cause_event_id: str | None
    event_id: str
    trace_id: str | None


class LineageDocument(_VersionLineage):
    """Everything about one version, from the data it was trained on to where it serves; the
    fields of `Lineage` (run_id ... lineage) too, so it can stand in for it."""

    dataset: str
    spec_version: int | None
    spec_fingerprint: str | None
    offsets: list[dict[str, Any]]
    rows: int | None
    holdout_rows: int | None
    training_set: dict[str, Any]
    data_quality: dict[str, Any]
    feature_columns: list[str]
    feature_definitions: dict[str, Any]
    training: TrainingRun
    trigger: TriggerView
    decisions: list[AuditView]
    deployments: list[DeploymentView]


class Comparison(_View):
    model_name: str
    a: int
    b: int
    primary_metric: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    params: dict[str, dict[str, Any]]
    lineage: dict[str, dict[str, Any]]


class AuditView(_View):
    id: int
    at: datetime
    action: str
    actor: str
    reason: str
    alias: str | None
    from_version: int | None
    to_version: int | None
    caused_by_event_id: str | None
    event_id: str | None
    event_type: str | None
    trace_id: str | None


class Change(_View):
    """The answer to a mutating request: what changed and the lifecycle event it published."""

    model_name: str
    changed: bool
    alias: str | None = None
    version: int | None = None
    previous_version: int | None = None
    event_id: str | None = None
    event_type: str | None = None
    reason: str | None = None
