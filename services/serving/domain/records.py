"""What a record sent to /predict must hold for one served model, checked against its dataset
spec. Pure: no I/O.

A model's input columns (its lineage's feature_columns) are features of the spec, windowed
aggregates of the spec, or other derived columns. `read_record` collects every failing field:

| rule             | when                                                                  |
|------------------|-----------------------------------------------------------------------|
| required         | a non-nullable feature, or a derived column, the model needs is absent or null |
| type, not_finite | a value of the wrong kind, NaN or ±inf (shared/datasets/values.py)        |
| range            | a numeric or integer feature outside the spec's hard min/max; a negative count or sum |
| category         | a categorical value not among the spec's categories                   |
| unexpected_field | a column neither the spec nor the model declares                      |

A value outside a feature's expected range (expected_min/expected_max) is accepted, as
validation accepts it, and named in `ReadRecord.out_of_range` (counted per feature).

Aggregates the record leaves out are missing values (NaN) for the model: they belong to the
entity's history, which only the online store has (ask with "entities" instead). Features of
the spec the model does not use are checked when present and never required. The spec's
entity key, event time, record id and label columns may come along; the record id and the
entity are echoed in the answer.

Features looked up by entity (`read_stored`) pass the same checks against the same spec (the
model's version): type, category, hard range, expected range. Only presence is not required
of them: a value the online store lacks is missing, as the model was trained to take it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Final

from shared.datasets.spec import Aggregation, DatasetSpec, FeatureSpec, FeatureType
from shared.datasets.values import Invalid, as_number, check_range, coerce
from shared.events.records import FieldError, FieldValue

NUMERIC_TYPES: Final = frozenset({FeatureType.NUMERIC, FeatureType.INTEGER})
MAX_ID_LENGTH: Final = 200


@dataclass(frozen=True)
class ReadRecord:
    """A record as the model reads it: one value per input column (None: missing)."""

    values: dict[str, FieldValue]
    record_id: str | None = None
    entity: str | None = None
    out_of_range: tuple[str, ...] = ()
    """Features outside their expected range: accepted, flagged."""


@dataclass(frozen=True)
class InputSchema:
    """The columns one model reads, and what the spec says about each."""

    spec: DatasetSpec
    columns: tuple[str, ...]
    features: Mapping[str, FeatureSpec]
    aggregates: Mapping[str, Aggregation]
    derived: frozenset[str]

    @classmethod
    def of(cls, spec: DatasetSpec, columns: tuple[str, ...]) -> InputSchema:
        features = {feature.name: feature for feature in spec.features}
        aggregates = {aggregation.name: aggregation for aggregation in spec.aggregations}
        derived = frozenset(columns) - features.keys() - aggregates.keys()
        return cls(spec, columns, features, aggregates, derived)

    @property
    def float_columns(self) -> frozenset[str]:
        """Columns the model reads as float64, as training types them: numeric, integer and
        boolean (0/1) features, and every aggregate."""
        numbers = NUMERIC_TYPES | {FeatureType.BOOLEAN}
        numeric = {n for n, f in self.features.items() if f.type in numbers}
        return frozenset(c for c in self.columns if c in numeric or c in self.aggregates)

    @property
    def category_columns(self) -> frozenset[str]:
        """Columns the model reads as Python strings (object dtype), as training types them."""
        return frozenset(
            c
            for c in self.columns
            if c in self.features and self.features[c].type == FeatureType.CATEGORICAL
        )

    @cached_property
    def required(self) -> tuple[str, ...]:
        """Columns a record must hold: the derived ones and the non-nullable features."""
        return tuple(
            column
            for column in self.columns
            if column in self.derived
            or (column in self.features and not self.features[column].nullable)
        )

    @cached_property
    def passthrough(self) -> frozenset[str]:
        """Columns a record may carry beside the model's input: keys, time, id, label."""
        spec = self.spec
        names = {spec.entity_key, spec.event_time, spec.record_id}
        if spec.label is not None:
            names.add(spec.label.name)
        return frozenset(name for name in names if name is not None)


