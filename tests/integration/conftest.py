"""Fixtures shared by the integration tests: a database of one test's own, as a SQLite file or
as a schema in the stack's PostgreSQL (dropped afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from shared.settings import PlatformSettings


@dataclass(frozen=True)
class Database:
    """Where a service under test keeps its tables: a URL and, on PostgreSQL, a schema."""

    url: str
    schema: str | None = None


def postgresql_schema(settings: PlatformSettings, prefix: str) -> Iterator[Database]:
    if settings.database_url is None:
        pytest.fail("MLOPS_DATABASE_URL is not set: start the stack (make up) and load its env")
    url = settings.database_url.get_secret_value()
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        yield Database(url, schema)
    finally:
        with create_engine(url).begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_database(
    request: pytest.FixtureRequest, settings: PlatformSettings, tmp_path: Path
) -> Iterator[Database]:
    """A SQLite file, then a PostgreSQL schema: the test runs on each."""
    if request.param == "sqlite":
        yield Database(f"sqlite:///{tmp_path / 'service.sqlite'}")
        return
    yield from postgresql_schema(settings, "test")


@pytest.fixture
def postgresql_database(settings: PlatformSettings) -> Iterator[Database]:
    """A PostgreSQL schema: what replicas on several hosts share."""
    yield from postgresql_schema(settings, "test")
