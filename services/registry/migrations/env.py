"""Alembic's environment for the registry, run by adapters.database.migrate with an open
connection (config.attributes["connection"]); there is no alembic.ini and no offline mode."""

from __future__ import annotations

from alembic import context

from services.registry.adapters.database import VERSION_TABLE
from services.registry.adapters.orm import Base


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "the registry's migrations run through services.registry.adapters.database.migrate"
        )
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
