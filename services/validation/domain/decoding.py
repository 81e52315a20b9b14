"""What a message on the raw topic is: an envelope, a bare record, or malformed. Pure.

Three forms, told apart by their keys:

- a RecordIngested envelope (CloudEvents keys `specversion`, `type`, `data`), as the ingestion
  service and the shared producer write it; its id is its own;
- the bare form of schemas/raw-record.json (`dataset`, `values`, optional `entity`), as any
  Kafka client may publish it; it becomes a RecordIngested whose id is
  uuid5(NAMESPACE_URL, "<topic>/<partition>/<offset>") and whose ingested_at is the Kafka
  timestamp, so a redelivery has the same id;
- anything else (not JSON, not an object, the wrong shape, over the size limit, a tombstone):
  a `MalformedRaw` event with the reason. It is never dead-lettered: validation turns it into a
  RecordRejected with rule `malformed` (`too_large` over the size limit, `not_utf8` for bytes
  that are not UTF-8), so validated + rejected always equals raw.

A message that is JSON but holds a value no store or output can carry (a NUL character, a
lone surrogate, a number beyond the float range or past the digit limit: domain/reading.py)
becomes a `MalformedRaw` too, with one error per such value, named by its column and rule.

Python's json module accepts the tokens NaN, Infinity and -Infinity; they decode to floats and
reach the rules, which reject them as `not_finite`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from pydantic import Field, ValidationError

from services.validation.domain.reading import Finding, Unreadable, read_json
from shared.datasets.values import wire
from shared.events.envelope import Event, Payload, utc_now
from shared.events.records import FieldError, FieldValue, RawRecord, RecordIngested
from shared.kafka.consumer import MessageInfo

BARE_SOURCE: Final = "raw-client"
_ENVELOPE_KEYS: Final = frozenset({"specversion", "type", "data"})
_MAX_REASON: Final = 1000


class MalformedRaw(Payload):
    """A raw message that is no record; internal to validation, never published as such."""

    event_type: ClassVar[str] = "mlops.validation.MalformedRaw"

    reason: str
    dataset: str | None = None
    values: dict[str, FieldValue] = Field(default_factory=dict)
    errors: list[FieldError] = Field(default_factory=list)
    """Every failing field and rule; [malformed: reason] when empty."""
    entity: str | None = None


def position_id(topic: str, partition: int, offset: int) -> str:
    """The id of a message that carries none: stable across redeliveries of that message."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{topic}/{partition}/{offset}"))


