"""Monitoring's SQL history: drift events, retraining decisions, the outcomes of the retrains
they triggered, and performance snapshots, in tables named after the namespace (SQLite by
default, PostgreSQL when configured), so they can be plotted and survive a restart.

No migration framework: tables are created with create_all, and columns added since a table
was created are added with ALTER TABLE ... ADD COLUMN (nullable) at start-up."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)

from services.monitoring.domain.policy import Decision
from services.monitoring.domain.retrains import RetrainResult
from shared.events.envelope import Event
from shared.events.models import DriftDetected


def table_prefix(namespace: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", namespace.lower()) + "_monitoring"


class History:
    def __init__(self, engine: Engine, namespace: str) -> None:
        self._engine = engine
        prefix = table_prefix(namespace)
        metadata = MetaData()
        self.drifts = Table(
            f"{prefix}_drifts",
            metadata,
            Column("event_id", String(200), primary_key=True),
            Column("detected_at", DateTime(timezone=True), nullable=False),
            Column("dataset", String(200), nullable=False),
            Column("model_name", String(200), nullable=False),
            Column("model_version", Integer),
            Column("signal", String(200), nullable=False),
            Column("signal_kind", String(20), nullable=False),
            Column("detector", String(50), nullable=False),
            Column("position", Integer, nullable=False),
            Column("event", Text, nullable=False),
        )
        self.decisions = Table(
            f"{prefix}_decisions",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("decision_id", String(200), nullable=False, unique=True),
            Column("decided_at", Float, nullable=False),
            Column("model_name", String(200), nullable=False),
            Column("action", String(20), nullable=False),
            Column("reason", Text, nullable=False),
            Column("drift_id", String(200), nullable=False),
            Column("breaker_open", Boolean, nullable=False),
            Column("labels_after_drift", Integer, nullable=False),
            Column("command_id", String(200)),
            Column("outcome", Text),
        )
        self.results = Table(
            f"{prefix}_retrain_outcomes",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("result_id", String(200), nullable=False, unique=True),
            Column("command_id", String(200), nullable=False, index=True),
            Column("model_name", String(200), nullable=False),
            Column("drift_id", String(200), nullable=False),
            Column("outcome", String(20), nullable=False),
            Column("version", Integer),
            Column("detail", Text, nullable=False),
            Column("at", Float, nullable=False),
        )
        self.performance = Table(
            f"{prefix}_performance",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("at", Float, nullable=False),
            Column("model_name", String(200), nullable=False),
            Column("model_version", Integer, nullable=False),
            Column("labelled", Integer, nullable=False),
            Column("accuracy", Float),
            Column("last_100", Float),
            Column("last_1000", Float),
            Column("served", Integer, nullable=False),
            Column("expired", Integer, nullable=False),
            Column("task", String(20)),
            Column("mae", Float),
            Column("rmse", Float),
            Column("last_100_mae", Float),
            Column("last_1000_mae", Float),
        )
        self.checkpoints = Table(
            f"{prefix}_checkpoints",
            metadata,
            Column("consumer_group", String(200), primary_key=True),
            Column("topic", String(300), primary_key=True),
            Column("partition", Integer, primary_key=True),
            Column("next_offset", BigInteger, nullable=False),
            Column("state", LargeBinary, nullable=False),
            Column("written_at", DateTime(timezone=True), nullable=False),
        )
        self._metadata = metadata
        metadata.create_all(engine)
        for table in (self.decisions, self.performance):
            _add_missing_columns(engine, table)

    def ping(self) -> None:
        with self._engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def record_drift(self, event: Event[DriftDetected]) -> None:
        drift = event.data
        row = {
            "event_id": event.id,
            "detected_at": drift.detected_at,
            "dataset": drift.dataset,
            "model_name": drift.model_name,
            "model_version": drift.model_version,
            "signal": drift.signal,
            "signal_kind": drift.signal_kind,
            "detector": drift.detector,
            "position": drift.position,
            "event": event.model_dump_json(),
        }
        with self._engine.begin() as connection:
            known = connection.execute(
                select(self.drifts.c.event_id).where(self.drifts.c.event_id == event.id)
            ).first()
            if known is None:
                connection.execute(insert(self.drifts).values(**row))

    def record_decision(self, decision_id: str, decision: Decision, command_id: str | None) -> None:
        with self._engine.begin() as connection:
            known = connection.execute(
                select(self.decisions.c.id).where(self.decisions.c.decision_id == decision_id)
            ).first()
            if known is not None:
                return
            connection.execute(
                insert(self.decisions).values(
                    decision_id=decision_id,
                    decided_at=decision.at,
                    model_name=decision.model_name,
                    action=decision.action,
                    reason=decision.reason,
                    drift_id=decision.drift_id,
                    breaker_open=decision.breaker_open,
                    labels_after_drift=decision.labels_after_drift,
                    command_id=command_id,
                )
            )

    def record_result(self, result: RetrainResult) -> None:
        """One outcome of a retrain (once per event), and the decision's latest outcome."""
        with self._engine.begin() as connection:
            known = connection.execute(
                select(self.results.c.id).where(self.results.c.result_id == result.result_id)
            ).first()
            if known is not None:
                return
            connection.execute(
                insert(self.results).values(
                    result_id=result.result_id,
                    command_id=result.command_id,
                    model_name=result.model_name,
                    drift_id=result.drift_id,
                    outcome=result.outcome,
                    version=result.version,
                    detail=result.detail,
                    at=result.at,
                )
            )
            connection.execute(
                update(self.decisions)
                .where(self.decisions.c.command_id == result.command_id)
                .values(outcome=result.summary)
            )

    def recent_results(self, limit: int) -> list[dict[str, Any]]:
        query = select(self.results).order_by(self.results.c.id.desc()).limit(limit)
        with self._engine.connect() as connection:
            return [_plain(dict(row._mapping)) for row in connection.execute(query)]

    def record_performance(self, at: float, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        columns = {c.name for c in self.performance.columns} - {"id", "at"}
        with self._engine.begin() as connection:
            connection.execute(
                insert(self.performance),
                # Every column in every row: an executemany needs one shape, and a
                # classification row (accuracy) and a regression row (mae) differ.
                [{"at": at, **{c: row.get(c) for c in columns}} for row in rows],
            )

    def recent_drifts(self, limit: int) -> list[dict[str, Any]]:
        query = select(self.drifts.c.event).order_by(self.drifts.c.detected_at.desc()).limit(limit)
        with self._engine.connect() as connection:
            return [json.loads(row.event) for row in connection.execute(query)]

    def recent_decisions(self, limit: int) -> list[dict[str, Any]]:
        """The latest decisions; a trigger's with `outcome` (its latest, e.g. "promoted v3"
        or "failed: ...") and `outcomes` (every step, oldest first)."""
        query = select(self.decisions).order_by(self.decisions.c.id.desc()).limit(limit)
        with self._engine.connect() as connection:
            rows = [_plain(dict(row._mapping)) for row in connection.execute(query)]
            commands = [row["command_id"] for row in rows if row["command_id"]]
            steps: dict[str, list[dict[str, Any]]] = {}
            if commands:
                found = connection.execute(
                    select(self.results)
                    .where(self.results.c.command_id.in_(commands))
                    .order_by(self.results.c.id)
                )
                for step in found:
                    steps.setdefault(step.command_id, []).append(_plain(dict(step._mapping)))
        for row in rows:
            if row["command_id"]:
                row["outcomes"] = steps.get(row["command_id"], [])
        return rows

    def performance_history(self, limit: int) -> list[dict[str, Any]]:
        query = select(self.performance).order_by(self.performance.c.id.desc()).limit(limit)
        with self._engine.connect() as connection:
            return [_plain(dict(row._mapping)) for row in connection.execute(query)]

    def model_performance(self, model: str, per_version: int) -> list[dict[str, Any]]:
        """The model's latest `per_version` snapshots of each version, by version then time."""
        table = self.performance
        rank = (
            func.row_number()
            .over(partition_by=table.c.model_version, order_by=table.c.id.desc())
            .label("rank")
        )
        latest = select(table, rank).where(table.c.model_name == model).subquery()
        query = (
            select(*(latest.c[column.name] for column in table.columns))
            .where(latest.c.rank <= per_version)
            .order_by(latest.c.model_version, latest.c.id)
        )
        with self._engine.connect() as connection:
            return [_plain(dict(row._mapping)) for row in connection.execute(query)]

    def save_checkpoint(
        self, group: str, topic: str, partition: int, next_offset: int, state: bytes
    ) -> None:
        """A partition's state and the offset of its first input not in it (replaces the
        previous one)."""
        table = self.checkpoints
        where = (
            (table.c.consumer_group == group)
            & (table.c.topic == topic)
            & (table.c.partition == partition)
        )
        values = {"next_offset": next_offset, "state": state, "written_at": func.now()}
        with self._engine.begin() as connection:
            if connection.execute(update(table).where(where).values(**values)).rowcount == 0:
                connection.execute(
                    insert(table).values(
                        consumer_group=group, topic=topic, partition=partition, **values
                    )
                )

    def load_checkpoint(self, group: str, topic: str, partition: int) -> tuple[int, bytes] | None:
        table = self.checkpoints
        query = select(table.c.next_offset, table.c.state).where(
            (table.c.consumer_group == group)
            & (table.c.topic == topic)
            & (table.c.partition == partition)
        )
        with self._engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else (int(row.next_offset), bytes(row.state))

    def drop(self) -> None:
        """Removes the namespace's tables (tests)."""
        self._metadata.drop_all(self._engine)


def _add_missing_columns(engine: Engine, table: Table) -> None:
    """Adds the table's columns that an older version of it lacks (nullable ones only)."""
    present = {column["name"] for column in inspect(engine).get_columns(table.name)}
    missing = [column for column in table.columns if column.name not in present]
    if not missing:
        return
    with engine.begin() as connection:
        for column in missing:
            kind = column.type.compile(dialect=engine.dialect)
            connection.execute(
                text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}')
            )


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
