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
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from shared.sql import create_database_engine, reader

__all__ = ["create_registry_engine", "downgrade", "migrate", "ping", "reader"]

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
VERSION_TABLE = "registry_alembic_version"
# One registry at a time migrates a given schema (PostgreSQL advisory lock).
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


def create_registry_engine(url: str, schema: str = "registry") -> Engine:
    """An engine on `url`; PostgreSQL gets `schema` (created if missing) as its search_path."""
    return create_database_engine(
        url, schema=schema, begin_immediate=True, foreign_keys=True, json_serializer=json_dumps
    )


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
