"""SQLAlchemy engines for the platform's SQL stores: SQLite by default, PostgreSQL in production.

On SQLite: the file's folder is created, WAL with synchronous=NORMAL (survives a crash of the
process, what at-least-once needs, and lets readers run beside the writer; only a power loss
may lose the last commits), and an in-memory database (tests, tools) shares one connection.
With `begin_immediate`, every transaction starts with BEGIN IMMEDIATE, so threads that write
queue for the lock instead of failing when a read turns into a write; `reader(engine)` gives
read-only transactions (BEGIN DEFERRED) that run beside a writer.

On PostgreSQL, a service may keep its tables in a schema of its own: created at start-up (once
even when several processes start together) and the search_path of every connection, so its
tables and migrations stay unqualified.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import StaticPool

READ_ONLY = "mlops_read_only"
# One process at a time creates a given schema (PostgreSQL advisory lock).
_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('mlops-schema:' || :schema))"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_database_engine(
    url: str,
    *,
    schema: str | None = None,
    begin_immediate: bool = False,
    foreign_keys: bool = False,
    json_serializer: Callable[[Any], str] | None = None,
) -> Engine:
    """An engine for `url`, set up as the module docstring says; `schema` is PostgreSQL's
    only, `begin_immediate` and `foreign_keys` SQLite's only."""
    options: dict[str, Any] = {}
    if json_serializer is not None:
        options["json_serializer"] = json_serializer
    if is_sqlite(url):
        return _sqlite_engine(url, begin_immediate, foreign_keys, options)
    if schema is None:
        return create_engine(url, pool_pre_ping=True, **options)
    ensure_schema(url, schema)
    return create_engine(
        url, pool_pre_ping=True, connect_args={"options": f"-csearch_path={schema}"}, **options
    )


def ensure_schema(url: str, schema: str) -> None:
    """Creates the PostgreSQL schema, once even when several processes start together."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(_SCHEMA_LOCK), {"schema": schema})
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        engine.dispose()


def _sqlite_engine(
    url: str, begin_immediate: bool, foreign_keys: bool, options: dict[str, Any]
) -> Engine:
    database = make_url(url).database
    in_memory = not database or database == ":memory:"
    if not in_memory:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        # An in-memory database exists once per connection: share one.
        **({"poolclass": StaticPool} if in_memory else {}),
        **options,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(connection: Any, _record: Any) -> None:
        if begin_immediate:
            connection.isolation_level = None  # the "begin" listener starts each transaction
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if foreign_keys:
            cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    if begin_immediate:

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            reading = connection.get_execution_options().get(READ_ONLY, False)
            connection.exec_driver_sql("BEGIN DEFERRED" if reading else "BEGIN IMMEDIATE")

    return engine


def reader(engine: Engine) -> Engine:
    """The same engine for read-only transactions (on SQLite they take no write lock)."""
    return engine.execution_options(**{READ_ONLY: True})


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
