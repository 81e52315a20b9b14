"""Idempotent effects: a handler's side effect happens once per event id, however often
the event is delivered.

The marker that an event was processed and the effect itself commit in one database
transaction, so a crash either keeps both or neither::

    with effects.once(consumer="feature-store", event_id=event.id) as connection:
        if connection is not None:
            connection.execute(...)   # runs only the first time this event is seen
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

metadata = MetaData()

processed_events = Table(
    "processed_events",
    metadata,
    Column("consumer", String(200), primary_key=True),
    Column("event_id", String(200), primary_key=True),
    Column("processed_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
)


class IdempotentEffects:
    """Guards side effects with a (consumer, event id) marker in the same transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine, checkfirst=True)

    @contextmanager
    def once(self, *, consumer: str, event_id: str) -> Iterator[Connection | None]:
        """Yields a connection in an open transaction the first time, None on a redelivery."""
        with self.engine.connect() as connection:
            transaction = connection.begin()
            try:
                connection.execute(
                    insert(processed_events).values(consumer=consumer, event_id=event_id)
                )
            except IntegrityError:
                transaction.rollback()
                yield None
                return
            try:
                yield connection
            except BaseException:
                transaction.rollback()
                raise
            transaction.commit()

    def was_processed(self, *, consumer: str, event_id: str) -> bool:
        query = select(processed_events.c.event_id).where(
            processed_events.c.consumer == consumer, processed_events.c.event_id == event_id
        )
        with self.engine.connect() as connection:
            return connection.execute(query).first() is not None
