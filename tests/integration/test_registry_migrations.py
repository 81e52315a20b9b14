"""The registry's Alembic migrations on empty databases of both kinds: SQLite, and the stack's
PostgreSQL (in a schema of the test's own, dropped afterwards)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from services.registry.adapters.database import (
    VERSION_TABLE,
    create_registry_engine,
    downgrade,
    migrate,
)
from services.registry.adapters.orm import Base
from tests.integration.conftest import Database

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


@pytest.fixture
def empty_database(sql_database: Database) -> Iterator[Engine]:
    """The registry's engine on an empty SQLite file, then on a new PostgreSQL schema."""
    engine = create_registry_engine(sql_database.url, sql_database.schema or "registry")
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
    postgresql_database: Database,
) -> None:
    url, schema = postgresql_database.url, postgresql_database.schema
    assert schema is not None
    engine = create_registry_engine(url, schema)
    try:
        migrate(engine)
        with engine.connect() as connection:
            placed = connection.execute(
                text(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = :schema"
                ),
                {"schema": schema},
            ).scalars()
            assert set(placed) == TABLES | {VERSION_TABLE}
    finally:
        engine.dispose()