def kafka_time(info: MessageInfo) -> datetime:
    if info.timestamp_ms is None or info.timestamp_ms <= 0:
        return utc_now()
    return datetime.fromtimestamp(info.timestamp_ms / 1000, UTC)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False)[:5]:
        location = ".".join(str(part) for part in item["loc"]) or "<root>"
        parts.append(f"{location}: {item['msg']}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _rule_of(error: ValidationError) -> str:
    """`too_long` when a text is over its limit (an entity over the envelope's subject limit,
    a dataset name over 200 characters), else `malformed`."""
    kinds = {item["type"] for item in error.errors()}
    return "too_long" if kinds == {"string_too_long"} else "malformed"


def _dataset_of(document: dict[str, Any]) -> str | None:
    name = document.get("dataset")
    return name if isinstance(name, str) and 0 < len(name) <= 200 else None


def _scalars_of(document: dict[str, Any]) -> dict[str, FieldValue]:
    """The values of a malformed record that can still be shown (scalars only)."""
    values = document.get("values")
    if not isinstance(values, dict):
        return {}
    return {
        key: wire(value)
        for key, value in values.items()
        if isinstance(key, str) and (value is None or isinstance(value, str | int | float | bool))
    }


class _Malformed(Exception):
    def __init__(
        self,
        reason: str,
        document: dict[str, Any] | None = None,
        rule: str = "malformed",
        errors: list[FieldError] | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason[:_MAX_REASON]
        self.document = document or {}
        self.errors = errors or [FieldError(field=None, rule=rule, message=self.reason)]


_VALUES_PATHS: Final = (("values",), ("data", "values"))


def _field_error(finding: Finding) -> FieldError:
    """A finding as the error of its column (a record's values) or of the record."""
    path, shown = finding.path, finding.shown
    if len(path) >= 2 and path[:-1] in _VALUES_PATHS:
        name = str(path[-1])
        return FieldError(field=name, rule=finding.rule, message=f"{name} {finding.message}",
                          value=shown[:_MAX_REASON] if shown else None)  # fmt: skip
    where = ".".join(str(part) for part in path)
    message = f"{where} {finding.message}" if where else finding.message
    return FieldError(field=None, rule=finding.rule, message=message[:_MAX_REASON])


def _parse(value: bytes | None, max_bytes: int) -> Any:
    if value is None:
        raise _Malformed("empty message value (tombstone)")
    if len(value) > max_bytes:
        reason = f"{len(value)} bytes exceeds the limit of {max_bytes} bytes for a record"
        raise _Malformed(reason, rule="too_large")
    try:
        document, findings = read_json(value)
    except Unreadable as unreadable:
        raise _Malformed(str(unreadable), rule=unreadable.rule) from None
    except RecursionError:
        raise _Malformed("not JSON: nested too deeply") from None
    if findings:
        inner = document.get("data") if isinstance(document, dict) else None
        shown = inner if isinstance(inner, dict) and "specversion" in document else document
        errors = [_field_error(finding) for finding in findings]
        reason = "; ".join(error.message for error in errors)
        raise _Malformed(reason, shown if isinstance(shown, dict) else None, errors=errors)
    return document


def _envelope(document: dict[str, Any]) -> Event[RecordIngested]:
    data = document.get("data")
    inner = data if isinstance(data, dict) else {}
    if document.get("type") != RecordIngested.event_type:
        reason = f"event type {document.get('type')!r} is not {RecordIngested.event_type}"
        raise _Malformed(reason, inner)
    try:
        return Event[RecordIngested].model_validate(document)
    except ValidationError as problem:
        reason = f"not a RecordIngested envelope: {_describe(problem)}"
        raise _Malformed(reason, inner, rule=_rule_of(problem)) from None


def _bare(document: dict[str, Any], info: MessageInfo) -> Event[RecordIngested]:
    try:
        raw = RawRecord.model_validate(document)
    except ValidationError as problem:
        reason = f"not a raw record: {_describe(problem)}"
        raise _Malformed(reason, document, rule=_rule_of(problem)) from None
    event_id = position_id(info.topic, info.partition, info.offset)
    ingested_at = kafka_time(info)
    record = RecordIngested(
        dataset=raw.dataset, entity=raw.entity, values=raw.values, ingested_at=ingested_at
    )
    return Event[RecordIngested](
        id=event_id,
        source=BARE_SOURCE,
        type=RecordIngested.event_type,
        time=ingested_at,
        subject=raw.entity,
        correlationid=event_id,
        data=record,
    )


def decode_raw(value: bytes | None, info: MessageInfo, max_bytes: int) -> Event[Any]:
    """An Event[RecordIngested], or an Event[MalformedRaw] saying why the message is none."""
    try:
        document = _parse(value, max_bytes)
        if not isinstance(document, dict):
            raise _Malformed(f"not a JSON object but {type(document).__name__}")
        if _ENVELOPE_KEYS & document.keys():
            return _envelope(document)
        return _bare(document, info)
    except _Malformed as malformed:
        event_id = position_id(info.topic, info.partition, info.offset)
        entity = malformed.document.get("entity")
        payload = MalformedRaw(
            reason=malformed.reason,
            dataset=_dataset_of(malformed.document),
            values=_scalars_of(malformed.document),
            errors=malformed.errors,
            entity=entity if isinstance(entity, str) and len(entity) <= 1000 else None,
        )
        return Event[MalformedRaw](
            id=event_id,
            source=BARE_SOURCE,
            type=MalformedRaw.event_type,
            time=kafka_time(info),
            correlationid=event_id,
            data=payload,
        )


class RawDecoder:
    """The data.raw subscription's decoder (shared.kafka.consumer.Decoder): never raises."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def decode(self, value: bytes | None, info: MessageInfo | None = None) -> Event[Any]:
        if info is None:
            raise TypeError("RawDecoder needs the message position (MessageInfo)")
        return decode_raw(value, info, self.max_bytes)
