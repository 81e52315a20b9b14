"""Point-in-time-correct training sets: each label joined with its entity's features as
they were when the labelled record happened, never later.

For each label, the labelled record (found by record id among the feature rows) gives the
entity and the event time; ``pandas.merge_asof`` by entity on event time, direction
backward, then takes the entity's latest feature row at or before that time. A feature row
written after that moment, or a label known only after ``until``, cannot reach the set.
Rows of one entity with the same event time are ordered by their Kafka position (a
nanosecond tie-break on top of the microsecond event times), so a record sees itself and
what was processed before it, never a record that came after it.

Inputs are the offline store's rows as read (duplicates from replays included: rows are
unique by source position). Labels come from data.labels and, for datasets whose label
arrives with the record, from the feature rows' ``label`` column; a record labelled more
than once takes its latest label.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from services.feature_store.domain.vectors import GENERIC_COLUMNS

POSITION = ["source_topic", "source_partition", "source_offset"]
Coverage = dict[tuple[str, int], int]
"""(topic, partition) -> the next offset: every message before it is in the offline store."""
_TIE_LIMIT = 1000  # nanoseconds between two microseconds


@dataclass(frozen=True)
class OffsetSpan:
    """Rows read from offsets first..last (inclusive) of one topic partition."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    rows: int


@dataclass(frozen=True)
class TrainingSet:
    frame: pd.DataFrame
    feature_spans: list[OffsetSpan]
    label_spans: list[OffsetSpan]
    labels_read: int
    labels_unmatched: int
    """Labels of records that have no feature row (yet, or before ``until``)."""

    @property
    def offsets(self) -> list[OffsetSpan]:
        """Every input range, features and labels together, one per topic partition."""
        return merge_spans([*self.feature_spans, *self.label_spans])

    @property
    def spec_version(self) -> int | None:
        if self.frame.empty:
            return None
        return int(self.frame["spec_version"].max())


def point_in_time_join(
    features: pd.DataFrame, labels: pd.DataFrame, until: datetime | None = None
) -> TrainingSet:
    """The training set of the feature rows and label rows of one dataset."""
    features = _feature_rows(features, until)
    candidates = _label_rows(labels, features, until)
    records = features.drop_duplicates("record_id", keep="first")
    left = candidates.merge(
        records[["record_id", "entity", "event_time", "_asof"]], on="record_id", how="inner"
    )
    right = features.drop(columns=["record_id", "label", "event_time"], errors="ignore")
    right = right.rename(columns={c: f"_feature_{c}" for c in ("entity", *POSITION)})
    right["entity"] = right["_feature_entity"]
    joined = pd.merge_asof(
        left.sort_values("_asof", kind="mergesort"),
        right.sort_values("_asof", kind="mergesort"),
        on="_asof",
        by="entity",
        direction="backward",
        allow_exact_matches=True,
    )
    frame = _training_frame(joined, features)
    label_positions = joined.rename(columns={f"_label_{c}": c for c in POSITION})
    return TrainingSet(
        frame=frame,
        feature_spans=spans(frame, POSITION),
        label_spans=spans(label_positions, POSITION),
        labels_read=len(candidates),
        labels_unmatched=len(candidates) - len(left),
    )


def _feature_rows(features: pd.DataFrame, until: datetime | None) -> pd.DataFrame:
    rows = features.drop_duplicates(POSITION, keep="first").copy()
    rows["event_time"] = pd.to_datetime(rows["event_time"], utc=True)
    if until is not None:
        rows = rows[rows["event_time"] <= pd.Timestamp(until)]
    rows = rows.sort_values(["entity", "event_time", *POSITION], kind="mergesort")
    ties = rows.groupby(["entity", "event_time"], sort=False).cumcount()
    if len(ties) and int(ties.max()) >= _TIE_LIMIT:
        raise ValueError(f"over {_TIE_LIMIT} rows of one entity share one event time")
    rows["_asof"] = rows["event_time"] + pd.to_timedelta(ties, unit="ns")
    return rows.reset_index(drop=True)


def _label_rows(
    labels: pd.DataFrame, features: pd.DataFrame, until: datetime | None
) -> pd.DataFrame:
    """One label per record: its latest, known by ``until``."""
    columns = ["record_id", "label", "labelled_at", *POSITION]
    feedback = labels.drop_duplicates(POSITION, keep="first")[columns] if len(labels) else None
    arrived = features[features["label"].notna()] if "label" in features else features.iloc[:0]
    with_record = arrived.assign(labelled_at=arrived["event_time"])[columns]
    parts = [part for part in (feedback, with_record) if part is not None and len(part)]
    if not parts:
        return pd.DataFrame(columns=[c if c not in POSITION else f"_label_{c}" for c in columns])
    candidates = pd.concat(parts, ignore_index=True)
    candidates["labelled_at"] = pd.to_datetime(candidates["labelled_at"], utc=True)
    if until is not None:
        candidates = candidates[candidates["labelled_at"] <= pd.Timestamp(until)]
    candidates = candidates.sort_values(["labelled_at", *POSITION], kind="mergesort")
    latest = candidates.drop_duplicates("record_id", keep="last")
    return latest.rename(columns={c: f"_label_{c}" for c in POSITION}).reset_index(drop=True)


