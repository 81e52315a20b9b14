"""What the feature store does with each message, free of Kafka and faust.

    data.validated (RecordValidated) -> data.features (FeaturesComputed), entity state
    data.features  (FeaturesComputed) -> offline feature rows (Parquet)
    data.labels    (LabelRecorded)    -> offline label rows (Parquet)

The streaming side takes a batch of data.validated messages and the current state of their
entities and returns everything the batch causes: the events to publish, the new entity
states, the messages to dead-letter. The faust agent (adapters/streaming.py) publishes and
saves those, then acknowledges the batch; a record whose entity state already counts its
offset is a replay and causes nothing. No HTTP route publishes to Kafka (PUBLISHES is empty).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.feature_store.domain.aggregates import (
    AggregationError,
    EntityState,
    already_applied,
    already_counted,
    apply_record,
    source_key,
)
from services.feature_store.domain.offline import OfflineRow, feature_row, label_row
from services.feature_store.domain.vectors import (
    SpecConflict,
    feature_columns,
    feature_vector,
    features_event_id,
    state_key,
)
from shared.datasets.spec import VersionedSpec
from shared.events.envelope import Event
from shared.events.records import (
    FeaturesComputed,
    LabelRecorded,
    RecordValidated,
    SourcePosition,
)
from shared.kafka.consumer import Emit, MessageInfo
from shared.telemetry import KafkaHeaders

SOURCE = "feature-store"
CONSUMES = "data.validated"
FEATURES = "data.features"
LABELS = "data.labels"
DEAD_LETTER = "bus.dead-letter"
PUBLISHES: tuple[str, ...] = ()

SpecKey = tuple[str, int]
StateLookup = Callable[[str], EntityState | None]


class UnknownSpec(LookupError):
    reason = "unknown_spec"


@dataclass(frozen=True)
class Incoming:
    """One data.validated message: decoded, or the reason it could not be."""

    info: MessageInfo
    value: bytes | None
    headers: KafkaHeaders
    event: Event[Any] | None = None
    error: Exception | None = None


@dataclass(frozen=True)
class TracedEmit:
    """An event to publish in the trace of the message that caused it."""

    emit: Emit
    headers: KafkaHeaders
    source_partition: int = 0


@dataclass
class Outcome:
    """Everything one batch of data.validated causes."""

    emits: list[TracedEmit] = field(default_factory=list)
    states: dict[str, EntityState] = field(default_factory=dict)
    dead_letters: list[tuple[Incoming, Exception]] = field(default_factory=list)
    computed: list[FeaturesComputed] = field(default_factory=list)
    replayed: int = 0
    late: int = 0


def spec_keys(batch: Sequence[Incoming]) -> set[SpecKey]:
    """The spec versions a batch needs, to look them up before computing it."""
    return {
        (item.event.data.dataset, item.event.data.spec_version)
        for item in batch
        if item.event is not None
    }


def compute_features(
    batch: Sequence[Incoming],
    specs: Mapping[SpecKey, VersionedSpec],
    load_state: StateLookup,
    grace_s: int,
) -> Outcome:
    """Feature vectors of a batch, in order; the states it leaves are in `outcome.states`."""
    outcome = Outcome()
    for item in batch:
        if item.event is None:
            outcome.dead_letters.append((item, item.error or ValueError("undecodable")))
            continue
        record: RecordValidated = item.event.data
        key = state_key(record.dataset, record.entity)
        state = outcome.states.get(key) or load_state(key)
        if already_applied(
            state, partition=item.info.partition, offset=item.info.offset
        ) or already_counted(state, raw_source(record)):
            outcome.replayed += 1
            continue
        try:
            emitted, new_state, late = compute_record(item.event, item.info, state, specs, grace_s)
        except (UnknownSpec, SpecConflict, AggregationError) as error:
            outcome.dead_letters.append((item, error))
            continue
        outcome.states[key] = new_state
        outcome.emits.append(TracedEmit(emitted, item.headers, item.info.partition))
        outcome.computed.append(emitted.event.data)
        outcome.late += int(late)
    return outcome


def compute_record(
    event: Event[Any],
    info: MessageInfo,
    state: EntityState | None,
    specs: Mapping[SpecKey, VersionedSpec],
    grace_s: int,
) -> tuple[Emit, EntityState, bool]:
    """The FeaturesComputed of one record (its id derived from the input's), its entity's
    new state, and whether it came later than its window's grace."""
    record: RecordValidated = event.data
    versioned = specs.get((record.dataset, record.spec_version))
    if versioned is None:
        raise UnknownSpec(f"no spec {record.dataset!r} version {record.spec_version}")
    feature_columns(versioned.spec)
    applied = apply_record(
        state or EntityState(),
        versioned.spec.aggregations,
        record.event_time,
        record.values,
        info.partition,
        info.offset,
        grace_s,
        raw_source(record),
    )
    payload = FeaturesComputed(
        dataset=record.dataset,
        spec_version=record.spec_version,
        record_id=record.record_id,
        entity=record.entity,
        event_time=record.event_time,
        features=feature_vector(record.values, applied.aggregates),
        source=SourcePosition(topic=info.topic, partition=info.partition, offset=info.offset),
        label=record.label,
    )
    output = Event[FeaturesComputed](
        id=features_event_id(event.id),
        source=SOURCE,
        type=FeaturesComputed.event_type,
        subject=record.entity,
        correlationid=event.correlationid or event.id,
        causationid=event.id,
        data=payload,
    )
    return Emit(FEATURES, output, key=record.entity), applied.state, applied.late


def offline_feature_rows(event: Event[Any], info: MessageInfo) -> list[OfflineRow]:
    """A data.features message becomes one feature row, filed by its position in that topic."""
    return [feature_row(event.data, info.offset)]


def offline_label_rows(event: Event[Any], info: MessageInfo) -> list[OfflineRow]:
    """A data.labels message becomes one label row, with its own position as its source."""
    payload: LabelRecorded = event.data
    position = SourcePosition(topic=info.topic, partition=info.partition, offset=info.offset)
    return [label_row(payload, position)]


def raw_source(record: RecordValidated) -> tuple[str, int]:
    """The raw message a validated record came from, as `already_counted` compares it."""
    return source_key(record.source.topic, record.source.partition), record.source.offset
