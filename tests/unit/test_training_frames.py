"""The training frame: columns by role, rows sorted by (event time, record id), values typed,
and a content hash that depends on the content only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from services.training.domain.errors import BadTrainingSet, NotEnoughData
from services.training.domain.frames import content_sha256, prepare, require_rows, since
from shared.datasets.sources import agrawal_records, breast_cancer_records
from shared.datasets.spec import DatasetSpec, shipped_specs

START = datetime(2024, 1, 1, tzinfo=UTC)
SPECS = {spec.name: spec for spec in shipped_specs()}


def loans_set(count: int = 200) -> pd.DataFrame:
    """Loans rows as the feature store serves them: the record, aggregates, the label."""
    rows = []
    for record, approved in agrawal_records(count, seed=5, start=START, seconds_between=30):
        rows.append(
            {
                **record,
                "applications_1h": 1,
                "loan_sum_1h": record["loan"],
                "loan_mean_1d": record["loan"],
                "approved": approved,
                "source_topic": "mlops.data.features",
                "source_partition": 0,
                "source_offset": len(rows),
            }
        )
    return pd.DataFrame(rows)


def test_feature_columns_follow_the_spec_and_leave_out_ids_time_label_and_source() -> None:
    training = prepare(loans_set(), SPECS["loans"])
    assert training.features == [
        "salary",
        "commission",
        "age",
        "elevel",
        "car",
        "zipcode",
        "hvalue",
        "hyears",
        "loan",
        "applications_1h",
        "loan_sum_1h",
        "loan_mean_1d",
    ]
    assert training.kinds["elevel"] == "categorical"
    assert training.kinds["age"] == "numeric"
    assert training.kinds["loan_sum_1h"] == "numeric"
    assert training.columns.label == "approved"
    assert training.columns.event_time == "applied_at"
    assert training.columns.record_id == "application_id"


def test_generic_column_names_are_understood_too() -> None:
    raw = loans_set(50).rename(
        columns={
            "applied_at": "event_time",
            "application_id": "record_id",
            "applicant_id": "entity",
            "approved": "label",
        }
    )
    training = prepare(raw, SPECS["loans"])
    assert training.columns.event_time == "event_time"
    assert training.columns.label == "label"
    assert "entity" not in training.features and "record_id" not in training.features


def test_values_are_typed_categories_as_strings_and_booleans_as_zero_or_one() -> None:
    spec = DatasetSpec.model_validate(
        {
            "name": "toy",
            "entity_key": "user",
            "event_time": "at",
            "record_id": "id",
            "features": [
                {"name": "color", "type": "categorical", "categories": ["1", "2"]},
                {"name": "member", "type": "boolean"},
                {"name": "amount", "type": "integer"},
            ],
            "label": {"name": "churned", "type": "boolean", "task": "classification"},
        }
    )
    raw = pd.DataFrame(
        {
            "user": ["a", "b", "c"],
            "at": ["2024-01-01T00:00:02Z", "2024-01-01T00:00:01Z", "2024-01-01T00:00:03Z"],
            "id": ["r2", "r1", "r3"],
            "color": [2.0, 1.0, None],
            "member": [True, False, None],
            "amount": [3, 4, 5],
            "churned": ["yes", "no", "yes"],
        }
    )
    training = prepare(raw, spec)
    frame = training.frame
    assert frame["id"].tolist() == ["r1", "r2", "r3"]
    assert frame["color"].tolist()[:2] == ["1", "2"] and pd.isna(frame["color"].iloc[2])
    assert frame["member"].tolist()[:2] == [0.0, 1.0] and np.isnan(frame["member"].iloc[2])
    assert frame["amount"].dtype == np.float64


def test_rows_without_a_label_are_dropped_and_counted() -> None:
    raw = loans_set(20)
    raw.loc[[3, 7], "approved"] = None
    training = prepare(raw, SPECS["loans"])
    assert len(training.frame) == 18
    assert training.unlabelled_dropped == 2
    assert training.frame["approved"].dtype == np.int64


def test_a_window_keeps_the_rows_since_its_start_and_counts_the_older_ones() -> None:
    raw = loans_set(20)
    raw.loc[[3], "approved"] = None
    training = prepare(raw, SPECS["loans"])
    windowed = since(training, START + timedelta(seconds=30 * 10))
    assert len(windowed.frame) == 10
    assert windowed.frame["applied_at"].min() == pd.Timestamp(START + timedelta(seconds=300))
    assert (windowed.before_window, windowed.unlabelled_dropped) == (9, 1)
    assert windowed.sha256 == training.sha256  # the set it came from, as stored
    assert since(training, None) is training
    with pytest.raises(NotEnoughData, match="19 older than the window"):
        require_rows(since(training, START + timedelta(days=1)), 10)


def test_rows_are_sorted_by_event_time_then_record_id() -> None:
    raw = loans_set(30)
    raw["applied_at"] = (START + timedelta(minutes=1)).isoformat()  # every row ties
    training = prepare(raw.sample(frac=1, random_state=3), SPECS["loans"])
    ids = training.frame["application_id"].tolist()
    assert ids == sorted(ids)


def test_the_hash_is_stable_under_row_order_and_changes_with_the_content() -> None:
    raw = loans_set(100)
    first = prepare(raw, SPECS["loans"]).sha256
    shuffled = prepare(raw.sample(frac=1, random_state=7), SPECS["loans"]).sha256
    reordered_columns = prepare(raw[list(reversed(raw.columns))], SPECS["loans"]).sha256
    assert first == shuffled == reordered_columns
    changed = raw.copy()
    changed.loc[10, "salary"] += 0.01
    assert prepare(changed, SPECS["loans"]).sha256 != first
    fewer = raw.drop(index=5)
    assert prepare(fewer, SPECS["loans"]).sha256 != first


def test_the_hash_reads_times_and_missing_values_canonically() -> None:
    a = pd.DataFrame({"t": pd.to_datetime(["2024-01-01T01:00:00+01:00"]), "x": [np.nan]})
    b = pd.DataFrame({"t": pd.to_datetime(["2024-01-01T00:00:00Z"]), "x": [None]})
    assert content_sha256(a) == content_sha256(b)
    assert len(content_sha256(a)) == 64


def test_breast_cancer_takes_its_label_from_the_record() -> None:
    raw = pd.DataFrame([r for r, _ in breast_cancer_records(100, seed=1, start=START)])
    training = prepare(raw, SPECS["breast_cancer"])
    assert training.columns.label == "diagnosis"
    assert len(training.features) == 30
    assert "diagnosis" not in training.features and "patient_id" not in training.features


@pytest.mark.parametrize(("drop", "problem"), [("applied_at", "event time"), ("approved", "label")])
def test_a_set_without_time_or_label_is_refused(drop: str, problem: str) -> None:
    with pytest.raises(BadTrainingSet, match=problem):
        prepare(loans_set(10).drop(columns=drop), SPECS["loans"])


def test_unreadable_times_and_numbers_are_refused_with_the_column_named() -> None:
    bad_time = loans_set(10)
    bad_time.loc[2, "applied_at"] = "yesterday"
    with pytest.raises(BadTrainingSet, match="applied_at"):
        prepare(bad_time, SPECS["loans"])
    bad_number = loans_set(10)
    bad_number["salary"] = bad_number["salary"].astype(object)
    bad_number.loc[2, "salary"] = "lots"
    with pytest.raises(BadTrainingSet, match="salary"):
        prepare(bad_number, SPECS["loans"])


def test_too_few_labelled_rows_are_refused() -> None:
    training = prepare(loans_set(5), SPECS["loans"])
    with pytest.raises(NotEnoughData, match="5 labelled rows"):
        require_rows(training, 10)
