"""The registry's queries, on one SQLAlchemy session (one transaction) at a time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, select
from sqlalchemy.orm import Session

from services.registry.adapters.orm import (
    Alias,
    AuditEntry,
    Deployment,
    DriftRecord,
    ModelTag,
    ModelVersion,
    RegisteredModel,
    VersionTag,
)
from services.registry.domain.events import Action
from services.registry.domain.rollback import AliasChange


class Repository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # --- models and versions -----------------------------------------------------------------

    def models(self) -> Sequence[RegisteredModel]:
        return self.session.scalars(select(RegisteredModel).order_by(RegisteredModel.name)).all()

    def model(self, name: str, *, lock: bool = False) -> RegisteredModel | None:
        """The model; `lock` holds its row until commit, so changes to one model queue up."""
        query = select(RegisteredModel).where(RegisteredModel.name == name)
        if lock:
            query = query.with_for_update()
        return self.session.scalars(query).first()

    def add_model(self, name: str, now: datetime) -> RegisteredModel:
        model = RegisteredModel(name=name, created_at=now)
        self.session.add(model)
        self.session.flush()
        return model

    def latest_version_number(self, model: RegisteredModel) -> int:
        query = select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)
        return self.session.scalar(query) or 0

    def model_rows(self, model_id: int | None = None) -> Sequence[Row[Any]]:
        """Every model (or the one with `model_id`) by name: its id, name, created_at, versions
        (how many) and latest_version (None without versions), in one query however many
        models there are (Core rows: no ORM objects to build)."""
        counted = select(
            ModelVersion.model_id,
            func.count().label("versions"),
            func.max(ModelVersion.version).label("latest_version"),
        ).group_by(ModelVersion.model_id)
        models = select(RegisteredModel.id, RegisteredModel.name, RegisteredModel.created_at)
        if model_id is not None:
            counted = counted.where(ModelVersion.model_id == model_id)
            models = models.where(RegisteredModel.id == model_id)
        per_model = counted.subquery()
        query = (
            models.add_columns(
                func.coalesce(per_model.c.versions, 0).label("versions"),
                per_model.c.latest_version,
            )
            .outerjoin(per_model, per_model.c.model_id == RegisteredModel.id)
            .order_by(RegisteredModel.name)
        )
        return self.session.connection().execute(query).all()

    def version_by_source_event(self, event_id: str) -> ModelVersion | None:
        query = select(ModelVersion).where(ModelVersion.source_event_id == event_id)
        return self.session.scalars(query).first()

    def version(self, model: RegisteredModel, number: int) -> ModelVersion | None:
        query = select(ModelVersion).where(
            ModelVersion.model_id == model.id, ModelVersion.version == number
        )
        return self.session.scalars(query).first()

    def versions(self, model: RegisteredModel) -> Sequence[ModelVersion]:
        query = (
            select(ModelVersion)
            .where(ModelVersion.model_id == model.id)
            .order_by(ModelVersion.version)
        )
        return self.session.scalars(query).all()

    def add_version(self, version: ModelVersion) -> ModelVersion:
        self.session.add(version)
        self.session.flush()
        return version

    # --- aliases -----------------------------------------------------------------------------

    def alias_holder(self, model: RegisteredModel, alias: str) -> ModelVersion | None:
        query = (
            select(ModelVersion)
            .join(Alias, Alias.version_id == ModelVersion.id)
            .where(Alias.model_id == model.id, Alias.alias == alias)
        )
        return self.session.scalars(query).first()

    def aliases(self, model: RegisteredModel) -> dict[str, int]:
        """Alias -> version number, for every alias of the model."""
        query = (
            select(Alias.alias, ModelVersion.version)
            .join(ModelVersion, Alias.version_id == ModelVersion.id)
            .where(Alias.model_id == model.id)
            .order_by(Alias.alias)
        )
        return dict(self.session.execute(query).all())

    def aliases_by_model(self) -> dict[int, dict[str, int]]:
        """Model id -> (alias -> version number), for every model that has aliases, in one
        query; each model's aliases in name order, as `aliases` gives them."""
        query = (
            select(Alias.model_id, Alias.alias, ModelVersion.version)
            .join(ModelVersion, Alias.version_id == ModelVersion.id)
            .order_by(Alias.model_id, Alias.alias)
        )
        held: dict[int, dict[str, int]] = {}
        for model_id, alias, number in self.session.connection().execute(query):
            held.setdefault(model_id, {})[alias] = number
        return held

    def set_alias(
        self, model: RegisteredModel, alias: str, version: ModelVersion, now: datetime
    ) -> None:
        row = self.session.get(Alias, (model.id, alias))
        if row is None:
            self.session.add(
                Alias(model_id=model.id, alias=alias, version_id=version.id, updated_at=now)
            )
        else:
            row.version_id, row.updated_at = version.id, now
        self.session.flush()

    def remove_alias(self, model: RegisteredModel, alias: str) -> None:
        self.session.execute(delete(Alias).where(Alias.model_id == model.id, Alias.alias == alias))

    # --- tags --------------------------------------------------------------------------------

    def model_tags(self, model: RegisteredModel) -> dict[str, str]:
        query = select(ModelTag.key, ModelTag.value).where(ModelTag.model_id == model.id)
        return dict(self.session.execute(query.order_by(ModelTag.key)).all())

    def version_tags(self, version: ModelVersion) -> dict[str, str]:
        query = select(VersionTag.key, VersionTag.value).where(VersionTag.version_id == version.id)
        return dict(self.session.execute(query.order_by(VersionTag.key)).all())

    def set_model_tag(self, model: RegisteredModel, key: str, value: str, now: datetime) -> None:
        row = self.session.get(ModelTag, (model.id, key))
        if row is None:
            self.session.add(ModelTag(model_id=model.id, key=key, value=value, updated_at=now))
        else:
            row.value, row.updated_at = value, now

    def set_version_tag(self, version: ModelVersion, key: str, value: str, now: datetime) -> None:
        row = self.session.get(VersionTag, (version.id, key))
        if row is None:
            self.session.add(
                VersionTag(version_id=version.id, key=key, value=value, updated_at=now)
            )
        else:
            row.value, row.updated_at = value, now

    def delete_model_tag(self, model: RegisteredModel, key: str) -> bool:
        row = self.session.get(ModelTag, (model.id, key))
        if row is not None:
            self.session.delete(row)
        return row is not None

    def delete_version_tag(self, version: ModelVersion, key: str) -> bool:
        row = self.session.get(VersionTag, (version.id, key))
        if row is not None:
            self.session.delete(row)
        return row is not None

    # --- the audit trail ---------------------------------------------------------------------

    def append(self, entry: AuditEntry) -> None:
        self.session.add(entry)
        self.session.flush()

    def audit(self, model: RegisteredModel, after_id: int, limit: int) -> Sequence[AuditEntry]:
        query = (
            select(AuditEntry)
            .where(AuditEntry.model_id == model.id, AuditEntry.id > after_id)
            .order_by(AuditEntry.id)
            .limit(limit)
        )
        return self.session.scalars(query).all()

    def emitted_for(self, event_id: str) -> list[str]:
        """The lifecycle events emitted for an input event, in the order they were emitted."""
        query = (
            select(AuditEntry.event_json)
            .where(AuditEntry.caused_by_event_id == event_id, AuditEntry.event_json.is_not(None))
            .order_by(AuditEntry.id)
        )
        return [document for document in self.session.scalars(query) if document is not None]

    def alias_history(self, model: RegisteredModel, alias: str) -> list[AliasChange]:
        query = (
            select(AuditEntry.action, AuditEntry.to_version)
            .where(
                AuditEntry.model_id == model.id,
                AuditEntry.alias == alias,
                AuditEntry.action.in_(Action.MOVES_ALIAS),
                AuditEntry.to_version.is_not(None),
            )
            .order_by(AuditEntry.id)
        )
        return [AliasChange(action, to) for action, to in self.session.execute(query)]

    def version_entries(self, model: RegisteredModel, number: int) -> Sequence[AuditEntry]:
        """The audit entries that moved a version in or out, or changed it, oldest first."""
        query = (
            select(AuditEntry)
            .where(
                AuditEntry.model_id == model.id,
                (AuditEntry.to_version == number) | (AuditEntry.from_version == number),
            )
            .order_by(AuditEntry.id)
        )
        return self.session.scalars(query).all()

    # --- what lineage adds: drifts and deployments -------------------------------------------

    def drift(self, event_id: str) -> DriftRecord | None:
        return self.session.get(DriftRecord, event_id)

    def add_drift(self, record: DriftRecord) -> None:
        self.session.add(record)
        self.session.flush()

    def deployment(self, event_id: str) -> Deployment | None:
        query = select(Deployment).where(Deployment.event_id == event_id)
        return self.session.scalars(query).first()

    def add_deployment(self, deployment: Deployment) -> None:
        self.session.add(deployment)
        self.session.flush()

    def deployments(self, model_name: str, number: int) -> Sequence[Deployment]:
        query = (
            select(Deployment)
            .where(Deployment.model_name == model_name, Deployment.version == number)
            .order_by(Deployment.deployed_at, Deployment.id)
        )
        return self.session.scalars(query).all()