class _Reader:
    """Reads one record, collecting every error instead of stopping at the first."""

    def __init__(self, schema: InputSchema) -> None:
        self.schema = schema
        self.errors: list[FieldError] = []
        self.out_of_range: list[str] = []

    def fail(self, field: str, error: Invalid, value: FieldValue) -> None:
        self.errors.append(
            FieldError(field=field, rule=error.rule, message=error.message, value=value)
        )

    def feature(self, feature: FeatureSpec, value: FieldValue) -> FieldValue:
        if value is None:
            if not feature.nullable and feature.name in self.schema.columns:
                self.fail(feature.name, Invalid("required", "must not be null"), value)
            return None
        try:
            typed = coerce(feature.type, value, feature.categories)
            if feature.type in NUMERIC_TYPES:
                check_range(typed, feature.min, feature.max)  # type: ignore[arg-type]
        except Invalid as error:
            self.fail(feature.name, error, value)
            return None
        if feature.type in NUMERIC_TYPES:
            self.flag_unexpected(feature, typed)  # type: ignore[arg-type]
        return typed

    def flag_unexpected(self, feature: FeatureSpec, value: float | int) -> None:
        try:
            check_range(value, feature.expected_min, feature.expected_max)
        except Invalid:
            self.out_of_range.append(feature.name)

    def aggregate(self, aggregation: Aggregation, value: FieldValue) -> FieldValue:
        if value is None:
            return None
        try:
            number = as_number(value)
            if aggregation.function in ("count", "sum") and number < 0:
                raise Invalid("range", f"a {aggregation.function} cannot be negative ({number:g})")
        except Invalid as error:
            self.fail(aggregation.name, error, value)
            return None
        return number

    def identifier(self, field: str, value: FieldValue) -> str | None:
        if value is None or isinstance(value, bool) or value == "":
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(field, Invalid("not_finite", "an id cannot be NaN or infinite"), value)
            return None
        text = str(value)
        if len(text) > MAX_ID_LENGTH:
            self.fail(field, Invalid("type", f"longer than {MAX_ID_LENGTH} characters"), value)
            return None
        return text


def read_record(
    schema: InputSchema, record: Mapping[str, FieldValue]
) -> ReadRecord | list[FieldError]:
    """The model's view of one record, or every error found in it."""
    reader = _Reader(schema)
    passthrough = schema.passthrough
    values: dict[str, FieldValue] = {}
    for name, value in record.items():
        if name in schema.features:
            values[name] = reader.feature(schema.features[name], value)
        elif name in schema.aggregates:
            values[name] = reader.aggregate(schema.aggregates[name], value)
        elif name in schema.derived:
            values[name] = value
        elif name not in passthrough:
            known = "the spec's columns or the model's inputs"
            reader.fail(name, Invalid("unexpected_field", f"not one of {known}"), value)
    for column in schema.required:
        if column not in record:
            reader.fail(column, Invalid("required", "missing: the model reads this column"), None)
        elif record[column] is None and column in schema.derived:
            reader.fail(column, Invalid("required", "must not be null"), None)
    spec = schema.spec
    record_id = (
        reader.identifier(spec.record_id, record.get(spec.record_id)) if spec.record_id else None
    )
    entity = reader.identifier(spec.entity_key, record.get(spec.entity_key))
    if reader.errors:
        return reader.errors
    return ReadRecord(
        values={column: values.get(column) for column in schema.columns},
        record_id=record_id,
        entity=entity,
        out_of_range=tuple(reader.out_of_range),
    )


def read_stored(
    schema: InputSchema,
    stored: Mapping[str, FieldValue],
    entity: str,
    record_id: str | None,
) -> ReadRecord | list[FieldError]:
    """The model's view of an entity's features from the online store, checked as an inline
    record's are; a value the store lacks is missing, not an error."""
    reader = _Reader(schema)
    values: dict[str, FieldValue] = {}
    for column in schema.columns:
        value = stored.get(column)
        if value is None:
            values[column] = None
        elif column in schema.features:
            values[column] = reader.feature(schema.features[column], value)
        elif column in schema.aggregates:
            values[column] = reader.aggregate(schema.aggregates[column], value)
        else:
            values[column] = value
    if reader.errors:
        return reader.errors
    return ReadRecord(values, record_id, entity, tuple(reader.out_of_range))
