"""The rules a raw record must pass against its dataset spec. Pure: no I/O, no clock.

`check_record` collects every failing field and rule, never only the first:

| rule             | field        | when                                                          |
|------------------|--------------|---------------------------------------------------------------|
| required         | column       | entity key, record id column or non-nullable feature absent, null or "" (keys) |
| type             | column       | a value of the wrong type (see shared/datasets/values.py for what each type accepts) |
| range            | column       | a numeric or integer value outside min/max (inclusive)         |
| category         | column       | a categorical value not among the categories (as strings)      |
| not_finite       | column       | NaN or ±inf in any declared column (float, JSON token or string) |
| unexpected_field | column       | a column the spec does not declare                             |
| event_time       | time column  | the event time is missing, null or unparseable                 |
| future_time      | time column  | the event time lies past ingested_at + future_tolerance_seconds |
| label            | label column | with_record: missing, null or not of the label type; feedback: present at all |
| entity_mismatch  | entity key   | the envelope's entity differs from str(values[entity_key])     |
| key_mismatch     | entity key   | the message has a Kafka key and it differs from the entity     |
| too_long         | entity key, record id | over MAX_ENTITY_LENGTH (the envelope's subject limit) or MAX_RECORD_ID_LENGTH characters |

The Kafka key decides a raw record's partition, hence its order among its entity's records:
ingestion and the documented clients key a record by its entity, so a key that says another
entity is a producer's bug, and the record is rejected rather than validated out of order. A
message without a key (or with an empty one) is taken as it is.

A value outside a feature's expected range (expected_min/expected_max) breaks no rule: the
record passes and the feature is listed in `Checked.out_of_range` (RecordValidated.out_of_range),
so a covariate shift is counted as a signal instead of rejected.

Record-level rules (`unknown_dataset`, `unknown_version`, `malformed`, `duplicate_id`) need the
registry, the message or the id store; they are decided around this function, and so are the
rules on what a message's bytes hold (`not_utf8`, `nul_character`, `lone_surrogate`,
`number_overflow`, `number_too_long`, `too_large`: domain/reading.py and domain/decoding.py),
which are checked before any of these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from shared.datasets.spec import DatasetSpec, FeatureType
from shared.datasets.values import (
    Invalid,
    as_category,
    as_timestamp,
    check_range,
    coerce,
    outside_expected,
    wire,
)
from shared.events.envelope import MAX_SUBJECT_LENGTH
from shared.events.records import FieldError, FieldValue, RecordIngested

MAX_RECORD_ID_LENGTH: Final = 200  # the record-id store's column
MAX_ENTITY_LENGTH: Final = MAX_SUBJECT_LENGTH


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing()


@dataclass(frozen=True)
class Checked:
    """The outcome of the rules: errors, or the record's typed parts (both when partly valid)."""

    errors: list[FieldError]
    values: dict[str, FieldValue] = field(default_factory=dict)
    entity: str | None = None
    record_id: str | None = None
    event_time: datetime | None = None
    label: FieldValue = None
    out_of_range: list[str] = field(default_factory=list)
    """Features whose value lies outside their expected range (accepted, flagged)."""

    @property
    def ok(self) -> bool:
        return not self.errors


def error(field_name: str | None, rule: str, message: str, value: object = None) -> FieldError:
    shown: FieldValue = value if isinstance(value, str | int | float | bool) else None
    if isinstance(shown, str) and len(shown) > 1000:
        shown = shown[:997] + "..."
    return FieldError(field=field_name, rule=rule, message=message, value=wire(shown))


