"""Ingestion's use cases: register a spec, ingest a batch, a file or labels.

They talk to the outside through two ports, injected by bootstrap (fakes in unit tests):
a `SpecCatalog` (the registered specs) and a `Publisher` (returns only once every write is
confirmed, or raises). Nothing is acknowledged that Kafka did not confirm: a batch is published
whole or refused; a file is published chunk by chunk, and a failure half-way says how many rows
were acknowledged (those are durable) so the client can resend the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.ingestion.domain.batches import (
    LabelInput,
    Row,
    check_entity_keys,
)
from services.ingestion.domain.errors import (
    EmptyBatch,
    InvalidRow,
    NoLabelDeclared,
    RecordTooLarge,
    Refusal,
)
from services.ingestion.domain.files import column_types, convert_text_row, convert_typed_row
from services.ingestion.handlers import ingest_record, record_label
from shared.datasets.spec import DatasetSpec, VersionedSpec
from shared.events.envelope import utc_now
from shared.kafka.consumer import Emit


@dataclass(frozen=True)
class Registered:
    versioned: VersionedSpec
    created: bool


class SpecCatalog(Protocol):
    """The registered specs. Raises UnknownDataset / UnknownVersion (404) or
    BrokerUnavailable (503) refusals."""

    def latest(self, name: str) -> VersionedSpec: ...

    def get(self, name: str, version: int) -> VersionedSpec: ...

    def all_latest(self) -> list[VersionedSpec]: ...

    def register(self, spec: DatasetSpec) -> Registered: ...


class Publisher(Protocol):
    """Writes events and returns once all are confirmed. Raises RecordTooLarge before writing
    anything, BrokerUnavailable when a write was not confirmed."""

    def publish(self, emits: Sequence[Emit]) -> None: ...


class TabularFile(Protocol):
    """An uploaded file, read in chunks of rows. `typed` is False for text formats (CSV)."""

    typed: bool

    def count_rows(self) -> int:
        """Reads the whole file once; raises UnreadableFile."""
        ...

    def chunks(self) -> Iterator[list[dict[str, Any]]]: ...


@dataclass(frozen=True)
class BatchAccepted:
    ids: list[str]
    spec_version: int


@dataclass(frozen=True)
class FileAccepted:
    accepted: int
    chunks: int
    first_id: str | None
    last_id: str | None
    spec_version: int


@dataclass
class _FileProgress:
    accepted: int = 0
    chunks: int = 0
    first_id: str | None = None
    last_id: str | None = None

    def add(self, emits: Sequence[Emit]) -> None:
        self.accepted += len(emits)
        self.chunks += 1
        self.first_id = self.first_id or emits[0].event.id
        self.last_id = emits[-1].event.id

    def attach_to(self, refusal: Refusal) -> Refusal:
        """The refusal of the rest of a file, saying what was acknowledged before it."""
        if self.accepted:
            refusal.message += (
                f"; the first {self.accepted} rows ({self.chunks} chunks, ids {self.first_id} "
                f"to {self.last_id}) were acknowledged and are durable: resend from row "
                f"{self.accepted} on"
            )
        else:
            refusal.message += "; no row of the file was acknowledged"
        refusal.extra.update(
            accepted=self.accepted,
            chunks=self.chunks,
            first_id=self.first_id,
            last_id=self.last_id,
        )
        return refusal


class Ingestion:
    def __init__(
        self,
        specs: SpecCatalog,
        publisher: Publisher,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._specs = specs
        self._publisher = publisher
        self._clock = clock

    # -- specs ------------------------------------------------------------------------------

    def register_spec(self, spec: DatasetSpec) -> Registered:
        return self._specs.register(spec)

    def datasets(self) -> list[VersionedSpec]:
        return self._specs.all_latest()

    def dataset(self, name: str) -> VersionedSpec:
        return self._specs.latest(name)

    def dataset_version(self, name: str, version: int) -> VersionedSpec:
        return self._specs.get(name, version)

    # -- records ----------------------------------------------------------------------------

    def ingest_records(self, name: str, rows: list[Row]) -> BatchAccepted:
        """Publishes every row of a batch, or none: refusals come before any write."""
        versioned = self._specs.latest(name)
        if not rows:
            raise EmptyBatch("the batch holds no record: nothing to ingest")
        emits = self._record_emits(rows, versioned, where="records")
        self._publish(emits, where="records")
        return BatchAccepted([emit.event.id for emit in emits], versioned.version)

    def ingest_file(self, name: str, table: TabularFile) -> FileAccepted:
        """Reads the file through once (an unreadable file is refused whole), then publishes
        it chunk by chunk, each confirmed before the next is read."""
        versioned = self._specs.latest(name)
        if table.count_rows() == 0:
            raise EmptyBatch("the file holds no rows (a header at most): nothing to ingest")
        types = column_types(versioned.spec)
        convert = convert_typed_row if table.typed else convert_text_row
        progress = _FileProgress()
        try:
            for chunk in table.chunks():
                rows = [convert(raw, types) for raw in chunk]
                emits = self._record_emits(rows, versioned, where="rows", offset=progress.accepted)
                self._publish(emits, where="rows", offset=progress.accepted)
                progress.add(emits)
        except Refusal as refusal:
            raise progress.attach_to(refusal) from None
        return FileAccepted(
            accepted=progress.accepted,
            chunks=progress.chunks,
            first_id=progress.first_id,
            last_id=progress.last_id,
            spec_version=versioned.version,
        )

    def _record_emits(
        self, rows: list[Row], versioned: VersionedSpec, *, where: str, offset: int = 0
    ) -> list[Emit]:
        check_entity_keys(rows, versioned.spec.entity_key, label=where, offset=offset)
        now = self._clock()
        return [ingest_record(row, versioned, now=now) for row in rows]

    # -- labels -----------------------------------------------------------------------------

    def record_labels(self, name: str, labels: list[LabelInput]) -> list[str]:
        versioned = self._specs.latest(name)
        if versioned.spec.label is None:
            raise NoLabelDeclared(f"dataset {name!r} declares no label: it takes no labels")
        if not labels:
            raise EmptyBatch("the batch holds no label: nothing to record")
        now = self._clock()
        emits = [record_label(label, name, now=now) for label in labels]
        self._publish(emits, where="labels")
        return [emit.event.id for emit in emits]

    # -- publishing -------------------------------------------------------------------------

    def _publish(self, emits: Sequence[Emit], *, where: str, offset: int = 0) -> None:
        try:
            self._publisher.publish(emits)
        except RecordTooLarge as error:
            index = offset + error.position
            message = f"{where}[{index}] is too large to publish: {error}"
            raise InvalidRow(
                message + ("; nothing was ingested" if where != "rows" else ""),
                errors=[{"index": index, "column": None, "message": message}],
                error_count=1,
            ) from None
