"""The registry's read side: models, versions, aliases, comparisons and the audit trail, as
the views the HTTP API answers with."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Row

from services.registry.adapters.orm import AuditEntry, Deployment, ModelVersion, RegisteredModel
from services.registry.adapters.repository import Repository
from services.registry.domain.compare import better_of, differences, metrics_side_by_side
from services.registry.domain.errors import NotFound
from services.registry.lifecycle import Registry, artifact_of, existing_model, existing_version
from services.registry.views import (
    AliasView,
    AuditView,
    Comparison,
    DeploymentView,
    Lineage,
    LineageDocument,
    ModelDetail,
    ModelSummary,
    TrainingRun,
    TriggerView,
    VersionDetail,
    VersionSummary,
)


class RegistryQueries:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def models(self) -> list[ModelSummary]:
        """Every model by name; two queries however many models there are (no query per model)."""
        with self._registry.reading() as repo:
            rows = repo.model_rows()
            held = repo.aliases_by_model()
            return [ModelSummary(**_model_fields(row, held.get(row.id, {}))) for row in rows]

    def model(self, name: str) -> ModelDetail:
        with self._registry.reading() as repo:
            model = existing_model(repo, name)
            (row,) = repo.model_rows(model.id)
            return ModelDetail(
                **_model_fields(row, repo.aliases(model)), tags=repo.model_tags(model)
            )

    def versions(self, name: str) -> list[VersionSummary]:
        with self._registry.reading() as repo:
            model = existing_model(repo, name)
            held = _aliases_by_version(repo, model)
            return [
                VersionSummary(**_summary_fields(model, v, held.get(v.version, [])))
                for v in repo.versions(model)
            ]

    def version(self, name: str, number: int) -> VersionDetail:
        with self._registry.reading() as repo:
            model = existing_model(repo, name)
            return _detail(repo, model, existing_version(repo, model, number))

    def alias(self, name: str, alias: str) -> AliasView:
        with self._registry.reading() as repo:
            model = existing_model(repo, name)
            holder = repo.alias_holder(model, alias)
            if holder is None:
                held = ", ".join(repo.aliases(model)) or "none"
                raise NotFound(f"no version of {name} holds the alias {alias!r} (aliases: {held})")
            return AliasView(model_name=name, alias=alias, version=_detail(repo, model, holder))

    def lineage(self, name: str, number: int) -> Lineage:
        with self._registry.reading() as repo:
            model = existing_model(repo, name)
            version = existing_version(repo, model, number)
            return Lineage(**_version_lineage_fields(model, version), trigger=version.trigger)

    def lineage_document(self, name: str, number: int) -> LineageDocument:
        """The whole story of one version: data, training, trigger, decisions, deployments."""
        with self._registry.reading() as repo:
            model = existing_model(repo, name)
            version = existing_version(repo, model, number)
            kept = version.lineage
            return LineageDocument(
                **_version_lineage_fields(model, version),
                dataset=kept.get("dataset", ""),
                spec_version=kept.get("spec_version"),
                spec_fingerprint=kept.get("spec_fingerprint"),
                offsets=kept.get("offsets", []),
                rows=kept.get("rows"),
                holdout_rows=kept.get("holdout_rows"),
                training_set={
                    "uri": kept.get("training_set_uri"),
                    "sha256": kept.get("training_set_sha256"),
                },
                data_quality=kept.get("data_quality", {}),
                feature_columns=kept.get("feature_columns", []),
                feature_definitions=kept.get("feature_definitions", {}),
                training=_training_run(version),
                trigger=_trigger(repo, version),
                decisions=[_audit_view(entry) for entry in repo.version_entries(model, number)],
                deployments=[_deployment_view(d) for d in repo.deployments(name, number)],
            )

    def compare(self, name: str, a: int, b: int) -> Comparison:
        with self._registry.reading() as repo:
            model = existing_model(repo, name)
            first, second = existing_version(repo, model, a), existing_version(repo, model, b)
            return Comparison(
                model_name=name,
                a=a,
                b=b,
                primary_metric=_primary(first, second),
                metrics=metrics_side_by_side(
                    first.evaluation.get("metrics", {}), second.evaluation.get("metrics", {})
                ),
                params=differences(
                    {**first.params, "seed": first.seed, "estimator": first.estimator},
                    {**second.params, "seed": second.seed, "estimator": second.estimator},
                ),
                lineage=differences(first.lineage, second.lineage),
            )

    def audit(self, name: str, after: int = 0, limit: int = 1000) -> list[AuditView]:
        with self._registry.reading() as repo:
            model = existing_model(repo, name)
            return [_audit_view(entry) for entry in repo.audit(model, after, limit)]


def _model_fields(row: Row[Any], aliases: dict[str, int]) -> dict[str, Any]:
    return {
        "name": row.name,
        "created_at": row.created_at,
        "versions": row.versions,
        "latest_version": row.latest_version or None,
        "aliases": aliases,
    }


def _aliases_by_version(repo: Repository, model: RegisteredModel) -> dict[int, list[str]]:
    held: dict[int, list[str]] = {}
    for alias, number in repo.aliases(model).items():
        held.setdefault(number, []).append(alias)
    return held


def _summary_fields(
    model: RegisteredModel, version: ModelVersion, aliases: list[str]
) -> dict[str, Any]:
    evaluation = version.evaluation
    metric = evaluation.get("primary_metric")
    return {
        "model_name": model.name,
        "version": version.version,
        "run_id": version.run_id,
        "estimator": version.estimator,
        "primary_metric": metric,
        "primary_metric_value": evaluation.get("metrics", {}).get(metric),
        "higher_is_better": evaluation.get("higher_is_better"),
        "trigger": version.trigger.get("kind"),
        "created_at": version.created_at,
        "aliases": sorted(aliases),
    }


def _detail(repo: Repository, model: RegisteredModel, version: ModelVersion) -> VersionDetail:
    aliases = _aliases_by_version(repo, model).get(version.version, [])
    return VersionDetail(
        **_summary_fields(model, version, aliases),
        params=version.params,
        seed=version.seed,
        artifact=artifact_of(version),
        evaluation=version.evaluation,
        baseline=version.baseline,
        trained_at=version.trained_at,
        source_event_id=version.source_event_id,
        tags=repo.version_tags(version),
        lineage=version.lineage,
    )


def _version_lineage_fields(model: RegisteredModel, version: ModelVersion) -> dict[str, Any]:
    """The fields `Lineage` and `LineageDocument` share (their base, `_VersionLineage`)."""
    return {
        "model_name": model.name,
        "version": version.version,
        "run_id": version.run_id,
        "source_event_id": version.source_event_id,
        "artifact": artifact_of(version),
        "params": version.params,
        "seed": version.seed,
        "lineage": version.lineage,
    }


def _primary(first: ModelVersion, second: ModelVersion) -> dict[str, Any]:
    """The primary metric of b (the newer one, usually), both values and which is better."""
    metric = second.evaluation.get("primary_metric")
    higher = bool(second.evaluation.get("higher_is_better", True))
    value_a = first.evaluation.get("metrics", {}).get(metric)
    value_b = second.evaluation.get("metrics", {}).get(metric)
    return {
        "name": metric,
        "higher_is_better": higher,
        "a": value_a,
        "b": value_b,
        "better": better_of(value_a, value_b, higher),
        "same_holdout": first.evaluation.get("holdout") == second.evaluation.get("holdout"),
    }


def _audit_view(entry: AuditEntry) -> AuditView:
    return AuditView(
        id=entry.id,
        at=entry.at,
        action=entry.action,
        actor=entry.actor,
        reason=entry.reason,
        alias=entry.alias,
        from_version=entry.from_version,
        to_version=entry.to_version,
        caused_by_event_id=entry.caused_by_event_id,
        event_id=entry.event_id,
        event_type=entry.event_type,
        trace_id=entry.trace_id,
    )


def _training_run(version: ModelVersion) -> TrainingRun:
    return TrainingRun(
        run_id=version.run_id,
        estimator=version.estimator,
        params=version.params,
        seed=version.seed,
        evaluation=version.evaluation,
        baseline=version.baseline,
        artifact=artifact_of(version),
        trained_at=version.trained_at,
        code_version=version.lineage.get("code_version"),
        library_versions=version.lineage.get("library_versions", {}),
        source_event_id=version.source_event_id,
        trace_id=version.source_trace_id,
    )


def _trigger(repo: Repository, version: ModelVersion) -> TriggerView:
    """The trigger as training recorded it; a drift's DriftDetected when the registry read it."""
    trigger = version.trigger
    drift = repo.drift(trigger["event_id"]) if trigger.get("event_id") else None
    return TriggerView(
        kind=trigger.get("kind", "unknown"),
        event_id=trigger.get("event_id"),
        reason=trigger.get("reason", ""),
        requested_by=trigger.get("requested_by"),
        since=trigger.get("since"),
        event=json.loads(drift.event_json) if drift is not None else None,
        trace_id=drift.trace_id if drift is not None else None,
    )


def _deployment_view(deployment: Deployment) -> DeploymentView:
    return DeploymentView(
        instance=deployment.instance,
        alias=deployment.alias,
        deployed_at=deployment.deployed_at,
        cause_event_id=deployment.cause_event_id,
        event_id=deployment.event_id,
        trace_id=deployment.trace_id,
    )
