"""The registry's Alembic migrations on empty databases of both kinds: SQLite, and the stack's
PostgreSQL (in a schema of the test's own, dropped afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text

from services.registry.adapters.database import (
    VERSION_TABLE,
    create_registry_engine,
    downgrade,
    migrate,
)
from services.registry.adapters.orm import Base
from shared.settings import PlatformSettings

TABLES = {
    "registered_models",
    "model_versions",
    "model_aliases",
    "model_tags",
    "version_tags",
    "audit_trail",
    "drift_events",
    "deployments",
}
HEAD = "0002"


@contextmanager
def postgres_schema(settings: PlatformSettings) -> Iterator[tuple[str, str]]:
    """The stack's PostgreSQL URL and a new schema name; the schema is dropped afterwards."""
    if settings.database_url is None:
        pytest.fail("MLOPS_DATABASE_URL is not set: start the stack (make up) and load its env")
    url = settings.database_url.get_secret_value()
    schema = f"registry_test_{uuid.uuid4().hex[:12]}"
    try:
        yield url, schema
    finally:
        with create_engine(url).begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(
    request: pytest.FixtureRequest, settings: PlatformSettings, tmp_path: Path
) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_registry_engine(f"sqlite:///{tmp_path / 'registry.sqlite'}")
        yield engine
        engine.dispose()
        return
    with postgres_schema(settings) as (url, schema):
        engine = create_registry_engine(url, schema)
        yield engine
        engine.dispose()


def schema_drift(engine: Engine) -> list[object]:
    """What autogenerate would change to make the database match the models (nothing, we hope)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return list(compare_metadata(context, Base.metadata))


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def test_the_migration_builds_exactly_the_models_schema_on_an_empty_database(
    empty_database: Engine,
) -> None:
    assert inspect(empty_database).get_table_names() == []
    migrate(empty_database)
    assert set(inspect(empty_database).get_table_names()) == TABLES | {VERSION_TABLE}
    assert current_revision(empty_database) == HEAD
    assert schema_drift(empty_database) == []


def test_migrating_again_at_a_restart_changes_nothing(empty_database: Engine) -> None:
    migrate(empty_database)
    migrate(empty_database)
    assert current_revision(empty_database) == HEAD
    assert schema_drift(empty_database) == []


def test_the_migration_downgrades_to_empty_and_upgrades_again(empty_database: Engine) -> None:
    migrate(empty_database)
    downgrade(empty_database)
    assert set(inspect(empty_database).get_table_names()) <= {VERSION_TABLE}
    assert current_revision(empty_database) is None
    migrate(empty_database)
    assert schema_drift(empty_database) == []


def test_a_registry_on_the_first_schema_upgrades_to_the_latest(empty_database: Engine) -> None:
    migrate(empty_database, "0001")
    assert "drift_events" not in inspect(empty_database).get_table_names()
    migrate(empty_database)
    assert current_revision(empty_database) == HEAD
    assert schema_drift(empty_database) == []


def test_on_postgresql_the_registry_keeps_to_a_schema_of_its_own(
    settings: PlatformSettings,
) -> None:
    with postgres_schema(settings) as (url, schema):
        engine = create_registry_engine(url, schema)
        try:
            migrate(engine)
            with engine.connect() as connection:
                placed = connection.execute(
                    text(
                        "SELECT table_name FROM information_schema.tables"
                        " WHERE table_schema = :schema"
                    ),
                    {"schema": schema},
                ).scalars()
                assert set(placed) == TABLES | {VERSION_TABLE}
        finally:
            engine.dispose()
