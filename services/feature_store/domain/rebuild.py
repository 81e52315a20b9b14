"""A training set rebuilt from the Kafka offset ranges a model's lineage names, never from
the offline store's files (which could have been changed since).

    lineage ranges -> data.labels: exactly the recorded ranges
    -> features: the data.features events whose source lies in the recorded data.validated
       ranges (the store's output for exactly those records), each checked against the
       record it names
    -> the offline store's rows (the same row code and types as the offline writers)
    -> the point-in-time join (domain.training_sets) -> the set as training reads it

Everything here is pure: the messages come from the Kafka adapter (adapters.kafka_ranges).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

import pandas as pd

from services.feature_store.domain.offline import (
    as_stored,
    feature_row,
    feature_schema,
    label_row,
    label_schema,
)
from services.feature_store.domain.training_sets import point_in_time_join
from shared.datasets.spec import DatasetSpec
from shared.events.codec import EventDecoder, UndecodableMessage
from shared.events.models import OffsetRange
from shared.events.records import FeaturesComputed, LabelRecorded, RecordValidated, SourcePosition

VALIDATED, LABELS, FEATURES = "data.validated", "data.labels", "data.features"
Position = tuple[str, int, int]


class UnrebuildableLineage(ValueError):
    """The ranges cannot be rebuilt as asked (other topics, several namespaces, no data)."""


class Message(Protocol):
    """What the pure code needs of a Kafka message (confluent_kafka.Message has it)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def value(self) -> bytes | None: ...


def namespace_of(ranges: Sequence[OffsetRange]) -> str:
    """The namespace of the lineage's topics (`<namespace>.data.labels`)."""
    namespaces = set()
    for offsets in ranges:
        prefix, _, short = offsets.topic.partition(".")
        if short not in (VALIDATED, LABELS):
            raise UnrebuildableLineage(
                f"the lineage names {offsets.topic!r}: only {VALIDATED} and {LABELS} ranges "
                "can be rebuilt"
            )
        namespaces.add(prefix)
    if len(namespaces) != 1:
        raise UnrebuildableLineage(f"the lineage's ranges span namespaces {sorted(namespaces)}")
    return namespaces.pop()


def ranges_of(ranges: Sequence[OffsetRange], topic: str) -> list[OffsetRange]:
    return [r for r in ranges if r.topic == topic]


@dataclass(frozen=True)
class RebuildSummary:
    """What the ranges held; it travels with the set (header X-Rebuild-Summary)."""

    feature_events: int
    label_events: int
    validated_records: int
    """Records of the dataset in the data.validated ranges."""
    records_with_features: int
    mismatched: int
    """Feature events whose data.validated message is not the record they name."""
    undecodable: int
    rows: int = 0

    def as_json(self) -> dict[str, int]:
        return asdict(self)


class RebuiltRows:
    """What the ranges hold, decoded: label rows, validated record ids, feature rows."""

    def __init__(self, dataset: str, max_bytes: int) -> None:
        self.dataset = dataset
        self.labels: list[dict[str, Any]] = []
        self.records: dict[Position, str] = {}
        self.features: list[dict[str, Any]] = []
        self.versions: set[int] = set()
        self.sources: set[Position] = set()
        self.mismatched = 0
        self.undecodable = 0
        self._decoders = {
            kind: EventDecoder([payload], max_bytes)
            for kind, payload in (
                (LABELS, LabelRecorded),
                (VALIDATED, RecordValidated),
                (FEATURES, FeaturesComputed),
            )
        }

    def decode(self, kind: str, message: Message) -> Any | None:
        """The payload of a message of this dataset (None: another dataset, or undecodable)."""
        try:
            payload = self._decoders[kind].decode(message.value() or b"").data
        except UndecodableMessage:
            self.undecodable += 1
            return None
        return payload if payload.dataset == self.dataset else None

    def add_label(self, message: Message) -> None:
        if (payload := self.decode(LABELS, message)) is not None:
            position = SourcePosition(
                topic=str(message.topic()),
                partition=int(message.partition() or 0),
                offset=int(message.offset() or 0),
            )
            self.labels.append(label_row(payload, position).values)

    def add_record(self, message: Message) -> None:
        if (payload := self.decode(VALIDATED, message)) is not None:
            position = (
                str(message.topic()),
                int(message.partition() or 0),
                int(message.offset() or 0),
            )
            self.records[position] = payload.record_id

    def add_features(self, message: Message) -> None:
        payload = self.decode(FEATURES, message)
        if payload is None:
            return
        source = payload.source
        record = self.records.get((source.topic, source.partition, source.offset))
        if record is None:
            return  # not one of the ranges' records
        if record != payload.record_id:
            self.mismatched += 1
            return
        self.features.append(feature_row(payload, int(message.offset() or 0)).values)
        self.versions.add(payload.spec_version)
        self.sources.add((source.topic, source.partition, source.offset))

    def summary(self, rows: int = 0) -> RebuildSummary:
        return RebuildSummary(
            feature_events=len(self.features),
            label_events=len(self.labels),
            validated_records=len(self.records),
            records_with_features=len(self.sources),
            mismatched=self.mismatched,
            undecodable=self.undecodable,
            rows=rows,
        )


def join_rows(
    rows: RebuiltRows,
    known: Sequence[DatasetSpec],
    latest: DatasetSpec | None,
    cut_off: datetime | None,
) -> pd.DataFrame:
    """The training set of the rebuilt rows, as the feature store builds it: the rows typed
    as the offline store stores them (`known`: the spec versions the feature events name),
    joined point in time up to the lineage's cut-off."""
    if not rows.features:
        raise UnrebuildableLineage(f"no feature of {rows.dataset!r} in the lineage's ranges")
    features = as_stored(rows.features, feature_schema(known))
    labels = as_stored(rows.labels, label_schema(latest))
    return point_in_time_join(features, labels, cut_off).frame
