"""What ingestion publishes, and the pure functions that turn accepted input into events.

Ingestion consumes no topic: its input is HTTP. It publishes dataset specs (through the spec
registry), records and labels; each function here returns the `Emit` to publish, so the use
cases in domain/ingestion.py decide when, and the Kafka adapter how.
"""

from __future__ import annotations

from datetime import datetime

from services.ingestion.domain.batches import LabelInput, Row
from shared.datasets.spec import VersionedSpec
from shared.events.envelope import Event
from shared.events.records import LabelRecorded, RecordIngested
from shared.kafka.consumer import Emit
from shared.kafka.routes import Route

SOURCE = "ingestion"
SUBSCRIPTIONS: tuple[str, ...] = ()
PUBLISHES = ("data.specs", "data.raw", "data.labels")


def routes() -> list[Route]:
    """Ingestion consumes nothing."""
    return []


def entity_of(row: Row, entity_key: str) -> str | None:
    value = row.get(entity_key)
    return None if value is None else str(value)


def ingest_record(row: Row, versioned: VersionedSpec, *, now: datetime) -> Emit:
    """A RecordIngested event for one row as received, keyed by its entity."""
    entity = entity_of(row, versioned.spec.entity_key)
    record = RecordIngested(
        dataset=versioned.spec.name,
        entity=entity,
        values=row,
        ingested_at=now,
        spec_version=versioned.version,
    )
    return Emit("data.raw", Event.create(record, source=SOURCE, subject=entity), key=entity)


def record_label(label: LabelInput, dataset: str, *, now: datetime) -> Emit:
    """A LabelRecorded event keyed by the record id it labels."""
    recorded = LabelRecorded(
        dataset=dataset,
        record_id=label.record_id,
        label=label.label,
        labelled_at=label.labelled_at or now,
        entity=label.entity,
    )
    event = Event.create(recorded, source=SOURCE, subject=label.record_id)
    return Emit("data.labels", event, key=label.record_id)
