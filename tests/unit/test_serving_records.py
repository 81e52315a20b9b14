"""Records sent to /predict, read against the loans spec and a model's input columns."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from services.serving.domain.records import InputSchema, ReadRecord, read_record, read_stored
from services.serving.domain.samples import sample_rows
from shared.datasets.sources import agrawal_records
from shared.datasets.spec import DatasetSpec, FeatureSpec, FeatureType, shipped_specs
from shared.datasets.values import Invalid, coerce
from shared.events.records import FieldError

RAW = ("salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan")


def loans() -> DatasetSpec:
    return next(spec for spec in shipped_specs() if spec.name == "loans")


def schema(*extra: str, without: tuple[str, ...] = ()) -> InputSchema:
    columns = tuple(c for c in RAW if c not in without) + extra
    return InputSchema.of(loans(), columns)


def record(**changes: Any) -> dict[str, Any]:
    row, _ = next(agrawal_records(1, seed=3, start=datetime(2024, 1, 1, tzinfo=UTC)))
    row.update(changes)
    return {k: v for k, v in row.items() if v is not ...}


def errors_of(result: ReadRecord | list[FieldError]) -> set[tuple[str | None, str]]:
    assert isinstance(result, list), f"expected errors, read {result}"
    return {(error.field, error.rule) for error in result}


def test_a_valid_record_is_read_in_the_model_column_order_with_its_ids() -> None:
    row = record(salary="52000.5", age=45.0, elevel=2)

    read = read_record(schema("loan_sum_1h"), row)

    assert isinstance(read, ReadRecord)
    assert list(read.values) == [*RAW, "loan_sum_1h"]
    assert (read.values["salary"], read.values["age"], read.values["elevel"]) == (52000.5, 45, "2")
    assert read.values["loan_sum_1h"] is None, "an aggregate left out is missing, not an error"
    assert (read.record_id, read.entity) == (row["application_id"], row["applicant_id"])


def test_every_failing_field_is_reported_at_once() -> None:
    row = record(age=95, elevel="9", salary="lots", commission=math.nan, colour="red", loan=...)

    result = read_record(schema(), row)

    assert errors_of(result) == {
        ("age", "range"),
        ("elevel", "category"),
        ("salary", "type"),
        ("commission", "not_finite"),
        ("colour", "unexpected_field"),
        ("loan", "required"),
    }
    assert isinstance(result, list)
    messages = {error.field: error.message for error in result}
    assert messages["age"] == "95 is above the maximum 80"
    assert messages["elevel"].startswith("'9' is not one of: 0, 1, 2, 3, 4")


def test_null_is_refused_for_a_feature_the_model_reads_and_allowed_for_one_it_does_not() -> None:
    assert errors_of(read_record(schema(), record(age=None))) == {("age", "required")}

    read = read_record(schema(without=("age",)), record(age=None))

    assert isinstance(read, ReadRecord)
    assert "age" not in read.values


def test_features_the_model_does_not_read_are_still_checked_when_present() -> None:
    result = read_record(schema(without=("age",)), record(age=200))

    assert errors_of(result) == {("age", "range")}


def test_aggregates_are_numbers_and_counts_cannot_be_negative() -> None:
    read = read_record(schema("loan_sum_1h"), record(loan_sum_1h="1200.5"))
    assert isinstance(read, ReadRecord) and read.values["loan_sum_1h"] == 1200.5

    result = read_record(schema("applications_1h"), record(applications_1h=-1))

    assert errors_of(result) == {("applications_1h", "range")}


def test_a_derived_column_unknown_to_the_spec_is_required_as_given() -> None:
    assert errors_of(read_record(schema("risk"), record())) == {("risk", "required")}
    read = read_record(schema("risk"), record(risk=0.3))
    assert isinstance(read, ReadRecord) and read.values["risk"] == 0.3


def test_ids_are_echoed_as_text_and_may_be_absent() -> None:
    read = read_record(schema(), record(application_id=17, applicant_id=...))

    assert isinstance(read, ReadRecord)
    assert (read.record_id, read.entity) == ("17", None)
    assert errors_of(read_record(schema(), record(application_id="x" * 201))) == {
        ("application_id", "type")
    }


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        (FeatureType.NUMERIC, 3, 3.0),
        (FeatureType.NUMERIC, " 1e3 ", 1000.0),
        (FeatureType.INTEGER, "7", 7),
        (FeatureType.INTEGER, 7.0, 7),
        (FeatureType.BOOLEAN, "TRUE", True),
        (FeatureType.BOOLEAN, 0, False),
        (FeatureType.CATEGORICAL, 2.0, "2"),
        (FeatureType.CATEGORICAL, True, "true"),
        (FeatureType.TIMESTAMP, "2024-01-01T00:00:00", "2024-01-01T00:00:00+00:00"),
        (FeatureType.TIMESTAMP, 0, "1970-01-01T00:00:00+00:00"),
    ],
)
def test_values_are_read_as_validation_reads_them(
    kind: FeatureType, value: object, expected: object
) -> None:
    assert coerce(kind, value) == expected


@pytest.mark.parametrize(
    ("kind", "value", "rule"),
    [
        (FeatureType.NUMERIC, True, "type"),
        (FeatureType.NUMERIC, "Infinity", "not_finite"),
        (FeatureType.NUMERIC, "1e999", "not_finite"),
        (FeatureType.INTEGER, 3.5, "type"),
        (FeatureType.BOOLEAN, "yes", "type"),
        (FeatureType.CATEGORICAL, math.inf, "not_finite"),
        (FeatureType.TIMESTAMP, "yesterday", "type"),
    ],
)
def test_values_of_the_wrong_kind_break_a_named_rule(
    kind: FeatureType, value: object, rule: str
) -> None:
    with pytest.raises(Invalid) as refused:
        coerce(kind, value)
    assert refused.value.rule == rule


def test_sample_rows_fit_the_spec_they_are_built_from() -> None:
    spec = loans().model_copy(
        update={
            "features": [
                *loans().features,
                FeatureSpec(name="vip", type=FeatureType.BOOLEAN),
                FeatureSpec(name="score", type=FeatureType.NUMERIC, max=-5),
            ]
        }
    )
    model_schema = InputSchema.of(spec, (*RAW, "vip", "score", "loan_mean_1d"))

    rows = sample_rows(model_schema)

    assert len({row["elevel"] for row in rows}) == len(rows), "each row takes another category"
    for row in rows:
        read = read_record(model_schema, row)
        assert isinstance(read, ReadRecord), read
        assert list(read.values) == list(model_schema.columns)
    salary = next(f for f in spec.features if f.name == "salary")
    assert salary.expected_max is not None, "loans declares an expected salary range"
    assert all(salary.expected_min <= row["salary"] <= salary.expected_max for row in rows), (
        "warm-up rows stay where the model was trained, not at the hard bounds"
    )


def expected(**bounds: tuple[float | None, float | None]) -> InputSchema:
    """The loans schema with expected (accept and flag) ranges on some features; salary's
    hard maximum is set to 150,000 so that a value past it is refused."""
    spec = loans()
    features = [
        f.model_copy(
            update={
                **dict(zip(("expected_min", "expected_max"), bounds[f.name], strict=True)),
                **({"max": 150_000.0} if f.name == "salary" else {}),
            }
        )
        if f.name in bounds
        else f
        for f in spec.features
    ]
    return InputSchema.of(spec.model_copy(update={"features": features}), RAW)


def test_a_value_outside_its_expected_range_is_accepted_and_flagged_beyond_the_hard_one_refused() -> (
    None
):
    flagging = expected(salary=(30_000, 100_000), age=(25, None))

    read = read_record(flagging, record(salary=140_000.0, age=22))
    inside = read_record(flagging, record(salary=50_000.0, age=40))
    beyond = read_record(flagging, record(salary=160_000.0))

    assert isinstance(read, ReadRecord) and read.values["salary"] == 140_000.0
    assert read.out_of_range == ("salary", "age")
    assert isinstance(inside, ReadRecord) and inside.out_of_range == ()
    assert errors_of(beyond) == {("salary", "range")}


def test_stored_features_pass_the_same_checks_and_may_lack_a_value() -> None:
    flagging = expected(salary=(30_000, 100_000))
    stored = {k: v for k, v in record(salary=120_000.0).items() if k != "hyears"}

    read = read_stored(flagging, stored, "applicant-1", "app-1")
    refused = read_stored(flagging, {**stored, "age": 95, "elevel": "9"}, "applicant-1", None)

    assert isinstance(read, ReadRecord)
    assert read.values["hyears"] is None, "a value the store lacks is missing, not an error"
    assert (read.entity, read.record_id, read.out_of_range) == ("applicant-1", "app-1", ("salary",))
    assert errors_of(refused) == {("age", "range"), ("elevel", "category")}
    assert errors_of(read_record(flagging, {**stored, "age": 95, "elevel": "9"})) >= {
        ("age", "range"),
        ("elevel", "category"),
    }
