"""Training's database: SQLite by default, PostgreSQL when configured (tables in a schema of
their own, MLOPS_TRAINING_DATABASE_SCHEMA, created at start-up).

Each adapter declares its tables on the one `metadata` and creates them (`create_tables`) when
it is built; times it stamps from the database's clock come from `database_now`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, MetaData, Table, func, select
from sqlalchemy.engine import Connection

from shared.sql import create_database_engine, ping

__all__ = [
    "as_utc",
    "create_tables",
    "create_training_engine",
    "database_now",
    "metadata",
    "ping",
]

metadata = MetaData()
"""Training's tables."""


def create_training_engine(url: str, schema: str = "training") -> Engine:
    """On SQLite, the command and label threads queue for the write lock (BEGIN IMMEDIATE)."""
    return create_database_engine(url, schema=schema, begin_immediate=True)


def as_utc(moment: datetime) -> datetime:
    """A time read back from SQL, in UTC: SQLite gives naive UTC times, PostgreSQL aware ones."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def create_tables(engine: Engine, *tables: Table) -> None:
    """Creates those of `tables` that do not exist yet (no migrations)."""
    metadata.create_all(engine, tables=list(tables), checkfirst=True)


def database_now(connection: Connection) -> datetime:
    """The database's clock, in UTC: one clock for every replica."""
    return as_utc(connection.execute(select(func.current_timestamp())).scalar_one())
