"""The registry's database: SQLite by default, PostgreSQL when configured.

On PostgreSQL the registry keeps its tables in a schema of its own (MLOPS_REGISTRY_DATABASE_SCHEMA,
"registry" by default), created at start-up; every connection has it as its search_path, so the
tables, the Alembic version table and the migrations stay unqualified. Tests use a schema each.
On SQLite every writing transaction starts with BEGIN IMMEDIATE: the consumer thread and HTTP
requests then queue for the write lock instead of failing when a read turns into a write;
`reader(engine)` gives read-only transactions that run beside a writer (WAL).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import StaticPool

READ_ONLY = "registry_read_only"
MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
VERSION_TABLE = "registry_alembic_version"
# One registry at a time creates and migrates a given schema (PostgreSQL advisory lock).
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('mlops-registry:' || {schema}))"


def json_dumps(value: Any) -> str:
    """JSON for JSON columns: non-finite floats become the strings "NaN", "Infinity", ...

    PostgreSQL's json type refuses NaN tokens; a metric that came out NaN is still worth keeping.
    """
    return json.dumps(_finite(value), ensure_ascii=False, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_registry_engine(url: str, schema: str = "registry") -> Engine:
    """An engine on `url`; PostgreSQL gets `schema` (created if missing) as its search_path."""
    if is_sqlite(url):
        return _sqlite_engine(url)
    ensure_schema(url, schema)
    return create_engine(
        url,
        pool_pre_ping=True,
        json_serializer=json_dumps,
        connect_args={"options": f"-csearch_path={schema}"},
    )


def ensure_schema(url: str, schema: str) -> None:
    """Creates the PostgreSQL schema, once even when several registries start together."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(_LOCK.format(schema=":schema")), {"schema": schema})
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        engine.dispose()


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    in_memory = not database or database == ":memory:"
    if not in_memory:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        json_serializer=json_dumps,
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
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        reading = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN DEFERRED" if reading else "BEGIN IMMEDIATE")

    return engine


def reader(engine: Engine) -> Engine:
    """The same engine for read-only transactions (on SQLite they take no write lock)."""
    return engine.execution_options(**{READ_ONLY: True})


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code: no alembic.ini to find or keep in step."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrades the database to `revision` in one transaction (PostgreSQL: under a lock)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text(_LOCK.format(schema="current_schema()")))
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)


def ping(engine: Engine) -> None:
    with reader(engine).connect() as connection:
        connection.execute(text("SELECT 1"))
