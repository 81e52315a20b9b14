"""The registry's tables as SQLAlchemy 2 models; migrations/ creates them (a test keeps the two
in step). Times are stored timezone-aware and always read back in UTC, SQLite included."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime that is UTC on the way out (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"refusing a naive datetime {value.isoformat()}: give it a zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime,
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class RegisteredModel(Base):
    __tablename__ = "registered_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime]


class ModelVersion(Base):
    """One registered version: what was trained, on what, how it scored, and from which event."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"))
    version: Mapped[int]
    run_id: Mapped[str] = mapped_column(String(200))
    estimator: Mapped[str] = mapped_column(String(300))
    params: Mapped[dict[str, Any]]
    seed: Mapped[int] = mapped_column(BigInteger)
    artifact_uri: Mapped[str] = mapped_column(String(1000))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_format: Mapped[str] = mapped_column(String(20))
    artifact_size_bytes: Mapped[int] = mapped_column(BigInteger)
    artifact_trusted_types: Mapped[list[str]]
    evaluation: Mapped[dict[str, Any]]
    baseline: Mapped[dict[str, Any] | None]
    lineage: Mapped[dict[str, Any]]
    trigger: Mapped[dict[str, Any]]
    trained_at: Mapped[datetime]
    created_at: Mapped[datetime]
    source_event_id: Mapped[str] = mapped_column(String(200), unique=True)
    source_trace_id: Mapped[str | None] = mapped_column(String(32))


class Alias(Base):
    """A named pointer (champion, challenger, ...) from a model to one of its versions."""

    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(50), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    updated_at: Mapped[datetime]


class ModelTag(Base):
    __tablename__ = "model_tags"

    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class VersionTag(Base):
    __tablename__ = "version_tags"

    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class AuditEntry(Base):
    """One transition, appended and never changed: who or what, when, why, and what it emitted.

    `event_json` keeps the emitted lifecycle event byte for byte, so a redelivered ModelTrained
    re-emits exactly what the first delivery did.
    """

    __tablename__ = "audit_trail"
    __table_args__ = (Index(None, "model_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"))
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    alias: Mapped[str | None] = mapped_column(String(50))
    from_version: Mapped[int | None]
    to_version: Mapped[int | None]
    caused_by_event_id: Mapped[str | None] = mapped_column(String(200), index=True)
    event_id: Mapped[str | None] = mapped_column(String(200))
    event_type: Mapped[str | None] = mapped_column(String(200))
    event_json: Mapped[str | None] = mapped_column(Text)
    trace_id: Mapped[str | None] = mapped_column(String(32))


class DriftRecord(Base):
    """A DriftDetected read from monitoring.drift, kept whole: the evidence lineage shows for
    the versions it triggered."""

    __tablename__ = "drift_events"

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(100), index=True)
    event_json: Mapped[str] = mapped_column(Text)
    trace_id: Mapped[str | None] = mapped_column(String(32))
    received_at: Mapped[datetime]


class Deployment(Base):
    """A serving instance swapped a version in (a ModelDeployed read from models.lifecycle)."""

    __tablename__ = "deployments"
    __table_args__ = (Index(None, "model_name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), unique=True)
    model_name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int]
    alias: Mapped[str] = mapped_column(String(50))
    instance: Mapped[str] = mapped_column(String(200))
    cause_event_id: Mapped[str | None] = mapped_column(String(200))
    deployed_at: Mapped[datetime]
    trace_id: Mapped[str | None] = mapped_column(String(32))
