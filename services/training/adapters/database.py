"""Training's database: SQLite by default, PostgreSQL when configured (tables in a schema of
their own, MLOPS_TRAINING_DATABASE_SCHEMA, created at start-up)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import StaticPool

# One training process at a time creates a given schema (PostgreSQL advisory lock).
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('mlops-training:' || :schema))"


def create_training_engine(url: str, schema: str = "training") -> Engine:
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    bootstrap = create_engine(url)
    try:
        with bootstrap.begin() as connection:
            connection.execute(text(_LOCK), {"schema": schema})
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        bootstrap.dispose()
    return create_engine(
        url, pool_pre_ping=True, connect_args={"options": f"-csearch_path={schema}"}
    )


def _sqlite_engine(url: str) -> Engine:
    """WAL and synchronous=NORMAL: a crash of the process loses no committed run. Every
    transaction starts with BEGIN IMMEDIATE, so the command and label threads queue for the
    write lock instead of failing when a read turns into a write."""
    database = make_url(url).database
    in_memory = not database or database == ":memory:"
    if not in_memory:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        # An in-memory database (tests, tools) exists once per connection: share one.
        **({"poolclass": StaticPool} if in_memory else {}),
    )

    @event.listens_for(engine, "connect")
    def _on_connect(connection: Any, _record: Any) -> None:
        connection.isolation_level = None  # SQLAlchemy's BEGIN below starts each transaction
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
