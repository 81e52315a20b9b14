"""`mlops reproduce`'s pure parts: what it compares, how it says what differs, its targets."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import typer

from services.feature_store.domain.offline import as_stored, feature_schema
from shared.cli.common import CliError
from shared.cli.reproduce import (
    IDENTICAL,
    Check,
    compare_metrics,
    compare_predictions,
    compare_sources,
    compare_value,
    lineage_of,
    namespace_of,
    parse_target,
    read_json,
    verdict,
)
from shared.datasets.spec import shipped_specs
from shared.events.models import OffsetRange

LINEAGE = {
    "dataset": "loans",
    "spec_version": 1,
    "spec_fingerprint": "abc",
    "offsets": [
        {"topic": "ns.data.validated", "partition": 0, "first_offset": 3, "last_offset": 9},
        {"topic": "ns.data.labels", "partition": 1, "first_offset": 0, "last_offset": 4},
    ],
    "training_set_sha256": "f" * 64,
    "rows": 10,
    "holdout_rows": 2,
    "feature_columns": ["age"],
    "code_version": "unknown",
    "trigger": {"kind": "drift", "since": "2026-11-21T10:00:00Z"},
}


def test_equal_checks_are_identical() -> None:
    checks = [
        compare_value("rows", 10, 10),
        compare_metrics({"roc_auc": 0.9, "accuracy": 0.8}, {"accuracy": 0.8, "roc_auc": 0.9}),
        compare_predictions(np.array([[0.1, 0.9], [0.5, 0.5]]), np.array([[0.1, 0.9], [0.5, 0.5]])),
    ]
    assert all(check.same for check in checks)
    assert verdict(checks) == IDENTICAL


def test_a_differing_value_is_named() -> None:
    check = compare_value("training-set hash", "a" * 64, "b" * 64)
    assert not check.same
    assert verdict([compare_value("rows", 3, 3), check]) == "differs: training-set hash"


def test_metrics_say_which_differ_and_by_how_much() -> None:
    check = compare_metrics(
        {"roc_auc": 0.9, "f1": 0.5, "log_loss": 0.3}, {"roc_auc": 0.875, "f1": 0.5}
    )
    assert not check.same
    assert check.difference == "metrics (log_loss missing, roc_auc -0.025)"


def test_metrics_must_match_exactly_not_nearly() -> None:
    assert not compare_metrics({"roc_auc": 0.9}, {"roc_auc": math.nextafter(0.9, 1)}).same
    assert compare_metrics({"x": float("nan")}, {"x": float("nan")}).same


def test_predictions_count_the_rows_that_differ_and_the_largest_gap() -> None:
    recorded = np.array([[0.1, 0.9], [0.5, 0.5], [0.2, 0.8]])
    reproduced = np.array([[0.1, 0.9], [0.4, 0.6], [0.2, 0.8]])
    check = compare_predictions(recorded, reproduced)
    assert not check.same
    assert check.difference == "predictions (1 of 3 rows differ, max |diff| 0.1)"


def test_predictions_of_other_shapes_differ() -> None:
    check = compare_predictions(np.zeros((3, 2)), np.zeros((4, 2)))
    assert not check.same and "shapes" in check.difference


def test_class_predictions_compare_without_a_gap() -> None:
    check = compare_predictions(np.array(["a", "b"]), np.array(["a", "c"]))
    assert check.difference == "predictions (1 of 2 rows differ)"


def test_verdict_lists_every_difference_in_order() -> None:
    checks = [
        Check("rows", "10", "8", False, "rows"),
        Check("spec fingerprint", "a", "a", True),
        Check("metrics", "", "", False, "metrics (accuracy +0.1)"),
    ]
    assert verdict(checks) == "differs: rows; metrics (accuracy +0.1)"


@pytest.mark.parametrize(
    ("target", "latest", "expected"),
    [("loans@3", False, ("loans", 3)), ("loans", True, ("loans", None))],
)
def test_targets(target: str, latest: bool, expected: tuple[str, int | None]) -> None:
    assert parse_target(target, latest) == expected


@pytest.mark.parametrize(
    ("target", "latest"),
    [("loans", False), ("loans@3", True), ("Loans@1", False), ("loans@0", False)],
)
def test_bad_targets_are_usage_errors(target: str, latest: bool) -> None:
    with pytest.raises(typer.BadParameter):
        parse_target(target, latest)


def test_a_lineage_is_read_bare_or_inside_a_version() -> None:
    bare = lineage_of(LINEAGE)
    wrapped = lineage_of({"model_name": "loans", "version": 2, "lineage": LINEAGE})
    assert bare == wrapped
    assert bare.trigger.since is not None


def test_a_document_that_is_no_lineage_is_refused() -> None:
    with pytest.raises(CliError, match="not a training lineage"):
        lineage_of({"lineage": {"dataset": "loans"}})


def test_the_namespace_comes_from_the_ranges() -> None:
    assert namespace_of(lineage_of(LINEAGE).offsets) == "ns"


def test_ranges_of_other_topics_or_namespaces_are_refused() -> None:
    other = OffsetRange(topic="ns.data.raw", partition=0, first_offset=0, last_offset=1)
    with pytest.raises(CliError, match=r"only data\.validated and data\.labels"):
        namespace_of([other])
    mixed = [
        OffsetRange(topic="a.data.labels", partition=0, first_offset=0, last_offset=1),
        OffsetRange(topic="b.data.labels", partition=0, first_offset=0, last_offset=1),
    ]
    with pytest.raises(CliError, match="span namespaces"):
        namespace_of(mixed)


def test_rows_rebuilt_from_events_take_the_offline_stores_types() -> None:
    loans = next(spec for spec in shipped_specs() if spec.name == "loans")
    row = {
        "record_id": "app-1",
        "entity": "applicant-7",
        "event_time": datetime(2026, 11, 21, 10, tzinfo=UTC),
        "spec_version": 1,
        "age": 35.0,  # JSON gives a float; the spec says integer
        "elevel": "2",
        "label": None,
        "source_topic": "ns.data.validated",
        "source_partition": 0,
        "source_offset": 7,
    }
    frame = as_stored([row], feature_schema([loans]))
    assert str(frame["age"].dtype) == "int64" and frame["age"].iloc[0] == 35
    assert str(frame["event_time"].dtype) == "datetime64[us, UTC]"
    assert str(frame["source_partition"].dtype) == "int32"
    assert frame["salary"].isna().all()


def test_feature_events_must_be_of_the_records_they_name() -> None:
    assert compare_sources(1200, 0).same
    check = compare_sources(1200, 3)
    assert not check.same
    assert verdict([check]) == (
        "differs: feature sources (3 feature events name another record than their source message)"
    )


def test_a_lineage_file_that_is_not_json_is_one_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "lineage.json"
    broken.write_text("{not json")
    with pytest.raises(CliError, match="not a readable JSON file"):
        read_json(broken)
