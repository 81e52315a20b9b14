"""Training's database: SQLite by default, PostgreSQL when configured (tables in a schema of
their own, MLOPS_TRAINING_DATABASE_SCHEMA, created at start-up)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from shared.sql import create_database_engine, ping

__all__ = ["as_utc", "create_training_engine", "ping"]


def create_training_engine(url: str, schema: str = "training") -> Engine:
    """On SQLite, the command and label threads queue for the write lock (BEGIN IMMEDIATE)."""
    return create_database_engine(url, schema=schema, begin_immediate=True)


def as_utc(moment: datetime) -> datetime:
    """A time read back from SQL, in UTC: SQLite gives naive UTC times, PostgreSQL aware ones."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
