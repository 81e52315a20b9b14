"""Point-in-time joins: a label sees its record's features as they were, never later ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from services.feature_store.adapters.training_sets import TrainingSets
from services.feature_store.domain.training_sets import (
    OffsetSpan,
    batch_coverage,
    coverage_from_json,
    coverage_json,
    merge_coverage,
    point_in_time_join,
    with_stream_progress,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
VALIDATED = "ns.data.validated"
LABELS = "ns.data.labels"


def feature(
    record_id: str, entity: str, minutes: float, loan: float, offset: int, **extra: Any
) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "entity": entity,
        "event_time": T0 + timedelta(minutes=minutes),
        "spec_version": 1,
        "loan": loan,
        "loan_sum_1h": loan * 2,
        "label": None,
        "source_topic": VALIDATED,
        "source_partition": 0,
        "source_offset": offset,
        **extra,
    }


def label(record_id: str, value: int, minutes: float, offset: int) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "entity": None,
        "label": value,
        "labelled_at": T0 + timedelta(minutes=minutes),
        "source_topic": LABELS,
        "source_partition": 1,
        "source_offset": offset,
    }


def test_a_feature_updated_after_the_labelled_record_does_not_leak_into_the_set() -> None:
    features = pd.DataFrame(
        [
            feature("r1", "alice", 0, 100.0, offset=0),
            feature("r2", "alice", 30, 999.0, offset=1),  # after r1, before r1's label
            feature("r3", "alice", 90, 555.0, offset=2),  # after r1's label
        ]
    )
    labels = pd.DataFrame([label("r1", 1, 60, offset=0)])
    training = point_in_time_join(features, labels)
    [row] = training.frame.to_dict("records")
    assert row["record_id"] == "r1"
    assert row["loan"] == 100.0 and row["loan_sum_1h"] == 200.0, "the earlier value, not 999"
    assert row["label"] == 1
    assert row["event_time"] == pd.Timestamp(T0)
    assert row["labelled_at"] == pd.Timestamp(T0 + timedelta(minutes=60))


def test_each_entity_sees_only_its_own_history() -> None:
    features = pd.DataFrame(
        [
            feature("b1", "bob", 0, 10.0, offset=0),
            feature("a1", "alice", 5, 20.0, offset=1),
            feature("b2", "bob", 10, 30.0, offset=2),
        ]
    )
    labels = pd.DataFrame([label("a1", 0, 20, 0), label("b2", 1, 20, 1)])
    frame = point_in_time_join(features, labels).frame
    assert frame.set_index("record_id")["loan"].to_dict() == {"a1": 20.0, "b2": 30.0}


def test_records_sharing_an_event_time_see_only_what_came_before_them() -> None:
    features = pd.DataFrame(
        [
            feature("first", "alice", 0, 1.0, offset=4),
            feature("second", "alice", 0, 2.0, offset=5),
        ]
    )
    labels = pd.DataFrame([label("first", 0, 1, 0), label("second", 1, 1, 1)])
    frame = point_in_time_join(features, labels).frame
    assert frame.set_index("record_id")["loan"].to_dict() == {"first": 1.0, "second": 2.0}


def test_until_leaves_out_later_records_and_labels_not_yet_known() -> None:
    features = pd.DataFrame(
        [feature("r1", "alice", 0, 1.0, offset=0), feature("r2", "alice", 50, 2.0, offset=1)]
    )
    labels = pd.DataFrame([label("r1", 1, 40, 0), label("r2", 0, 55, 1), label("r1", 0, 70, 2)])
    training = point_in_time_join(features, labels, until=T0 + timedelta(minutes=45))
    assert training.frame["record_id"].tolist() == ["r1"]
    assert training.frame["label"].tolist() == [1], "the correction at 70 min was not known yet"


def test_the_latest_label_of_a_record_wins() -> None:
    features = pd.DataFrame([feature("r1", "alice", 0, 1.0, offset=0)])
    labels = pd.DataFrame([label("r1", 1, 40, 0), label("r1", 0, 70, 1)])
    assert point_in_time_join(features, labels).frame["label"].tolist() == [0]


def test_replayed_rows_count_once_and_unmatched_labels_are_reported() -> None:
    row = feature("r1", "alice", 0, 1.0, offset=0)
    features = pd.DataFrame([row, row])
    labels = pd.DataFrame([label("r1", 1, 5, 0), label("r1", 1, 5, 0), label("ghost", 1, 5, 1)])
    training = point_in_time_join(features, labels)
    assert len(training.frame) == 1
    assert training.labels_read == 2
    assert training.labels_unmatched == 1


def test_labels_that_arrive_with_the_record_need_no_label_rows() -> None:
    features = pd.DataFrame(
        [
            feature("s1", "p1", 0, 1.0, offset=0, label=1),
            feature("s2", "p2", 1, 2.0, offset=1, label=0),
        ]
    )
    frame = point_in_time_join(features, pd.DataFrame()).frame
    assert frame.set_index("record_id")["label"].to_dict() == {"s1": 1, "s2": 0}
    assert (frame["labelled_at"] == frame["event_time"]).all()


def test_lineage_names_the_exact_offset_ranges_of_the_rows_used() -> None:
    features = pd.DataFrame(
        [
            feature("r1", "alice", 0, 1.0, offset=3),
            feature("r2", "alice", 10, 2.0, offset=8),
            feature("r3", "bob", 20, 3.0, offset=12, source_partition=2),
            feature("unlabelled", "bob", 30, 4.0, offset=20, source_partition=2),
        ]
    )
    labels = pd.DataFrame([label("r1", 1, 40, 5), label("r2", 0, 41, 9), label("r3", 1, 42, 6)])
    training = point_in_time_join(features, labels)
    assert training.feature_spans == [
        OffsetSpan(VALIDATED, 0, 3, 8, rows=2),
        OffsetSpan(VALIDATED, 2, 12, 12, rows=1),
    ]
    assert training.label_spans == [OffsetSpan(LABELS, 1, 5, 9, rows=3)]
    assert [(s.topic, s.partition) for s in training.offsets] == [
        (LABELS, 1),
        (VALIDATED, 0),
        (VALIDATED, 2),
    ]
    assert training.spec_version == 1


def test_the_set_has_generic_columns_then_features_then_lineage() -> None:
    features = pd.DataFrame([feature("r1", "alice", 0, 1.0, offset=0)])
    frame = point_in_time_join(features, pd.DataFrame([label("r1", 1, 1, 0)])).frame
    assert list(frame.columns) == [
        "record_id", "entity", "event_time", "spec_version", "labelled_at", "loan",
        "loan_sum_1h", "label", "source_topic", "source_partition", "source_offset",
        "source_label_topic", "source_label_partition", "source_label_offset",
    ]  # fmt: skip


def test_no_labels_give_an_empty_set() -> None:
    features = pd.DataFrame([feature("r1", "alice", 0, 1.0, offset=0)])
    training = point_in_time_join(features, pd.DataFrame())
    assert training.frame.empty
    assert training.offsets == []
    assert training.spec_version is None


def test_a_feature_batch_covers_its_own_offsets_and_the_validated_records_it_came_from() -> None:
    rows = [
        {"source_topic": "ns.data.validated", "source_partition": 1, "source_offset": 40},
        {"source_topic": "ns.data.validated", "source_partition": 1, "source_offset": 44},
        {"source_topic": "ns.data.validated", "source_partition": 2, "source_offset": 7},
    ]
    assert batch_coverage("ns.data.features", 1, 99, rows) == {
        ("ns.data.features", 1): 100,
        ("ns.data.validated", 1): 45,
        ("ns.data.validated", 2): 8,
    }
    assert batch_coverage("ns.data.labels", 0, 9, []) == {("ns.data.labels", 0): 10}


def test_coverage_only_moves_forward_and_survives_json() -> None:
    earlier = {("t", 0): 50, ("t", 1): 10}
    merged = merge_coverage(earlier, {("t", 0): 30, ("u", 0): 3})
    assert merged == {("t", 0): 50, ("t", 1): 10, ("u", 0): 3}
    assert coverage_from_json(coverage_json(merged)) == merged
    assert coverage_from_json({"not": "a list"}) == {}
    assert coverage_from_json([{"topic": "t"}, {"topic": "t", "partition": 0, "offset": 1}]) == {
        ("t", 0): 1
    }


class CoverageFiles:
    """An object store holding the sinks' coverage files (and other files)."""

    bucket = "b"

    def __init__(self, documents: dict[str, Any]) -> None:
        self.documents = documents

    def keys(self, prefix: str) -> list[str]:
        return sorted(key for key in self.documents if key.startswith(prefix))

    def get_json(self, key: str) -> Any:
        return self.documents.get(key)