def _absent(value: object) -> str | None:
    if value is MISSING:
        return "is missing"
    if value is None:
        return "is null"
    return None


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class _Rules:
    def __init__(
        self, record: RecordIngested, spec: DatasetSpec, event_id: str, key: bytes | None
    ) -> None:
        self.record, self.spec, self.event_id, self.key = record, spec, event_id, key
        self.values = record.values
        self.errors: list[FieldError] = []
        self.out_of_range: list[str] = []

    def fail(self, name: str | None, rule: str, message: str, value: object = None) -> None:
        self.errors.append(error(name, rule, message, value))

    def entity(self) -> str | None:
        name = self.spec.entity_key
        value = self.values.get(name, MISSING)
        if (why := _absent(value)) is not None:
            self.fail(name, "required", f"the entity key {name} {why}")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(name, "not_finite", "the entity key is not a finite number", value)
            return None
        entity = str(value)
        if not entity.strip():
            self.fail(name, "required", f"the entity key {name} is empty", value)
            return None
        if len(entity) > MAX_ENTITY_LENGTH:
            message = f"an entity key has at most {MAX_ENTITY_LENGTH} characters, not {len(entity)}"
            self.fail(name, "too_long", message, value)
            return None
        if self.record.entity is not None and self.record.entity != entity:
            message = f"the message's entity {self.record.entity!r} differs from {name}={entity!r}"
            self.fail(name, "entity_mismatch", message, value)
        elif self.key and self.key != entity.encode():
            shown = self.key[:100].decode(errors="replace")
            message = f"the message's Kafka key {shown!r} differs from {name}={entity!r}"
            self.fail(name, "key_mismatch", message, value)
        return entity

    def record_id(self) -> str | None:
        name = self.spec.record_id
        if name is None:
            return self.event_id
        value = self.values.get(name, MISSING)
        if (why := _absent(value)) is not None:
            self.fail(name, "required", f"the record id {name} {why}")
            return None
        if isinstance(value, float):
            if not math.isfinite(value):
                self.fail(name, "not_finite", "the record id is not a finite number", value)
                return None
            if value.is_integer():
                return str(int(value))
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.fail(name, "type", "a record id is a string or an integer", value)
            return None
        record_id = str(value)
        if not record_id.strip():
            self.fail(name, "required", f"the record id {name} is empty", value)
            return None
        if len(record_id) > MAX_RECORD_ID_LENGTH:
            message = (
                f"a record id has at most {MAX_RECORD_ID_LENGTH} characters, not {len(record_id)}"
            )
            self.fail(name, "too_long", message, value)
            return None
        return record_id

    def event_time(self) -> datetime | None:
        name = self.spec.event_time
        value = self.values.get(name, MISSING)
        if (why := _absent(value)) is not None:
            self.fail(name, "event_time", f"the event time {name} {why}")
            return None
        try:
            moment = as_timestamp(value)
        except Invalid as invalid:
            rule = "not_finite" if invalid.rule == "not_finite" else "event_time"
            self.fail(name, rule, f"unparseable event time: {invalid.message}", value)
            return None
        tolerance = self.spec.future_tolerance_seconds
        latest = _as_utc(self.record.ingested_at) + timedelta(seconds=tolerance)
        if moment > latest:
            message = (
                f"{moment.isoformat()} is later than ingestion "
                f"({_as_utc(self.record.ingested_at).isoformat()}) + {tolerance:g}s"
            )
            self.fail(name, "future_time", message, value)
            return None
        return moment

    def features(self) -> dict[str, FieldValue]:
        typed: dict[str, FieldValue] = {}
        for feature in self.spec.features:
            value = self.values.get(feature.name, MISSING)
            typed[feature.name] = None
            if (why := _absent(value)) is not None:
                if not feature.nullable:
                    self.fail(feature.name, "required", f"{feature.name} {why}")
                continue
            try:
                coerced = coerce(feature.type, value, feature.categories)
                if feature.type in (FeatureType.NUMERIC, FeatureType.INTEGER):
                    check_range(coerced, feature.min, feature.max)  # type: ignore[arg-type]
            except Invalid as invalid:
                self.fail(feature.name, invalid.rule, invalid.message, value)
                continue
            typed[feature.name] = coerced
            if outside_expected(feature, coerced):
                self.out_of_range.append(feature.name)
        return typed

    def label(self) -> FieldValue:
        label = self.spec.label
        if label is None:
            return None
        value = self.values.get(label.name, MISSING)
        if label.arrival == "feedback":
            if value is not MISSING:
                message = f"{label.name} arrives later as feedback (data.labels), not in the record"
                self.fail(label.name, "label", message, value)
            return None
        if (why := _absent(value)) is not None:
            self.fail(label.name, "label", f"the label {label.name} {why}")
            return None
        try:
            coerced = coerce(label.type, value, label.categories)
            categories = label.categories
            if categories is not None and label.type != FeatureType.CATEGORICAL:
                as_category(coerced, categories)
        except Invalid as invalid:
            rule = "not_finite" if invalid.rule == "not_finite" else "label"
            self.fail(label.name, rule, f"the label: {invalid.message}", value)
            return None
        return coerced

    def unexpected(self) -> None:
        declared = {self.spec.entity_key, self.spec.event_time}
        declared.update(feature.name for feature in self.spec.features)
        if self.spec.record_id is not None:
            declared.add(self.spec.record_id)
        if self.spec.label is not None:
            declared.add(self.spec.label.name)
        for name, value in self.values.items():
            if name not in declared:
                self.fail(
                    name, "unexpected_field", f"{self.spec.name} declares no column {name}", value
                )


def check_record(
    record: RecordIngested, spec: DatasetSpec, event_id: str, key: bytes | None = None
) -> Checked:
    """Every rule of `spec` against one record; `event_id` is its id when the spec names none,
    `key` the Kafka key of its message."""
    rules = _Rules(record, spec, event_id, key)
    entity = rules.entity()
    record_id = rules.record_id()
    event_time = rules.event_time()
    values = rules.features()
    label = rules.label()
    rules.unexpected()
    return Checked(
        errors=rules.errors,
        values=values,
        entity=entity,
        record_id=record_id,
        event_time=event_time,
        label=label,
        out_of_range=rules.out_of_range,
    )
