"""Typed events: the envelope, the payloads, and the catalog that maps type names to payloads."""

from shared.events.catalog import EVENT_TYPES, payload_type
from shared.events.envelope import Event, Payload, new_event_id, utc_now
from shared.events.records import (
    DatasetSpecRegistered,
    FeaturesComputed,
    FieldError,
    LabelRecorded,
    RecordIngested,
    RecordRejected,
    RecordValidated,
    SourcePosition,
)

__all__ = [
    "EVENT_TYPES",
    "DatasetSpecRegistered",
    "Event",
    "FeaturesComputed",
    "FieldError",
    "LabelRecorded",
    "Payload",
    "RecordIngested",
    "RecordRejected",
    "RecordValidated",
    "SourcePosition",
    "new_event_id",
    "payload_type",
    "utc_now",
]
