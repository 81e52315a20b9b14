"""Training sets from the offline store: read a dataset's feature and label files, join them
point in time (domain.training_sets), write the set as Parquet and say what it was made of.

The set's id is a digest of what it was built from (dataset, until, the exact offset ranges
and row counts), so asking again over the same data gives the same id and file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import pyarrow as pa

from services.feature_store import metrics
from services.feature_store.adapters.objects import ObjectStore
from services.feature_store.adapters.offline_sink import coverage_prefix
from services.feature_store.domain.offline import Kind, dataset_prefix, parse_part_name
from services.feature_store.domain.training_sets import (
    Coverage,
    OffsetSpan,
    TrainingSet,
    coverage_from_json,
    coverage_json,
    merge_coverage,
    point_in_time_join,
    with_stream_progress,
)

_DAY = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/")


class NoTrainingData(LookupError):
    """Nothing labelled to train on (yet, or before `until`)."""


@dataclass(frozen=True)
class WrittenTrainingSet:
    id: str
    dataset: str
    until: datetime | None
    bucket: str
    key: str
    uri: str
    training: TrainingSet
    files_read: int
    coverage: Coverage
    """How far the offline store was written when the set was read (a lower bound)."""

    @property
    def rows(self) -> int:
        return len(self.training.frame)

    def as_json(self) -> dict[str, Any]:
        training = self.training
        return {
            "id": self.id,
            "dataset": self.dataset,
            "until": self.until.isoformat() if self.until else None,
            "uri": self.uri,
            "location": {"bucket": self.bucket, "key": self.key},
            "rows": self.rows,
            "columns": [str(c) for c in training.frame.columns],
            "spec_version": training.spec_version,
            "lineage": {
                "offsets": [_range(span) for span in training.offsets],
                "features": [_counted(span) for span in training.feature_spans],
                "labels": [_counted(span) for span in training.label_spans],
            },
            "counts": {
                "rows": self.rows,
                "labels_read": training.labels_read,
                "labels_unmatched": training.labels_unmatched,
                "files_read": self.files_read,
            },
            "coverage": coverage_json(self.coverage),
        }


def _range(span: OffsetSpan) -> dict[str, Any]:
    return {
        "topic": span.topic,
        "partition": span.partition,
        "first_offset": span.first_offset,
        "last_offset": span.last_offset,
    }


def _counted(span: OffsetSpan) -> dict[str, Any]:
    return {**_range(span), "rows": span.rows}


class TrainingSets:
    def __init__(
        self,
        store: ObjectStore,
        namespace: str,
        progress: Callable[[], tuple[Coverage, Coverage]] | None = None,
    ) -> None:
        """`progress`: the stream's processed offsets and data.features' ends
        (StreamProgress.read), so that records which gave no vector count as written."""
        self._store = store
        self._namespace = namespace
        self._progress = progress

    def coverage(self) -> Coverage:
        """How far the offline store is written, per topic partition (next offsets): of its
        own topics (data.features, data.labels) and of data.validated, which feature rows
        come from."""
        processed, published = self._progress() if self._progress else ({}, {})
        keys = [
            key
            for key in self._store.keys(coverage_prefix(self._namespace))
            if key.rsplit("/", 1)[-1].startswith("coverage-")
        ]
        written = merge_coverage(*(coverage_from_json(self._store.get_json(key)) for key in keys))
        return with_stream_progress(written, processed, published)

    def create(self, dataset: str, until: datetime | None) -> WrittenTrainingSet:
        coverage = self.coverage()  # read first: the files read next hold at least this much
        features, feature_files = self._read(dataset, "features", until)
        labels, label_files = self._read(dataset, "labels", until)
        if features.empty:
            raise NoTrainingData(f"the offline store has no features of {dataset!r} yet")
        training = point_in_time_join(features, labels, until)
        if training.frame.empty:
            raise NoTrainingData(
                f"no labelled record of {dataset!r}"
                + (f" up to {until.isoformat()}" if until else "")
                + f" ({training.labels_read} labels read, "
                f"{training.labels_unmatched} of records without features)"
            )
        set_id = _set_id(dataset, until, training)
        key = f"{self._namespace}/training-sets/{dataset}/{set_id}.parquet"
        self._store.put_parquet(key, pa.Table.from_pandas(training.frame, preserve_index=False))
        metrics.TRAINING_SETS.inc()
        return WrittenTrainingSet(
            id=set_id,
            dataset=dataset,
            until=until,
            bucket=self._store.bucket,
            key=key,
            uri=self._store.uri(key),
            training=training,
            files_read=feature_files + label_files,
            coverage=coverage,
        )

    def _read(self, dataset: str, kind: Kind, until: datetime | None) -> tuple[pd.DataFrame, int]:
        """Every file of the dataset (up to `until`'s day), as one frame."""
        last_day = until.astimezone(UTC).date() if until else None
        keys = [
            key
            for key in self._store.keys(dataset_prefix(self._namespace, kind, dataset))
            if parse_part_name(key) is not None and _on_or_before(key, last_day)
        ]
        frames = [self._store.read_parquet(key).to_pandas() for key in keys]
        frames = [frame for frame in frames if not frame.empty]
        if not frames:
            return pd.DataFrame(), len(keys)
        return pd.concat(frames, ignore_index=True), len(keys)


def _on_or_before(key: str, last_day: date | None) -> bool:
    if last_day is None:
        return True
    match = _DAY.search(key)
    return match is None or date.fromisoformat(match.group(1)) <= last_day


def _set_id(dataset: str, until: datetime | None, training: TrainingSet) -> str:
    basis = {
        "dataset": dataset,
        "until": until.astimezone(UTC).isoformat() if until else None,
        "rows": len(training.frame),
        "features": [_counted(span) for span in training.feature_spans],
        "labels": [_counted(span) for span in training.label_spans],
    }
    digest = hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()
    return digest[:20]
