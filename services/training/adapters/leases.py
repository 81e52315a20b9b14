"""Training leases in SQL: one row per (namespace, model) while a replica trains that model.

A lease names its holder (a token unique to one acquisition), the command it trains, when it
was taken and when it expires. The holder renews it while it trains; a replica that dies
stops renewing, and its lease is taken over once it expired. Times are the database's clock
(one clock for every replica), unless a clock is given (tests).

Taking a lease is two short transactions, safe on PostgreSQL (READ COMMITTED: a racing UPDATE
re-reads the row it waited for) and on SQLite (BEGIN IMMEDIATE serialises writers):
take over an expired lease (UPDATE ... WHERE expires_at <= now), else create it (INSERT; the
primary key refuses a second one). Whoever did not take it reads who holds it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, DateTime, Engine, String, Table, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from services.training.adapters.database import as_utc, create_tables, database_now, metadata

Clock = Callable[[], datetime]

training_leases = Table(
    "training_leases",
    metadata,
    Column("namespace", String(200), primary_key=True),
    Column("model_name", String(200), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("command_id", String(200), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)


def replica_id() -> str:
    """This process, as other replicas see it: host, pid and a random part."""
    return f"{_this_process()}:{uuid.uuid4().hex[:8]}"


def new_token() -> str:
    """A holder token, unique to one acquisition: this process (host and pid) and a random
    part drawn for the acquisition."""
    return f"{_this_process()}:{uuid.uuid4().hex[:12]}"


def _this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Lease:
    model_name: str
    holder: str
    command_id: str
    acquired_at: datetime
    expires_at: datetime

    def describe(self) -> str:
        return (
            f"command {self.command_id} on replica {self.holder}, since "
            f"{self.acquired_at.isoformat()}"
        )


class SqlLeases:
    """Leases on SQLAlchemy (SQLite or PostgreSQL), `ttl_s` long unless renewed."""

    def __init__(
        self, engine: Engine, namespace: str, ttl_s: float, clock: Clock | None = None
    ) -> None:
        self.engine = engine
        self.namespace = namespace
        self.ttl = timedelta(seconds=ttl_s)
        self._clock = clock
        create_tables(engine, training_leases)

    def acquire(self, model_name: str, token: str, command_id: str) -> Lease | None:
        """The lease, now held by `token`; or None when it could not be read (a race with
        its release: ask again)."""
        if self._take_over_expired(model_name, token, command_id):
            return self.holder(model_name)
        try:
            with self.engine.begin() as connection:
                now = self._now(connection)
                row = self._row(model_name, token, command_id, now)
                connection.execute(insert(training_leases).values(**row))
        except IntegrityError:
            pass  # held by another: holder() says by whom
        return self.holder(model_name)

    def renew(self, model_name: str, token: str) -> bool:
        """Extends the lease; False when `token` no longer holds it."""
        with self.engine.begin() as connection:
            now = self._now(connection)
            changed = connection.execute(
                update(training_leases)
                .where(self._is(model_name), training_leases.c.holder == token)
                .values(expires_at=now + self.ttl)
            )
        return changed.rowcount == 1

    def release(self, model_name: str, token: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                delete(training_leases).where(
                    self._is(model_name), training_leases.c.holder == token
                )
            )

    def holder(self, model_name: str) -> Lease | None:
        t = training_leases.c
        query = select(t.holder, t.command_id, t.acquired_at, t.expires_at).where(
            self._is(model_name)
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).one_or_none()
        if row is None:
            return None
        return Lease(
            model_name, row.holder, row.command_id, as_utc(row.acquired_at), as_utc(row.expires_at)
        )

    def _take_over_expired(self, model_name: str, token: str, command_id: str) -> bool:
        with self.engine.begin() as connection:
            now = self._now(connection)
            row = self._row(model_name, token, command_id, now)
            changed = connection.execute(
                update(training_leases)
                .where(self._is(model_name), training_leases.c.expires_at <= now)
                .values(**row)
            )
        return changed.rowcount == 1

    def _row(
        self, model_name: str, token: str, command_id: str, now: datetime
    ) -> dict[str, object]:
        return {
            "namespace": self.namespace,
            "model_name": model_name,
            "holder": token,
            "command_id": command_id,
            "acquired_at": now,
            "expires_at": now + self.ttl,
        }

    def _is(self, model_name: str) -> object:
        t = training_leases.c
        return (t.namespace == self.namespace) & (t.model_name == model_name)

    def _now(self, connection: Connection) -> datetime:
        return self._clock() if self._clock is not None else database_now(connection)
