"""The event envelope: CloudEvents attribute names around a typed payload.

On the wire an event is one JSON object in CloudEvents structured mode, e.g.::

    {"specversion": "1.0", "id": "...", "source": "ingestion", "type": "mlops.data.RecordIngested",
     "time": "...", "subject": "customer-42", "datacontenttype": "application/json",
     "correlationid": "...", "causationid": null, "data": {...}}
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, model_validator


class Payload(BaseModel):
    """Base class of every event payload; `event_type` names it on the wire."""

    model_config = ConfigDict(extra="ignore", frozen=True, ser_json_inf_nan="constants")

    event_type: ClassVar[str]


P = TypeVar("P", bound=Payload)

MAX_SUBJECT_LENGTH = 1000
"""The longest `subject` (an entity key): outputs keyed by a longer one cannot be built."""


def new_event_id() -> str:
    return str(uuid.uuid4())


def utc_now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel, Generic[P]):
    """One event: CloudEvents context attributes plus correlation/causation ids and a payload."""

    # NaN and infinities stay NaN/Infinity on the wire (as Python's json writes them) rather
    # than becoming null, so validation can tell a non-finite value from a missing one.
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=new_event_id, min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=200)
    time: datetime = Field(default_factory=utc_now)
    subject: str | None = Field(None, max_length=MAX_SUBJECT_LENGTH)
    datacontenttype: Literal["application/json"] = "application/json"
    correlationid: str | None = Field(None, max_length=200)
    causationid: str | None = Field(None, max_length=200)
    data: SerializeAsAny[P]

    @model_validator(mode="after")
    def _type_names_payload(self) -> Self:
        expected = getattr(type(self.data), "event_type", None)
        if expected is not None and self.type != expected:
            raise ValueError(f"type {self.type!r} does not match payload type {expected!r}")
        return self

    @classmethod
    def create(
        cls,
        data: P,
        *,
        source: str,
        subject: str | None = None,
        caused_by: Event[Any] | None = None,
    ) -> Self:
        """A new event; when `caused_by` is given, it carries that event's correlation."""
        event_id = new_event_id()
        correlation = event_id
        causation = None
        if caused_by is not None:
            correlation = caused_by.correlationid or caused_by.id
            causation = caused_by.id
        return cls(
            id=event_id,
            source=source,
            type=type(data).event_type,
            subject=subject,
            correlationid=correlation,
            causationid=causation,
            data=data,
        )

    def to_json_bytes(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self)
