"""Per-entity windowed aggregates (count, sum, mean), applied once per source message.

The whole streaming state of one entity is one `EntityState`: the running totals of every
window it has data in, the latest event time seen (its watermark), and the Kafka position of
the last record applied. Records of one entity share a partition (data.validated is keyed by
entity), so their offsets only grow: a record at or below the last applied offset was
already counted (a replay after a crash) and `apply_record` must not be called for it again.
Because the state and that offset are one value, they are saved together or not at all.

A window is kept while its end lies within `grace_s` of the watermark; a record later than
that starts its window afresh (it is counted, but with less history than it had).

>>> from shared.datasets.spec import Aggregation
>>> count = Aggregation(name="n_1h", function="count", window_seconds=3600)
>>> total = Aggregation(name="loan_1h", function="sum", feature="loan", window_seconds=3600)
>>> at = datetime.fromisoformat("2024-01-01T10:15:00+00:00")
>>> first = apply_record(EntityState(), [count, total], at, {"loan": 100.0}, 0, 7, grace_s=60)
>>> first.aggregates
{'n_1h': 1, 'loan_1h': 100.0}
>>> later = at.replace(minute=45)
>>> apply_record(first.state, [count, total], later, {"loan": 50.0}, 0, 9, 60).aggregates
{'n_1h': 2, 'loan_1h': 150.0}
>>> already_applied(first.state, partition=0, offset=7)
True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.feature_store.domain.windows import (
    MICROS,
    WindowShape,
    epoch_micros,
    trailing_start,
    window_starts,
)
from shared.datasets.spec import Aggregation
from shared.events.records import FieldValue

Totals = tuple[int, float]
"""(values counted, their sum) of one window."""


class AggregationError(ValueError):
    """A value that cannot be aggregated (e.g. text summed); the record is dead-lettered."""

    reason = "aggregation_error"


class EntityState(BaseModel):
    """Everything the stream keeps about one entity; saved as one table value."""

    model_config = ConfigDict(frozen=True)

    partition: int | None = Field(None, description="Partition of the last applied record.")
    offset: int = Field(-1, description="Offset of the last applied record (-1: none yet).")
    watermark_us: int | None = Field(None, description="Latest event time seen, microseconds.")
    windows: dict[str, dict[int, Totals]] = Field(
        default_factory=dict, description="Aggregation signature -> window start (s) -> totals."
    )
    sources: dict[str, int] = Field(
        default_factory=dict,
        description="Raw message each source partition last gave a record of this entity: "
        "'<topic>:<partition>' -> offset.",
    )

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, data: str | bytes) -> EntityState:
        return cls.model_validate_json(data)


@dataclass(frozen=True)
class Applied:
    state: EntityState
    aggregates: dict[str, FieldValue]
    late: bool
    """The record's own window had already been dropped: it was counted with less history."""


def signature(aggregation: Aggregation) -> str:
    """What makes two aggregations the same state: a changed definition starts afresh."""
    shape = WindowShape.of(aggregation)
    parts = (aggregation.name, aggregation.function, aggregation.feature or "")
    return ":".join((*parts, str(shape.size_s), str(shape.hop_s)))


@functools.lru_cache(maxsize=1024)
def _shape_and_signature(aggregation: Aggregation) -> tuple[WindowShape, str]:
    return WindowShape.of(aggregation), signature(aggregation)


def already_applied(state: EntityState | None, *, partition: int, offset: int) -> bool:
    """True when a record at this position was counted before (a replay)."""
    return state is not None and state.partition == partition and offset <= state.offset


def source_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def already_counted(state: EntityState | None, source: tuple[str, int] | None) -> bool:
    """True when the raw message (`source_key`, offset) a record came from, or a later one of
    its partition, was counted for this entity before: the record is a copy validation
    published again after a crash (same event, at-least-once), not a new one. An entity's raw
    messages share a partition (keyed by entity) and are validated in their order."""
    if state is None or source is None:
        return False
    key, offset = source
    return offset <= state.sources.get(key, -1)


def apply_record(
    state: EntityState,
    aggregations: Sequence[Aggregation],
    event_time: datetime,
    values: Mapping[str, FieldValue],
    partition: int,
    offset: int,
    grace_s: int,
    source: tuple[str, int] | None = None,
) -> Applied:
    """Counts one record into every window it falls in; returns the new state and the
    aggregates as of the record's event time (the record included). `source`: the raw
    message it came from (`source_key`, offset), remembered for `already_counted`."""
    moment_us = epoch_micros(event_time)
    watermark_us = moment_us if state.watermark_us is None else max(state.watermark_us, moment_us)
    horizon_us = watermark_us - grace_s * MICROS
    windows: dict[str, dict[int, Totals]] = {}
    aggregates: dict[str, FieldValue] = {}
    late = False
    for aggregation in aggregations:
        shape, key = _shape_and_signature(aggregation)
        trailing = trailing_start(shape, moment_us)
        late = late or _ends_before(shape, trailing, horizon_us)
        contribution = _contribution(aggregation, values)
        buckets = _add(state.windows.get(key, {}), shape, moment_us, contribution)
        aggregates[aggregation.name] = _value(aggregation, buckets.get(trailing, (0, 0.0)))
        windows[key] = {
            start: totals
            for start, totals in buckets.items()
            if not _ends_before(shape, start, horizon_us)
        }
    # Built from values made here, not read: validating the windows again costs more than
    # everything else a record does.
    sources = state.sources if source is None else {**state.sources, source[0]: source[1]}
    new_state = EntityState.model_construct(
        partition=partition,
        offset=offset,
        watermark_us=watermark_us,
        windows=windows,
        sources=sources,
    )
    return Applied(new_state, aggregates, late)


def _ends_before(shape: WindowShape, start_s: int, horizon_us: int) -> bool:
    return shape.end_s(start_s) * MICROS <= horizon_us


def _add(
    buckets: Mapping[int, Totals], shape: WindowShape, moment_us: int, contribution: float | None
) -> dict[int, Totals]:
    updated = dict(buckets)
    if contribution is None:
        return updated
    for start in window_starts(shape, moment_us):
        counted, total = updated.get(start, (0, 0.0))
        updated[start] = (counted + 1, total + contribution)
    return updated


def _contribution(aggregation: Aggregation, values: Mapping[str, FieldValue]) -> float | None:
    """What the record adds: 1 for a count; the feature's value for sum and mean (a missing
    value adds nothing)."""
    if aggregation.function == "count":
        return 1.0
    assert aggregation.feature is not None
    value = values.get(aggregation.feature)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AggregationError(
            f"{aggregation.name}: {aggregation.function} of {aggregation.feature!r} "
            f"needs a number, the record holds {value!r}"
        )
    if not math.isfinite(value):
        raise AggregationError(f"{aggregation.name}: {aggregation.feature!r} is {value}")
    return float(value)


def _value(aggregation: Aggregation, totals: Totals) -> FieldValue:
    counted, total = totals
    if aggregation.function == "count":
        return counted
    if aggregation.function == "sum":
        return total
    return total / counted if counted else None


def replay(
    records: Sequence[tuple[datetime, Mapping[str, FieldValue], int, int]],
    aggregations: Sequence[Aggregation],
    grace_s: int,
) -> list[dict[str, FieldValue]]:
    """The aggregates of one entity's records applied in order, from an empty state: what an
    uninterrupted run computes (records as (event time, values, partition, offset))."""
    state = EntityState()
    results = []
    for event_time, values, partition, offset in records:
        applied = apply_record(state, aggregations, event_time, values, partition, offset, grace_s)
        state = applied.state
        results.append(applied.aggregates)
    return results
