"""Training sets rebuilt from the Kafka ranges of a lineage (domain.rebuild), in the
namespace the lineage was trained in: its topics and its data.specs.

One rebuild runs at a time (`max_running`); another asked meanwhile is refused (Busy) rather
than queued behind a read of tens of seconds.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq

from services.feature_store.adapters.kafka_ranges import RangeReader
from services.feature_store.domain.rebuild import (
    FEATURES,
    LABELS,
    VALIDATED,
    RebuildSummary,
    RebuiltRows,
    join_rows,
    namespace_of,
    ranges_of,
)
from shared.datasets.registry import SpecRegistry, UnknownDataset
from shared.datasets.spec import DatasetSpec
from shared.events.models import OffsetRange

SpecsFor = Callable[[str], SpecRegistry]
"""The spec registry of a namespace (its `<namespace>.data.specs`)."""


class Busy(RuntimeError):
    """As many rebuilds as allowed are running."""


class UnknownSpec(LookupError):
    """The dataset, or a spec version the feature events name, is not in the namespace."""


@dataclass(frozen=True)
class RebuiltSet:
    parquet: bytes
    summary: RebuildSummary


class RebuiltSets:
    def __init__(
        self, reader: RangeReader, specs_for: SpecsFor, max_bytes: int, max_running: int = 1
    ) -> None:
        self._reader = reader
        self._specs_for = specs_for
        self._max_bytes = max_bytes
        self._slots = threading.BoundedSemaphore(max_running)

    def rebuild(
        self, dataset: str, offsets: list[OffsetRange], cut_off: datetime | None
    ) -> RebuiltSet:
        namespace = namespace_of(offsets)
        if not self._slots.acquire(blocking=False):
            raise Busy("a training set is being rebuilt already: ask again when it is done")
        try:
            return self._rebuild(namespace, dataset, offsets, cut_off)
        finally:
            self._slots.release()

    def _rebuild(
        self, namespace: str, dataset: str, offsets: list[OffsetRange], cut_off: datetime | None
    ) -> RebuiltSet:
        specs = self._specs_for(namespace)
        latest = self._latest(specs, dataset, namespace)
        self._reader.check(offsets)
        rows = RebuiltRows(dataset, self._max_bytes)
        for message in self._reader.read(ranges_of(offsets, f"{namespace}.{LABELS}")):
            rows.add_label(message)
        for message in self._reader.read(ranges_of(offsets, f"{namespace}.{VALIDATED}")):
            rows.add_record(message)
        for message in self._reader.read(self._reader.whole(f"{namespace}.{FEATURES}")):
            rows.add_features(message)
        known = [self._version(specs, dataset, v) for v in sorted(rows.versions)]
        frame = join_rows(rows, known, latest, cut_off)
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
        return RebuiltSet(buffer.getvalue(), rows.summary(rows=len(frame)))

    @staticmethod
    def _latest(specs: SpecRegistry, dataset: str, namespace: str) -> DatasetSpec:
        try:
            return specs.latest(dataset).spec
        except UnknownDataset as unknown:
            raise UnknownSpec(f"namespace {namespace!r}: {unknown}") from None

    @staticmethod
    def _version(specs: SpecRegistry, dataset: str, version: int) -> DatasetSpec:
        try:
            return specs.get(dataset, version).spec
        except LookupError as unknown:
            raise UnknownSpec(str(unknown)) from None
