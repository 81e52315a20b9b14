"""Finished runs in SQL: the outcome of each TrainModel command, by command id: its
ModelTrained, or its TrainingFailed (refused or failed, with the reason).

A redelivered command finds its run here and gets the very same event back (same event id),
so a command is trained once however often Kafka delivers it. Rows carry the namespace, so a
replay or a test namespace never sees production's runs.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Column, DateTime, Engine, String, Table, Text, func, insert, select
from sqlalchemy.exc import IntegrityError

from services.training.adapters.database import create_tables, metadata
from shared.events.envelope import Event
from shared.events.models import ModelTrained, TrainingFailed

Outcome = Event[ModelTrained] | Event[TrainingFailed]

training_runs = Table(
    "training_runs",
    metadata,
    Column("namespace", String(200), primary_key=True),
    Column("command_id", String(200), primary_key=True),
    Column("run_id", String(200), nullable=False),
    Column("model_name", String(200), nullable=False),
    Column("event", Text, nullable=False),
    Column("finished_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
)


class SqlRuns:
    """Runs on SQLAlchemy (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine, namespace: str) -> None:
        self.engine = engine
        self.namespace = namespace
        create_tables(engine, training_runs)

    def finished(self, command_id: str) -> Outcome | None:
        """The event a command's run emitted, or None when it never finished."""
        t = training_runs.c
        query = select(t.event).where(t.namespace == self.namespace, t.command_id == command_id)
        with self.engine.connect() as connection:
            stored = connection.execute(query).scalar_one_or_none()
        return _decoded(stored) if stored is not None else None

    def record(self, command_id: str, outcome: Outcome) -> Outcome:
        """Keeps a finished run; when another process finished the same command first, its
        event is the one kept, and returned."""
        data = outcome.data
        row: dict[str, Any] = {
            "namespace": self.namespace,
            "command_id": command_id,
            "run_id": data.run_id if isinstance(data, ModelTrained) else "",
            "model_name": data.model_name,
            "event": outcome.to_json_bytes().decode(),
        }
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(training_runs).values(**row))
        except IntegrityError:
            kept = self.finished(command_id)
            if kept is None:
                raise
            return kept
        return outcome


def _decoded(stored: str) -> Outcome:
    if json.loads(stored).get("type") == TrainingFailed.event_type:
        return Event[TrainingFailed].model_validate_json(stored)
    return Event[ModelTrained].model_validate_json(stored)
