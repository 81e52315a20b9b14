"""Offline rows and where they are stored: Parquet files named by the Kafka offsets they hold.

    <namespace>/features/dataset=<name>/date=<YYYY-MM-DD>/part-<partition>-<first>-<last>.parquet
    <namespace>/labels/dataset=<name>/date=<YYYY-MM-DD>/part-<partition>-<first>-<last>.parquet

partition, first and last are those of the topic the rows were read from (data.features,
data.labels), so the same batch read again is written to the same name. Each row also says
where its data came from (``source_topic``, ``source_partition``, ``source_offset``: the
data.validated message of a feature row, the data.labels message of a label row).

>>> from datetime import date
>>> object_key("ns", "features", "loans", date(2024, 5, 1), 2, 10, 19)
'ns/features/dataset=loans/date=2024-05-01/part-2-10-19.parquet'
>>> parse_part_name("part-2-10-19.parquet")
(2, 10, 19)
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shared.datasets.spec import DatasetSpec, FeatureType
from shared.events.records import FeaturesComputed, LabelRecorded, SourcePosition

Kind = Literal["features", "labels"]
_PART = re.compile(r"^part-(\d+)-(\d+)-(\d+)\.parquet$")
_ARROW_TYPES: dict[FeatureType, pa.DataType] = {
    FeatureType.NUMERIC: pa.float64(),
    FeatureType.INTEGER: pa.int64(),
    FeatureType.CATEGORICAL: pa.string(),
    FeatureType.BOOLEAN: pa.bool_(),
    FeatureType.TIMESTAMP: pa.string(),
}
_TIME = pa.timestamp("us", tz="UTC")
_SOURCE_FIELDS = [
    pa.field("source_topic", pa.string()),
    pa.field("source_partition", pa.int32()),
    pa.field("source_offset", pa.int64()),
]


@dataclass(frozen=True)
class OfflineRow:
    """One row for the offline store, with the (dataset, day) it is filed under and the
    Kafka offset of the message it was read from."""

    dataset: str
    day: date
    offset: int
    values: dict[str, Any]


@dataclass
class FileBatch:
    """The rows of one file: one dataset, one day, one partition of the topic read."""

    dataset: str
    day: date
    partition: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)

    @property
    def first_offset(self) -> int:
        return min(self.offsets)

    @property
    def last_offset(self) -> int:
        return max(self.offsets)


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def object_key(
    namespace: str, kind: Kind, dataset: str, day: date, partition: int, first: int, last: int
) -> str:
    return (
        f"{namespace}/{kind}/dataset={dataset}/date={day.isoformat()}/"
        f"part-{partition}-{first}-{last}.parquet"
    )


def dataset_prefix(namespace: str, kind: Kind, dataset: str) -> str:
    return f"{namespace}/{kind}/dataset={dataset}/"


def parse_part_name(name: str) -> tuple[int, int, int] | None:
    """(partition, first offset, last offset) of a part file name, None for anything else."""
    match = _PART.match(name.rsplit("/", 1)[-1])
    if match is None:
        return None
    partition, first, last = (int(group) for group in match.groups())
    return partition, first, last


def feature_row(payload: FeaturesComputed, offset: int) -> OfflineRow:
    values: dict[str, Any] = {
        "record_id": payload.record_id,
        "entity": payload.entity,
        "event_time": payload.event_time.astimezone(UTC),
        "spec_version": payload.spec_version,
        **payload.features,
        "label": payload.label,
        **_source(payload.source),
    }
    return OfflineRow(payload.dataset, utc_day(payload.event_time), offset, values)


def label_row(payload: LabelRecorded, position: SourcePosition) -> OfflineRow:
    values: dict[str, Any] = {
        "record_id": payload.record_id,
        "entity": payload.entity,
        "label": payload.label,
        "labelled_at": payload.labelled_at.astimezone(UTC),
        **_source(position),
    }
    return OfflineRow(payload.dataset, utc_day(payload.labelled_at), position.offset, values)


def _source(position: SourcePosition) -> dict[str, Any]:
    return {
        "source_topic": position.topic,
        "source_partition": position.partition,
        "source_offset": position.offset,
    }


def file_batches(rows: Iterable[OfflineRow], partition: int) -> list[FileBatch]:
    """Rows of one partition grouped by (dataset, day), in offset order."""
    groups: dict[tuple[str, date], FileBatch] = {}
    for row in sorted(rows, key=lambda r: r.offset):
        batch = groups.setdefault(
            (row.dataset, row.day), FileBatch(row.dataset, row.day, partition)
        )
        batch.rows.append(row.values)
        batch.offsets.append(row.offset)
    return list(groups.values())


def feature_schema(specs: Sequence[DatasetSpec]) -> pa.Schema:
    """Columns of a features file: generic ones, every feature and aggregate of the given
    spec versions (the latest last, so its types win), the label, the source position."""
    typed: dict[str, pa.DataType] = {}
    label_type: pa.DataType = pa.null()
    for spec in specs:
        typed.update({feature.name: _ARROW_TYPES[feature.type] for feature in spec.features})
        for aggregation in spec.aggregations:
            typed[aggregation.name] = (
                pa.int64() if aggregation.function == "count" else pa.float64()
            )
        if spec.label is not None:
            label_type = _ARROW_TYPES[spec.label.type]
    fields = [
        pa.field("record_id", pa.string()),
        pa.field("entity", pa.string()),
        pa.field("event_time", _TIME),
        pa.field("spec_version", pa.int64()),
        *(pa.field(name, kind) for name, kind in typed.items()),
        pa.field("label", label_type),
        *_SOURCE_FIELDS,
    ]
    return pa.schema(fields)


def label_schema(spec: DatasetSpec | None) -> pa.Schema:
    label_type = pa.null()
    if spec is not None and spec.label is not None:
        label_type = _ARROW_TYPES[spec.label.type]
    return pa.schema(
        [
            pa.field("record_id", pa.string()),
            pa.field("entity", pa.string()),
            pa.field("label", label_type),
            pa.field("labelled_at", _TIME),
            *_SOURCE_FIELDS,
        ]
    )


def arrow_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """The rows typed by the schema, plus any column the schema does not know (its type
    inferred); when a value does not fit its declared type (a spec changed a type under the
    same name), every column's type is inferred instead."""
    extra = sorted({name for row in rows for name in row} - set(schema.names))
    for name in extra:
        schema = schema.append(pa.field(name, pa.array([row.get(name) for row in rows]).type))
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        names = schema.names
        return pa.Table.from_pylist([{name: row.get(name) for name in names} for row in rows])


def as_stored(rows: list[dict[str, Any]], schema: pa.Schema) -> pd.DataFrame:
    """Offline rows as a training set reads them back: typed by `schema` (arrow_table),
    through Parquet, as pandas. A rebuilt training set (domain.rebuild, for reproductions) types
    the rows it reads from Kafka with it, so they have the types and values the stored files
    give."""
    buffer = io.BytesIO()
    pq.write_table(arrow_table(rows, schema), buffer)
    return pq.read_table(io.BytesIO(buffer.getvalue())).to_pandas()
