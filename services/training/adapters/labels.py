"""Label counts in SQL, for the data-volume trigger: how many labels each dataset received,
and the TrainModel commands the counts set off.

Each data.labels message is counted once: the next offset to count of each partition is kept
in the same transaction as the count, so a redelivered label is recognised and not counted
again. A command set off by a label is kept with that label's position; when the label is
redelivered (the command may not have reached Kafka), the same command is returned again.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection

from services.training.adapters.database import create_tables, metadata
from shared.events.envelope import Event
from shared.events.models import TrainModel
from shared.events.records import SourcePosition

label_positions = Table(
    "training_label_positions",
    metadata,
    Column("namespace", String(200), primary_key=True),
    Column("topic", String(300), primary_key=True),
    Column("kafka_partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)
label_counts = Table(
    "training_label_counts",
    metadata,
    Column("namespace", String(200), primary_key=True),
    Column("dataset", String(200), primary_key=True),
    Column("labels", BigInteger, nullable=False),
)
label_triggers = Table(
    "training_label_triggers",
    metadata,
    Column("namespace", String(200), primary_key=True),
    Column("topic", String(300), primary_key=True),
    Column("kafka_partition", Integer, primary_key=True),
    Column("kafka_offset", BigInteger, primary_key=True),
    Column("command", Text, nullable=False),
)

Decide = Callable[[int], Event[TrainModel] | None]
"""Given a dataset's label count after one more label, the command to publish, if any."""


class SqlLabelCounter:
    def __init__(self, engine: Engine, namespace: str) -> None:
        self.engine = engine
        self.namespace = namespace
        create_tables(engine, label_positions, label_counts, label_triggers)

    def count(
        self, dataset: str, position: SourcePosition, decide: Decide
    ) -> Event[TrainModel] | None:
        """Counts the label at `position` (once) and returns the command it sets off, if any."""
        with self.engine.begin() as connection:
            next_offset = self._next_offset(connection, position)
            if next_offset is not None and position.offset < next_offset:
                return self._trigger_at(connection, position)
            self._advance(connection, position, next_offset is None)
            command = decide(self._increment(connection, dataset))
            if command is not None:
                connection.execute(
                    insert(label_triggers).values(
                        namespace=self.namespace,
                        topic=position.topic,
                        kafka_partition=position.partition,
                        kafka_offset=position.offset,
                        command=command.to_json_bytes().decode(),
                    )
                )
            return command

    def labels(self, dataset: str) -> int:
        c = label_counts.c
        query = select(c.labels).where(c.namespace == self.namespace, c.dataset == dataset)
        with self.engine.connect() as connection:
            return connection.execute(query).scalar_one_or_none() or 0

    def _next_offset(self, connection: Connection, position: SourcePosition) -> int | None:
        p = label_positions.c
        query = (
            select(p.next_offset)
            .where(
                p.namespace == self.namespace,
                p.topic == position.topic,
                p.kafka_partition == position.partition,
            )
            .with_for_update()
        )
        return connection.execute(query).scalar_one_or_none()

    def _advance(self, connection: Connection, position: SourcePosition, first: bool) -> None:
        p = label_positions.c
        if first:
            connection.execute(
                insert(label_positions).values(
                    namespace=self.namespace,
                    topic=position.topic,
                    kafka_partition=position.partition,
                    next_offset=position.offset + 1,
                )
            )
            return
        connection.execute(
            update(label_positions)
            .where(
                p.namespace == self.namespace,
                p.topic == position.topic,
                p.kafka_partition == position.partition,
            )
            .values(next_offset=position.offset + 1)
        )

    def _increment(self, connection: Connection, dataset: str) -> int:
        c = label_counts.c
        counted = connection.execute(
            update(label_counts)
            .where(c.namespace == self.namespace, c.dataset == dataset)
            .values(labels=c.labels + 1)
            .returning(c.labels)
        ).scalar_one_or_none()
        if counted is not None:
            return int(counted)
        connection.execute(
            insert(label_counts).values(namespace=self.namespace, dataset=dataset, labels=1)
        )
        return 1

    def _trigger_at(
        self, connection: Connection, position: SourcePosition
    ) -> Event[TrainModel] | None:
        t = label_triggers.c
        stored = connection.execute(
            select(t.command).where(
                t.namespace == self.namespace,
                t.topic == position.topic,
                t.kafka_partition == position.partition,
                t.kafka_offset == position.offset,
            )
        ).scalar_one_or_none()
        return Event[TrainModel].model_validate_json(stored) if stored is not None else None
