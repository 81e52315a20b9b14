"""Reproductions in SQL (training's database), so every replica answers for every one: the
newest `kept` of each namespace are kept.

The replica that queued a reproduction runs it, and says so with a heartbeat (`beat`) while it
is queued or running; any replica that reads one whose heartbeat is older than the lease marks
it failed, naming the replica that stopped. An outcome is written only over `running` (one
UPDATE ... WHERE status = 'running'), so the first outcome is the one kept, whichever replica
wrote it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    Row,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)

from services.training.adapters.database import as_utc, create_tables, metadata
from services.training.adapters.leases import replica_id
from services.training.domain.reproduction import Check
from services.training.domain.reproductions import (
    Clock,
    Reproduction,
    outcome_of,
    settled,
    utc_now,
)

training_reproductions = Table(
    "training_reproductions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("namespace", String(200), nullable=False),
    Column("model", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("checks", Text, nullable=False),
    Column("reason", Text),
    Column("notes", Text, nullable=False),
    Column("summary", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("deadline", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("replica", String(200), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    Index("ix_training_reproductions_namespace_started_at", "namespace", "started_at"),
)
_t = training_reproductions.c


class SqlReproductions:
    """The reproductions of one namespace, asked of any replica; this one is `replica`."""

    def __init__(
        self,
        engine: Engine,
        namespace: str,
        kept: int,
        timeout_s: float,
        lease_s: float = 30.0,
        replica: str | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.engine = engine
        self.namespace = namespace
        self.replica = replica or replica_id()
        self.lease = timedelta(seconds=lease_s)
        self._kept = kept
        self._timeout = timedelta(seconds=timeout_s)
        self._clock = clock
        create_tables(engine, training_reproductions)

    def start(self, model: str, version: int) -> Reproduction:
        now = self._clock()
        item = Reproduction(
            str(uuid.uuid4()), model, version, now, now + self._timeout,
            replica=self.replica, heartbeat_at=now,
        )  # fmt: skip
        with self.engine.begin() as connection:
            connection.execute(insert(training_reproductions).values(**_row(item, self.namespace)))
            connection.execute(self._older_than_the_kept())
        return item

    def get(self, id: str) -> Reproduction | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(training_reproductions).where(self._is(id))).first()
        return None if row is None else self._settle(_item(row))

    def recent(self, model: str | None = None, limit: int = 20) -> list[Reproduction]:
        """The newest first."""
        query = select(training_reproductions).where(_t.namespace == self.namespace)
        if model is not None:
            query = query.where(_t.model == model)
        query = query.order_by(_t.started_at.desc(), _t.id).limit(limit)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [self._settle(_item(row)) for row in rows]

    def is_over(self, id: str) -> bool:
        """Finished, timed out or forgotten: nothing more to run for it."""
        item = self.get(id)
        return item is None or item.finished

    def beat(self) -> int:
        """This replica still has its running reproductions: how many."""
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(training_reproductions)
                .where(
                    _t.namespace == self.namespace,
                    _t.replica == self.replica,
                    _t.status == "running",
                )
                .values(heartbeat_at=self._clock())
            )
        return changed.rowcount

    def compared(
        self, id: str, checks: list[Check], notes: list[str], summary: dict[str, Any]
    ) -> Reproduction | None:
        status, reason = outcome_of(checks)
        return self._finish(
            id,
            status=status,
            checks=tuple(checks),
            reason=reason,
            notes=tuple(notes),
            summary=summary,
        )

    def failed(
        self, id: str, reason: str, summary: dict[str, Any] | None = None
    ) -> Reproduction | None:
        return self._finish(id, status="failed", reason=reason, summary=summary or {})

    def _finish(self, id: str, **outcome: Any) -> Reproduction | None:
        """The outcome, unless the reproduction already has one (or was forgotten)."""
        item = self.get(id)
        if item is None or item.finished:
            return item
        return self._write_outcome(replace(item, finished_at=self._clock(), **outcome))

    def _settle(self, item: Reproduction) -> Reproduction:
        now = self._clock()
        current = settled(item, now, self.lease)
        return current if current is item else self._write_outcome(current)

    def _write_outcome(self, item: Reproduction) -> Reproduction:
        """Writes a finished item over its `running` row; when another outcome came first,
        that one is returned."""
        values = _row(item, self.namespace)
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(training_reproductions)
                .where(self._is(item.id), _t.status == "running")
                .values(**values)
            )
            if changed.rowcount == 1:
                return item
            row = connection.execute(select(training_reproductions).where(self._is(item.id))).one()
        return _item(row)

    def _older_than_the_kept(self) -> Any:
        newest = (
            select(_t.id)
            .where(_t.namespace == self.namespace)
            .order_by(_t.started_at.desc(), _t.id)
            .limit(self._kept)
        )
        return delete(training_reproductions).where(
            _t.namespace == self.namespace, _t.id.not_in(newest)
        )

    def _is(self, id: str) -> Any:
        return (_t.namespace == self.namespace) & (_t.id == id)


def _row(item: Reproduction, namespace: str) -> dict[str, Any]:
    return {
        "id": item.id,
        "namespace": namespace,
        "model": item.model,
        "version": item.version,
        "status": item.status,
        "checks": json.dumps([check.as_json() for check in item.checks]),
        "reason": item.reason,
        "notes": json.dumps(list(item.notes)),
        "summary": json.dumps(item.summary),
        "started_at": item.started_at,
        "deadline": item.deadline,
        "finished_at": item.finished_at,
        "replica": item.replica,
        "heartbeat_at": item.heartbeat_at or item.started_at,
    }


def _item(row: Row[Any]) -> Reproduction:
    return Reproduction(
        id=row.id,
        model=row.model,
        version=row.version,
        started_at=as_utc(row.started_at),
        deadline=as_utc(row.deadline),
        status=row.status,
        checks=tuple(Check(**check) for check in json.loads(row.checks)),
        reason=row.reason,
        notes=tuple(json.loads(row.notes)),
        summary=json.loads(row.summary),
        finished_at=as_utc(row.finished_at) if row.finished_at is not None else None,
        replica=row.replica,
        heartbeat_at=as_utc(row.heartbeat_at),
    )