def test_the_store_s_coverage_merges_every_partition_s_file_of_its_namespace() -> None:
    store = CoverageFiles(
        {
            "ns/_offline/features/coverage-0.json": [
                {"topic": "ns.data.validated", "partition": 0, "offset": 12},
                {"topic": "ns.data.features", "partition": 0, "offset": 12},
            ],
            "ns/_offline/labels/coverage-1.json": [
                {"topic": "ns.data.labels", "partition": 1, "offset": 5}
            ],
            "ns/_offline/labels/intent-1.json": {"first": 0, "last": 4},
            "other/_offline/labels/coverage-0.json": [
                {"topic": "other.data.labels", "partition": 0, "offset": 99}
            ],
        }
    )
    sets = TrainingSets(store, "ns")  # type: ignore[arg-type]
    assert sets.coverage() == {
        ("ns.data.validated", 0): 12,
        ("ns.data.features", 0): 12,
        ("ns.data.labels", 1): 5,
    }


def test_records_that_gave_no_vector_count_as_written_once_every_vector_is() -> None:
    validated, features = ("ns.data.validated", 0), ("ns.data.features", 0)
    written = {validated: 465, features: 445}
    # The stream processed validated[0] to its end (its last records were copies of earlier
    # ones, skipped) and the writer has written every vector on data.features.
    assert with_stream_progress(written, {validated: 648}, {features: 445}) == {
        validated: 648,
        features: 445,
    }
    # A vector published but not written yet: only the files count.
    assert with_stream_progress(written, {validated: 648}, {features: 446}) == written
    # The stream's progress unread (Kafka did not answer): only the files count.
    assert with_stream_progress(written, {}, {}) == written
    # Files ahead of what the stream committed (it commits every few seconds) stay as they are.
    assert with_stream_progress(written, {validated: 400}, {features: 445}) == written


def test_the_coverage_counts_the_stream_s_progress_read_before_the_files() -> None:
    order: list[str] = []

    class Store(CoverageFiles):
        def keys(self, prefix: str) -> list[str]:
            order.append("files")
            return super().keys(prefix)

    store = Store({"ns/_offline/features/coverage-0.json": [
        {"topic": "ns.data.validated", "partition": 0, "offset": 12},
        {"topic": "ns.data.features", "partition": 0, "offset": 12},
    ]})  # fmt: skip

    def progress() -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        order.append("stream")
        return {("ns.data.validated", 0): 20}, {("ns.data.features", 0): 12}

    sets = TrainingSets(store, "ns", progress)  # type: ignore[arg-type]
    assert sets.coverage()[("ns.data.validated", 0)] == 20
    assert order == ["stream", "files"]