def _training_frame(joined: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """Generic columns first, then the features in their stored order, then lineage."""
    feature_names = [
        c for c in features.columns if c not in GENERIC_COLUMNS and not c.startswith("_")
        and c not in POSITION
    ]  # fmt: skip
    frame = joined.rename(columns={f"_feature_{c}": c for c in POSITION})
    lineage = {f"_label_{c}": f"source_label_{c.removeprefix('source_')}" for c in POSITION}
    frame = frame.rename(columns=lineage)
    ordered = [
        "record_id", "entity", "event_time", "spec_version", "labelled_at", *feature_names,
        "label", *POSITION, *lineage.values(),
    ]  # fmt: skip
    frame = frame.reindex(columns=ordered)
    return frame.sort_values(["event_time", "record_id"], kind="mergesort").reset_index(drop=True)


def spans(frame: pd.DataFrame, position: list[str]) -> list[OffsetSpan]:
    """First and last offset, and row count, of each topic partition the rows came from."""
    if frame.empty:
        return []
    topic, partition, offset = position
    grouped = frame.groupby([topic, partition])[offset].agg(["min", "max", "count"])
    return [
        OffsetSpan(str(t), int(p), int(row["min"]), int(row["max"]), int(row["count"]))
        for (t, p), row in grouped.sort_index().iterrows()
    ]


def merge_spans(items: list[OffsetSpan]) -> list[OffsetSpan]:
    """One span per topic partition covering all given spans (rows summed)."""
    merged: dict[tuple[str, int], OffsetSpan] = {}
    for span in items:
        key = (span.topic, span.partition)
        seen = merged.get(key)
        merged[key] = span if seen is None else OffsetSpan(
            span.topic, span.partition, min(seen.first_offset, span.first_offset),
            max(seen.last_offset, span.last_offset), seen.rows + span.rows,
        )  # fmt: skip
    return [merged[key] for key in sorted(merged)]


def batch_coverage(
    topic: str, partition: int, last_offset: int, rows: list[dict[str, Any]]
) -> Coverage:
    """What one written batch covers: its own topic partition up to `last_offset`, and the
    messages its rows came from (a feature row's data.validated message), each up to the
    latest one written. A partition's records are processed and published in order, so the
    latest source offset written says every earlier one was written too."""
    reached: Coverage = {(topic, partition): last_offset + 1}
    for row in rows:
        source = (str(row["source_topic"]), int(row["source_partition"]))
        reached[source] = max(reached.get(source, 0), int(row["source_offset"]) + 1)
    return reached


def merge_coverage(*parts: Coverage) -> Coverage:
    """The furthest position of each topic partition any part reached."""
    merged: Coverage = {}
    for part in parts:
        for key, offset in part.items():
            merged[key] = max(merged.get(key, 0), offset)
    return merged


def with_stream_progress(written: Coverage, processed: Coverage, published: Coverage) -> Coverage:
    """The offline store's coverage, counting every data.validated message the feature stream
    processed as written once the features writer has written all it published.

    `processed`: the stream's committed offsets on data.validated, read first (a batch's
    vectors are on data.features before its offsets are committed); `published`: data.features'
    end offsets, read next; `written`: the files' coverage, read last. Rows alone leave a
    partition short of its end when its last records gave no vector: a copy validation
    published again after a crash (skipped, its vector was published the first time) or a
    dead letter."""
    if not published or any(written.get(position, 0) < end for position, end in published.items()):
        return written
    return merge_coverage(written, processed)


def coverage_json(coverage: Coverage) -> list[dict[str, Any]]:
    return [
        {"topic": topic, "partition": partition, "offset": offset}
        for (topic, partition), offset in sorted(coverage.items())
    ]


def coverage_from_json(document: Any) -> Coverage:
    """A coverage as stored (coverage_json); anything unreadable counts as nothing."""
    if not isinstance(document, list):
        return {}
    read: Coverage = {}
    for item in document:
        try:
            read[(str(item["topic"]), int(item["partition"]))] = int(item["offset"])
        except (KeyError, TypeError, ValueError):
            continue
    return read
