"""The feature store's rebuild of a lineage's training set from Kafka messages: the pure
part (domain.rebuild), fed with messages as the range reader hands them over, and the HTTP
route over a fake rebuilder."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.feature_store.adapters.kafka_ranges import KafkaUnavailable, RangesGone
from services.feature_store.adapters.rebuilt_sets import Busy, RebuiltSet, UnknownSpec
from services.feature_store.domain.offline import as_stored, feature_schema
from services.feature_store.domain.rebuild import (
    RebuiltRows,
    UnrebuildableLineage,
    join_rows,
    namespace_of,
)
from services.feature_store.http import HttpDeps, install
from shared.datasets.spec import shipped_specs
from shared.events import Event
from shared.events.models import OffsetRange
from shared.events.records import (
    FeaturesComputed,
    LabelRecorded,
    RecordValidated,
    SourcePosition,
)

LOANS = next(spec for spec in shipped_specs() if spec.name == "loans")
T0 = datetime(2026, 11, 21, 10, tzinfo=UTC)
VALUES = {"salary": 50_000.0, "commission": 0.0, "age": 35, "elevel": "2", "car": "3",
          "zipcode": "1", "hvalue": 100_000.0, "hyears": 10, "loan": 20_000.0}  # fmt: skip


@dataclass
class Message:
    _topic: str
    _partition: int
    _offset: int
    _value: bytes

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


def message(topic: str, offset: int, payload: Any) -> Message:
    return Message(topic, 0, offset, Event.create(payload, source="test").to_json_bytes())


def record(index: int) -> RecordValidated:
    return RecordValidated(
        dataset="loans",
        spec_version=1,
        record_id=f"app-{index}",
        entity=f"applicant-{index % 3}",
        event_time=T0 + timedelta(minutes=index),
        values=VALUES,
        source=SourcePosition(topic="ns.data.raw", partition=0, offset=index),
    )


def features(index: int, record_id: str | None = None, offset: int | None = None) -> Any:
    return FeaturesComputed(
        dataset="loans",
        spec_version=1,
        record_id=record_id or f"app-{index}",
        entity=f"applicant-{index % 3}",
        event_time=T0 + timedelta(minutes=index),
        features={**VALUES, "applications_1h": 1, "loan_sum_1h": 1.0, "loan_mean_1d": 1.0},
        source=SourcePosition(
            topic="ns.data.validated", partition=0, offset=index if offset is None else offset
        ),
    )


def label(index: int) -> LabelRecorded:
    return LabelRecorded(
        dataset="loans",
        record_id=f"app-{index}",
        label=index % 2,
        labelled_at=T0 + timedelta(days=1),
    )


def rows_of(count: int) -> RebuiltRows:
    rows = RebuiltRows("loans", 1_000_000)
    for i in range(count):
        rows.add_label(message("ns.data.labels", i, label(i)))
    for i in range(count):
        rows.add_record(message("ns.data.validated", i, record(i)))
    for i in range(count):
        rows.add_features(message("ns.data.features", i, features(i)))
    return rows


def test_the_namespace_comes_from_the_ranges() -> None:
    ranges = [
        OffsetRange(topic="ns.data.validated", partition=0, first_offset=3, last_offset=9),
        OffsetRange(topic="ns.data.labels", partition=1, first_offset=0, last_offset=4),
    ]
    assert namespace_of(ranges) == "ns"


def test_ranges_of_other_topics_or_namespaces_are_refused() -> None:
    other = OffsetRange(topic="ns.data.raw", partition=0, first_offset=0, last_offset=1)
    with pytest.raises(UnrebuildableLineage, match=r"only data\.validated and data\.labels"):
        namespace_of([other])
    mixed = [
        OffsetRange(topic="a.data.labels", partition=0, first_offset=0, last_offset=1),
        OffsetRange(topic="b.data.labels", partition=0, first_offset=0, last_offset=1),
    ]
    with pytest.raises(UnrebuildableLineage, match="span namespaces"):
        namespace_of(mixed)


def test_rows_rebuilt_from_events_take_the_offline_stores_types() -> None:
    row = {
        "record_id": "app-1",
        "entity": "applicant-7",
        "event_time": T0,
        "spec_version": 1,
        "age": 35.0,  # JSON gives a float; the spec says integer
        "elevel": "2",
        "label": None,
        "source_topic": "ns.data.validated",
        "source_partition": 0,
        "source_offset": 7,
    }
    frame = as_stored([row], feature_schema([LOANS]))
    assert str(frame["age"].dtype) == "int64" and frame["age"].iloc[0] == 35
    assert str(frame["event_time"].dtype) == "datetime64[us, UTC]"
    assert str(frame["source_partition"].dtype) == "int32"
    assert frame["salary"].isna().all()


def test_the_ranges_records_with_their_features_and_labels_make_the_set() -> None:
    rows = rows_of(12)
    frame = join_rows(rows, [LOANS], LOANS, None)
    assert len(frame) == 12
    assert sorted(frame["record_id"]) == sorted(f"app-{i}" for i in range(12))
    assert rows.summary(len(frame)).as_json() == {
        "feature_events": 12,
        "label_events": 12,
        "validated_records": 12,
        "records_with_features": 12,
        "mismatched": 0,
        "undecodable": 0,
        "rows": 12,
    }


def test_the_cut_off_leaves_out_labels_known_later() -> None:
    frame = join_rows(rows_of(12), [LOANS], LOANS, T0 + timedelta(hours=1))
    assert frame.empty  # every label is known a day after its record


def test_feature_events_of_other_records_are_left_out_or_counted_as_mismatched() -> None:
    rows = rows_of(4)
    rows.add_features(message("ns.data.features", 10, features(99)))  # not a range's record
    rows.add_features(message("ns.data.features", 11, features(2, record_id="app-7")))
    rows.add_features(Message("ns.data.features", 0, 12, b"{not an event"))
    summary = rows.summary()
    assert (summary.feature_events, summary.mismatched, summary.undecodable) == (4, 1, 1)


def test_other_datasets_in_the_ranges_are_skipped() -> None:
    rows = RebuiltRows("friedman", 1_000_000)
    rows.add_record(message("ns.data.validated", 0, record(0)))
    assert rows.summary().validated_records == 0


def test_no_feature_in_the_ranges_is_refused() -> None:
    rows = RebuiltRows("loans", 1_000_000)
    rows.add_label(message("ns.data.labels", 0, label(0)))
    with pytest.raises(UnrebuildableLineage, match="no feature of 'loans'"):
        join_rows(rows, [LOANS], LOANS, None)


# -- POST /training-sets/rebuild over a fake rebuilder ---------------------------------------

RANGES = [{"topic": "ns.data.labels", "partition": 0, "first_offset": 0, "last_offset": 9}]


class FakeRebuilds:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.asked: list[tuple[str, list[OffsetRange], datetime | None]] = []

    def rebuild(
        self, dataset: str, offsets: list[OffsetRange], cut_off: datetime | None
    ) -> RebuiltSet:
        self.asked.append((dataset, offsets, cut_off))
        if self.error is not None:
            raise self.error
        frame = join_rows(rows_of(6), [LOANS], LOANS, cut_off)
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return RebuiltSet(buffer.getvalue(), rows_of(6).summary(len(frame)))


def api(rebuilds: FakeRebuilds) -> TestClient:
    app = FastAPI()
    deps = HttpDeps(None, None, lambda name: None, 10, rebuilt_sets=rebuilds)  # type: ignore[arg-type]
    install(app, deps)
    return TestClient(app)


def test_the_rebuilt_set_comes_back_as_parquet_with_its_summary() -> None:
    rebuilds = FakeRebuilds()
    answer = api(rebuilds).post(
        "/training-sets/rebuild",
        json={"dataset": "loans", "offsets": RANGES, "cut_off": "2026-11-23T00:00:00"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/vnd.apache.parquet"
    assert len(pd.read_parquet(io.BytesIO(answer.content))) == 6
    assert json.loads(answer.headers["x-rebuild-summary"])["rows"] == 6
    [(dataset, offsets, cut_off)] = rebuilds.asked
    assert (dataset, offsets[0].last_offset) == ("loans", 9)
    assert cut_off == datetime(2026, 11, 23, tzinfo=UTC)  # no offset given: UTC


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UnknownSpec("namespace 'ns': unknown dataset 'loans'"), 404),
        (RangesGone("ns.data.labels [0] holds offsets 5..9; the lineage needs 0..9"), 410),
        (UnrebuildableLineage("the lineage's ranges span namespaces ['a', 'b']"), 422),
        (Busy("a training set is being rebuilt already"), 429),
        (KafkaUnavailable("Kafka: all brokers down"), 503),
    ],
)
def test_each_refusal_has_its_status_and_reason(error: Exception, status: int) -> None:
    answer = api(FakeRebuilds(error)).post(
        "/training-sets/rebuild", json={"dataset": "loans", "offsets": RANGES}
    )
    assert answer.status_code == status
    assert str(error) in answer.json()["detail"]


def test_a_rebuild_names_ranges() -> None:
    answer = api(FakeRebuilds()).post(
        "/training-sets/rebuild", json={"dataset": "loans", "offsets": []}
    )
    assert answer.status_code == 422
