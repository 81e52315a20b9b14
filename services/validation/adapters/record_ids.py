"""The record-id store: (dataset, record id) -> the first raw position that claimed it, in SQL.

SQLite by default, PostgreSQL when MLOPS_DATABASE_URL is set. The table name carries the
namespace, so a replay or a test namespace never sees production's ids. A claim is one
INSERT ... ON CONFLICT DO NOTHING and, when the id was taken, one SELECT of its holder, in a
single transaction: two validators racing on the same id agree on who was first.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    TextClause,
    func,
    insert,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from services.validation.domain.duplicates import Claim, ClaimRequest, resolve_claims
from shared.events.records import SourcePosition

_MAX_IDENTIFIER = 63  # PostgreSQL's limit
T = TypeVar("T")


def table_name(namespace: str) -> str:
    """validation_record_ids_<namespace>, made a plain SQL identifier of at most 63 chars."""
    name = "validation_record_ids_" + re.sub(r"[^a-z0-9_]", "_", namespace.lower())
    if len(name) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(namespace.encode()).hexdigest()[:10]
    return f"{name[: _MAX_IDENTIFIER - 11]}_{digest}"


def record_ids_table(name: str, metadata: MetaData | None = None) -> Table:
    return Table(
        name,
        metadata or MetaData(),
        Column("dataset", String(200), primary_key=True),
        Column("record_id", String(200), primary_key=True),
        Column("topic", String(300), nullable=False),
        Column("kafka_partition", Integer, nullable=False),
        Column("kafka_offset", BigInteger, nullable=False),
        Column("event_id", String(200), nullable=False),
        Column("claimed_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    )


_CHUNK = 500  # rows per statement: well under SQLite's and PostgreSQL's parameter limits


_ROW_COLUMNS = ("dataset", "record_id", "topic", "kafka_partition", "kafka_offset", "event_id")


def _row(request: ClaimRequest) -> dict[str, Any]:
    return {
        "dataset": request.dataset,
        "record_id": request.record_id,
        "topic": request.position.topic,
        "kafka_partition": request.position.partition,
        "kafka_offset": request.position.offset,
        "event_id": request.event_id,
    }


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SqlRecordIds:
    """RecordIds on SQLAlchemy (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine, table: str) -> None:
        self.engine = engine
        self.table = record_ids_table(table)
        self.table.create(engine, checkfirst=True)
        self._insert = self._insert_ignoring_conflicts()
        self._insert_many = self._insert_ignoring_conflicts(many=True)
        self._insert_unnested = self._unnest_ignoring_conflicts()

    def _insert_ignoring_conflicts(self, many: bool = False) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING RETURNING: a row back means this claim won.

        (rowcount is not reliable here: psycopg reports -1 for it.)"""
        keys = ["dataset", "record_id"]
        dialects = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
        make = dialects.get(self.engine.dialect.name)
        if make is None:
            return None
        statement = make(self.table).on_conflict_do_nothing(index_elements=keys)
        if many:
            return statement.returning(self.table.c.dataset, self.table.c.record_id)
        return statement.returning(self.table.c.event_id)

    def _unnest_ignoring_conflicts(self) -> TextClause:
        quoted = self.engine.dialect.identifier_preparer.quote(self.table.name)
        types = ("text", "text", "text", "integer", "bigint", "text")
        arrays = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in zip(_ROW_COLUMNS, types, strict=True))
        return text(
            f"INSERT INTO {quoted} ({', '.join(_ROW_COLUMNS)}) SELECT * FROM unnest({arrays}) "
            "ON CONFLICT (dataset, record_id) DO NOTHING RETURNING dataset, record_id"
        )

    def claim(self, dataset: str, record_id: str, position: SourcePosition, event_id: str) -> Claim:
        row = _row(ClaimRequest(dataset, record_id, position, event_id))
        with self.engine.begin() as connection:
            if self._insert is not None:
                inserted = connection.execute(self._insert.values(**row)).first() is not None
            else:  # another dialect: a failed plain INSERT says the id is taken
                try:
                    with connection.begin_nested():
                        connection.execute(insert(self.table).values(**row))
                    inserted = True
                except IntegrityError:
                    inserted = False
            if inserted:
                return Claim(first=position, first_event_id=event_id, inserted=True)
            t = self.table.c
            holder = connection.execute(
                select(t.topic, t.kafka_partition, t.kafka_offset, t.event_id).where(
                    t.dataset == dataset, t.record_id == record_id
                )
            ).one()
        first = SourcePosition(
            topic=holder.topic, partition=holder.kafka_partition, offset=holder.kafka_offset
        )
        return Claim(first=first, first_event_id=holder.event_id, inserted=False)

    def claim_many(self, requests: Sequence[ClaimRequest]) -> list[Claim]:
        """One transaction for the whole batch: one INSERT ... ON CONFLICT DO NOTHING of every
        id's first request, then one SELECT per chunk of the holders of the ids already taken."""
        if self._insert_many is None:
            return [self.claim(r.dataset, r.record_id, r.position, r.event_id) for r in requests]
        # Each id's first request, in key order so concurrent validators lock rows alike.
        earliest = {request.key: request for request in reversed(requests)}
        firsts = [earliest[key] for key in sorted(earliest)]
        won: set[tuple[str, str]] = set()
        holders: dict[tuple[str, str], Claim] = {}
        with self.engine.begin() as connection:
            if firsts:
                won.update(self._insert_firsts(connection, firsts))
            taken = [request.key for request in firsts if request.key not in won]
            for chunk in _chunks(taken, _CHUNK):
                holders.update(self._holders(connection, chunk))
        return resolve_claims(requests, won, holders)

    def _insert_firsts(
        self, connection: Connection, firsts: Sequence[ClaimRequest]
    ) -> set[tuple[str, str]]:
        """Inserts every request's row unless its id is taken; returns the ids it inserted."""
        if self.engine.dialect.name == "postgresql":
            # Six arrays unnested server-side: the statement stays small whatever the batch
            # size (a multi-row VALUES list costs psycopg more to parse than the insert).
            columns = zip(*(_row(r).values() for r in firsts), strict=True)
            parameters = dict(zip(_ROW_COLUMNS, (list(c) for c in columns), strict=True))
            rows = connection.execute(self._insert_unnested, parameters)
        else:  # executemany: SQLAlchemy's "insertmanyvalues" batches it, compiled once
            rows = connection.execute(self._insert_many, [_row(r) for r in firsts])
        return {(row.dataset, row.record_id) for row in rows}

    def _holders(
        self, connection: Connection, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Claim]:
        t = self.table.c
        query = select(
            t.dataset, t.record_id, t.topic, t.kafka_partition, t.kafka_offset, t.event_id
        ).where(tuple_(t.dataset, t.record_id).in_(keys))
        return {
            (row.dataset, row.record_id): Claim(
                first=SourcePosition(
                    topic=row.topic, partition=row.kafka_partition, offset=row.kafka_offset
                ),
                first_event_id=row.event_id,
                inserted=False,
            )
            for row in connection.execute(query)
        }

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def drop(self) -> None:
        self.table.drop(self.engine, checkfirst=True)


class MemoryRecordIds:
    """RecordIds in a dict, for tests and tools; not shared between processes."""

    def __init__(self) -> None:
        self._claims: dict[tuple[str, str], Claim] = {}
        self._lock = threading.Lock()

    def claim(self, dataset: str, record_id: str, position: SourcePosition, event_id: str) -> Claim:
        with self._lock:
            held = self._claims.get((dataset, record_id))
            if held is not None:
                return Claim(first=held.first, first_event_id=held.first_event_id, inserted=False)
            self._claims[(dataset, record_id)] = Claim(position, event_id, inserted=True)
            return self._claims[(dataset, record_id)]

    def claim_many(self, requests: Sequence[ClaimRequest]) -> list[Claim]:
        return [self.claim(r.dataset, r.record_id, r.position, r.event_id) for r in requests]
