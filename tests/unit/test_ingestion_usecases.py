"""Ingestion's use cases against fakes of its ports: what is published, and when nothing is."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from services.ingestion.adapters.files import CsvFile
from services.ingestion.domain.batches import LabelInput
from services.ingestion.domain.errors import (
    BrokerUnavailable,
    EmptyBatch,
    InvalidRow,
    NoLabelDeclared,
    RecordTooLarge,
    UnknownDataset,
    UnknownVersion,
    UnreadableFile,
)
from services.ingestion.domain.ingestion import Ingestion, Registered
from services.ingestion.handlers import PUBLISHES, SUBSCRIPTIONS, routes
from shared.datasets.spec import DatasetSpec, VersionedSpec, shipped_specs
from shared.events.records import LabelRecorded, RecordIngested
from shared.kafka.consumer import Emit

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class FakeSpecs:
    """The spec catalog port, in memory; `down` makes every call fail like Kafka being down."""

    def __init__(self, specs: Sequence[DatasetSpec] = ()) -> None:
        self.versions: dict[str, list[VersionedSpec]] = {}
        self.down = False
        for spec in specs:
            self.register(spec)

    def _check(self) -> None:
        if self.down:
            raise BrokerUnavailable("the spec registry cannot be read from Kafka: down")

    def latest(self, name: str) -> VersionedSpec:
        self._check()
        if name not in self.versions:
            raise UnknownDataset(name, sorted(self.versions))
        return self.versions[name][-1]

    def get(self, name: str, version: int) -> VersionedSpec:
        versions = self.latest(name) and self.versions[name]
        if not 1 <= version <= len(versions):
            raise UnknownVersion(f"dataset {name!r} has no version {version}")
        return versions[version - 1]

    def all_latest(self) -> list[VersionedSpec]:
        self._check()
        return [self.versions[name][-1] for name in sorted(self.versions)]

    def register(self, spec: DatasetSpec) -> Registered:
        self._check()
        versions = self.versions.setdefault(spec.name, [])
        for existing in versions:
            if existing.fingerprint == spec.fingerprint():
                return Registered(existing, created=False)
        versioned = VersionedSpec(
            version=len(versions) + 1, fingerprint=spec.fingerprint(), spec=spec
        )
        versions.append(versioned)
        return Registered(versioned, created=True)


class FakePublisher:
    """The publisher port: keeps what was confirmed; fails from the `fail_from`-th call on."""

    def __init__(self, fail_from: int | None = None, max_bytes: int = 1_000_000) -> None:
        self.batches: list[list[Emit]] = []
        self.calls = 0
        self.fail_from = fail_from
        self.max_bytes = max_bytes
        self.retry_after_s: float | None = None

    def publish(self, emits: Sequence[Emit]) -> None:
        self.calls += 1
        for position, emit in enumerate(emits):
            assert emit.topic in PUBLISHES
            size = len(emit.event.to_json_bytes())
            if size > self.max_bytes:
                raise RecordTooLarge(position, size, self.max_bytes)
        if self.fail_from is not None and self.calls >= self.fail_from:
            hint = {} if self.retry_after_s is None else {"retry_after_s": self.retry_after_s}
            raise BrokerUnavailable("Kafka did not confirm the writes (down)", **hint)
        self.batches.append(list(emits))

    @property
    def emitted(self) -> list[Emit]:
        return [emit for batch in self.batches for emit in batch]


def shipped(name: str) -> DatasetSpec:
    return next(spec for spec in shipped_specs() if spec.name == name)


def no_label_spec() -> DatasetSpec:
    return DatasetSpec.model_validate(
        {
            "name": "plain",
            "entity_key": "k",
            "event_time": "t",
            "features": [{"name": "x", "type": "numeric"}],
        }
    )


def make(
    publisher: FakePublisher | None = None,
) -> tuple[Ingestion, FakeSpecs, FakePublisher]:
    specs = FakeSpecs([shipped("loans"), shipped("breast_cancer"), no_label_spec()])
    publisher = publisher or FakePublisher()
    return Ingestion(specs, publisher, clock=lambda: NOW), specs, publisher


def test_ingestion_consumes_nothing_and_publishes_specs_records_and_labels() -> None:
    assert SUBSCRIPTIONS == () and routes() == []
    assert PUBLISHES == ("data.specs", "data.raw", "data.labels")


def test_each_row_becomes_a_record_ingested_event_keyed_by_its_entity() -> None:
    ingestion, _, publisher = make()
    rows: list[dict[str, Any]] = [
        {"applicant_id": "a-1", "salary": 1, "free": "as sent"},
        {"applicant_id": 7, "salary": None},
        {"salary": 3.5},
    ]
    accepted = ingestion.ingest_records("loans", rows)
    assert accepted.spec_version == 1
    [batch] = publisher.batches
    assert [emit.event.id for emit in batch] == accepted.ids
    assert [emit.key for emit in batch] == ["a-1", "7", None]
    for emit, row in zip(batch, rows, strict=True):
        assert emit.topic == "data.raw"
        record = emit.event.data
        assert isinstance(record, RecordIngested)
        assert record.values == row, "values are the row as received"
        assert (record.dataset, record.spec_version, record.ingested_at) == ("loans", 1, NOW)
        assert emit.event.subject == emit.key and emit.event.source == "ingestion"


def test_records_carry_the_latest_spec_version() -> None:
    ingestion, specs, _ = make()
    changed = DatasetSpec.model_validate(
        {**shipped("loans").model_dump(), "description": "second version"}
    )
    specs.register(changed)
    assert ingestion.ingest_records("loans", [{"applicant_id": "a"}]).spec_version == 2


def test_an_unknown_dataset_is_refused_naming_the_known_ones() -> None:
    ingestion, _, publisher = make()
    with pytest.raises(UnknownDataset) as refused:
        ingestion.ingest_records("nope", [{"a": 1}])
    assert refused.value.status == 404
    assert refused.value.extra["known"] == ["breast_cancer", "loans", "plain"]
    assert "known datasets: breast_cancer, loans, plain" in refused.value.message
    assert publisher.calls == 0


def test_a_broker_failure_acknowledges_nothing() -> None:
    ingestion, specs, publisher = make(FakePublisher(fail_from=1))
    with pytest.raises(BrokerUnavailable) as refused:
        ingestion.ingest_records("loans", [{"applicant_id": "a"}])
    assert refused.value.status == 503
    assert publisher.emitted == []
    specs.down = True
    with pytest.raises(BrokerUnavailable):
        ingestion.ingest_records("loans", [{"applicant_id": "a"}])


def test_a_record_too_large_to_publish_is_refused_naming_its_row() -> None:
    ingestion, _, publisher = make(FakePublisher(max_bytes=2000))
    rows = [{"applicant_id": "a"}, {"applicant_id": "b", "note": "x" * 5000}]
    with pytest.raises(InvalidRow, match=r"records\[1\] is too large to publish") as refused:
        ingestion.ingest_records("loans", rows)
    assert refused.value.extra["errors"][0]["index"] == 1
    assert publisher.emitted == []


def test_an_overlong_entity_is_refused_before_anything_is_published() -> None:
    ingestion, _, publisher = make()
    with pytest.raises(InvalidRow, match=r"records\[0\]\.applicant_id"):
        ingestion.ingest_records("loans", [{"applicant_id": "x" * 2000}])
    assert publisher.calls == 0


def csv_table(rows: int, chunk_rows: int) -> CsvFile:
    lines = ["applicant_id,age,elevel,salary"] + [
        f"a-{i},{20 + i % 50},{i % 5},{1000.5 + i}" for i in range(rows)
    ]
    return CsvFile(io.BytesIO("\n".join(lines).encode()), chunk_rows)


def test_a_file_is_published_chunk_by_chunk_with_cells_typed_by_the_spec() -> None:
    ingestion, _, publisher = make()
    accepted = ingestion.ingest_file("loans", csv_table(25, chunk_rows=10))
    assert (accepted.accepted, accepted.chunks) == (25, 3)
    assert [len(batch) for batch in publisher.batches] == [10, 10, 5]
    emitted = publisher.emitted
    assert accepted.first_id == emitted[0].event.id and accepted.last_id == emitted[-1].event.id
    assert len({emit.event.id for emit in emitted}) == 25
    first = emitted[0].event.data.values
    assert first == {"applicant_id": "a-0", "age": 20, "elevel": "0", "salary": 1000.5}
    assert emitted[0].key == "a-0"


def test_a_broker_failure_half_way_through_a_file_says_what_was_acknowledged() -> None:
    ingestion, _, publisher = make(FakePublisher(fail_from=3))
    with pytest.raises(BrokerUnavailable) as refused:
        ingestion.ingest_file("loans", csv_table(25, chunk_rows=10))
    body = refused.value.body()
    assert body["accepted"] == 20 and body["chunks"] == 2
    assert body["first_id"] == publisher.emitted[0].event.id
    assert body["last_id"] == publisher.emitted[19].event.id
    assert "the first 20 rows" in body["detail"] and "resend from row 20" in body["detail"]


def test_an_unreadable_file_is_refused_before_any_chunk_is_published() -> None:
    ingestion, _, publisher = make()
    text = "applicant_id,age\n" + "a,1\n" * 30 + "a,1,2\n"
    with pytest.raises(UnreadableFile, match="Expected 2 fields"):
        ingestion.ingest_file("loans", CsvFile(io.BytesIO(text.encode()), 10))
    assert publisher.calls == 0
    with pytest.raises(EmptyBatch, match="no rows"):
        ingestion.ingest_file("loans", CsvFile(io.BytesIO(b"applicant_id,age\n"), 10))


class BreakingTable:
    """A file that reads through once, then fails on its second chunk."""

    typed = True

    def count_rows(self) -> int:
        return 4

    def chunks(self) -> Iterator[list[dict[str, Any]]]:
        yield [{"applicant_id": "a", "age": 1.0}, {"applicant_id": "b", "age": float("nan")}]
        raise UnreadableFile("the Parquet file became unreadable: boom")


def test_a_file_failing_after_a_chunk_reports_the_acknowledged_rows() -> None:
    ingestion, _, publisher = make()
    with pytest.raises(UnreadableFile) as refused:
        ingestion.ingest_file("loans", BreakingTable())
    assert refused.value.extra["accepted"] == 2
    values = [emit.event.data.values for emit in publisher.emitted]
    assert values == [{"applicant_id": "a", "age": 1}, {"applicant_id": "b", "age": None}]


def test_labels_become_label_recorded_events_keyed_by_record_id() -> None:
    ingestion, _, publisher = make()
    when = datetime(2024, 1, 1, tzinfo=UTC)
    ids = ingestion.record_labels(
        "loans",
        [LabelInput("app-1", 1), LabelInput("app-2", 0, labelled_at=when, entity="a-2")],
    )
    [batch] = publisher.batches
    assert [emit.event.id for emit in batch] == ids
    assert [(emit.topic, emit.key) for emit in batch] == [
        ("data.labels", "app-1"),
        ("data.labels", "app-2"),
    ]
    first, second = (emit.event.data for emit in batch)
    assert isinstance(first, LabelRecorded)
    assert (first.dataset, first.record_id, first.label, first.labelled_at) == (
        "loans",
        "app-1",
        1,
        NOW,
    )
    assert (second.labelled_at, second.entity) == (when, "a-2")


def test_labels_for_a_dataset_without_a_label_are_refused() -> None:
    ingestion, _, publisher = make()
    with pytest.raises(NoLabelDeclared, match="declares no label"):
        ingestion.record_labels("plain", [LabelInput("r", 1)])
    with pytest.raises(UnknownDataset):
        ingestion.record_labels("nope", [LabelInput("r", 1)])
    assert publisher.calls == 0


def test_spec_registration_versions_by_content() -> None:
    ingestion, _, _ = make()
    loans = shipped("loans")
    assert ingestion.register_spec(loans) == Registered(ingestion.dataset("loans"), created=False)
    changed = DatasetSpec.model_validate({**loans.model_dump(), "description": "v2"})
    outcome = ingestion.register_spec(changed)
    assert outcome.created and outcome.versioned.version == 2
    assert ingestion.dataset_version("loans", 1).spec == loans
    assert [v.spec.name for v in ingestion.datasets()] == ["breast_cancer", "loans", "plain"]
