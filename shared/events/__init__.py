"""Typed events: the envelope, the payloads, and the catalog that maps type names to payloads."""

from shared.events.catalog import EVENT_TYPES, payload_type
from shared.events.envelope import Event, Payload, new_event_id, utc_now
from shared.events.records import RecordIngested

__all__ = [
    "EVENT_TYPES",
    "Event",
    "Payload",
    "RecordIngested",
    "new_event_id",
    "payload_type",
    "utc_now",
]
