"""The online store: the latest feature vector of each (dataset, entity), in SQL.

SQLite by default, PostgreSQL when MLOPS_DATABASE_URL is set; the table name carries the
namespace, so a test or a replay never sees another namespace's vectors. An upsert replaces
a stored vector only with one of a later event time (or, at the same time, a later offset):
a replayed or out-of-order record never overwrites a newer vector.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite

from services.feature_store.domain.lookup_cache import LookupCache
from services.feature_store.domain.windows import epoch_micros
from shared.events.records import FeaturesComputed, FieldValue

_MAX_IDENTIFIER = 63  # PostgreSQL's limit


@dataclass(frozen=True)
class OnlineVector:
    dataset: str
    entity: str
    record_id: str
    event_time: datetime
    spec_version: int
    features: dict[str, FieldValue]
    source_topic: str
    source_partition: int
    source_offset: int

    @property
    def order(self) -> tuple[int, int]:
        return epoch_micros(self.event_time), self.source_offset

    def as_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "entity": self.entity,
            "record_id": self.record_id,
            "event_time": self.event_time.isoformat(),
            "spec_version": self.spec_version,
            "features": self.features,
            "source": {
                "topic": self.source_topic,
                "partition": self.source_partition,
                "offset": self.source_offset,
            },
        }


def table_name(namespace: str) -> str:
    """feature_store_online_<namespace>, a plain SQL identifier of at most 63 characters."""
    name = "feature_store_online_" + re.sub(r"[^a-z0-9_]", "_", namespace.lower())
    if len(name) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(namespace.encode()).hexdigest()[:10]
    return f"{name[: _MAX_IDENTIFIER - 11]}_{digest}"


def online_table(name: str) -> Table:
    return Table(
        name,
        MetaData(),
        Column("dataset", String(200), primary_key=True),
        Column("entity", String(1000), primary_key=True),
        Column("record_id", String(200), nullable=False),
        Column("event_time", DateTime(timezone=True), nullable=False),
        Column("event_time_us", BigInteger, nullable=False),
        Column("spec_version", Integer, nullable=False),
        Column("features", JSON, nullable=False),
        Column("source_topic", String(300), nullable=False),
        Column("source_partition", Integer, nullable=False),
        Column("source_offset", BigInteger, nullable=False),
    )


class OnlineStore:
    """The SQL table, behind a LookupCache (domain/lookup_cache.py; disabled by default)."""

    def __init__(
        self, engine: Engine, namespace: str, cache: LookupCache[OnlineVector] | None = None
    ) -> None:
        self.engine = engine
        self.table = online_table(table_name(namespace))
        self.table.metadata.create_all(engine, checkfirst=True)
        self.cache: LookupCache[OnlineVector] = cache if cache is not None else LookupCache(0, 0)
        self._upsert = self._upsert_statement()

    def _upsert_statement(self) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(self.table)
        stored, incoming = self.table.c, statement.excluded
        newer = or_(
            stored.event_time_us < incoming.event_time_us,
            and_(
                stored.event_time_us == incoming.event_time_us,
                stored.source_offset <= incoming.source_offset,
            ),
        )
        keys = ("dataset", "entity")
        replaced = {c.name: incoming[c.name] for c in self.table.columns if c.name not in keys}
        return statement.on_conflict_do_update(
            index_elements=[stored.dataset, stored.entity], set_=replaced, where=newer
        )

    def upsert(self, computed: Iterable[FeaturesComputed]) -> int:
        """Stores each entity's newest vector of the batch unless a newer one is stored."""
        rows = list(_newest_per_entity(computed).values())
        if not rows:
            return 0
        with self.engine.begin() as connection:
            # executemany: one compiled statement, sent in multi-row batches by SQLAlchemy.
            connection.execute(self._upsert, rows)
        self.cache.put(_vector(row) for row in rows)
        return len(rows)

    def get(self, dataset: str, entity: str) -> OnlineVector | None:
        found = self.get_many(dataset, [entity])
        return found.get(entity)

    def get_many(self, dataset: str, entities: Sequence[str]) -> dict[str, OnlineVector]:
        found: dict[str, OnlineVector] = {}
        unknown: list[str] = []
        for entity in entities:
            cached = self.cache.get(dataset, entity)
            if cached is not None:
                found[entity] = cached
            else:
                unknown.append(entity)
        if not unknown:
            return found
        columns = self.table.c
        query = select(self.table).where(columns.dataset == dataset, columns.entity.in_(unknown))
        with self.engine.connect() as connection:
            read = [_vector(row) for row in connection.execute(query).mappings()]
        self.cache.put(read)
        found.update((vector.entity, vector) for vector in read)
        return found

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))


def _newest_per_entity(computed: Iterable[FeaturesComputed]) -> dict[tuple[str, str], dict]:
    newest: dict[tuple[str, str], dict] = {}
    for payload in computed:
        row = {
            "dataset": payload.dataset,
            "entity": payload.entity,
            "record_id": payload.record_id,
            "event_time": payload.event_time.astimezone(UTC),
            "event_time_us": epoch_micros(payload.event_time),
            "spec_version": payload.spec_version,
            "features": payload.features,
            "source_topic": payload.source.topic,
            "source_partition": payload.source.partition,
            "source_offset": payload.source.offset,
        }
        key = (payload.dataset, payload.entity)
        seen = newest.get(key)
        if seen is None or (seen["event_time_us"], seen["source_offset"]) <= (
            row["event_time_us"],
            row["source_offset"],
        ):
            newest[key] = row
    return newest


def _vector(row: Any) -> OnlineVector:
    event_time = row["event_time"]
    if event_time.tzinfo is None:  # SQLite keeps no time zone; every time stored is UTC
        event_time = event_time.replace(tzinfo=UTC)
    return OnlineVector(
        dataset=row["dataset"],
        entity=row["entity"],
        record_id=row["record_id"],
        event_time=event_time,
        spec_version=row["spec_version"],
        features=row["features"],
        source_topic=row["source_topic"],
        source_partition=row["source_partition"],
        source_offset=row["source_offset"],
    )
