"""Every rule of domain/rules.py, with good and bad values; every failure is collected."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.validation.domain.rules import check_record
from shared.datasets.spec import DatasetSpec
from shared.events.records import RecordIngested

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def a_spec(**changes: Any) -> DatasetSpec:
    document: dict[str, Any] = {
        "name": "shop",
        "entity_key": "customer_id",
        "event_time": "ts",
        "record_id": "order_id",
        "features": [
            {"name": "amount", "type": "numeric", "min": 0, "max": 1000},
            {"name": "items", "type": "integer", "min": 1, "max": 50},
            {"name": "channel", "type": "categorical", "categories": ["web", "store", "7"]},
            {"name": "member", "type": "boolean"},
            {"name": "signup", "type": "timestamp", "nullable": True},
            {"name": "discount", "type": "numeric", "nullable": True},
        ],
        "label": {"name": "churned", "type": "integer", "categories": ["0", "1"]},
        "future_tolerance_seconds": 60,
    }
    document.update(changes)
    return DatasetSpec.model_validate(document)


SPEC = a_spec()


def good_values(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "customer_id": "c-1",
        "order_id": "o-1",
        "ts": "2024-05-01T11:59:00Z",
        "amount": 12.5,
        "items": 3,
        "channel": "web",
        "member": True,
        "signup": "2020-01-01T00:00:00+00:00",
        "discount": None,
        "churned": 0,
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not ABSENT}


ABSENT = object()


def check(values: dict[str, Any], spec: DatasetSpec = SPEC, entity: str | None = None):
    record = RecordIngested(dataset=spec.name, entity=entity, values=values, ingested_at=NOW)
    return check_record(record, spec, event_id="event-1")


def failures(values: dict[str, Any], spec: DatasetSpec = SPEC) -> set[tuple[str | None, str]]:
    return {(e.field, e.rule) for e in check(values, spec).errors}


def test_a_good_record_passes_with_values_coerced_to_their_declared_types() -> None:
    checked = check(good_values(amount=12, items=3.0, channel=7, member="false", discount="0.5"))
    assert checked.ok, checked.errors
    assert checked.values == {
        "amount": 12.0,
        "items": 3,
        "channel": "7",
        "member": False,
        "signup": "2020-01-01T00:00:00+00:00",
        "discount": 0.5,
    }
    assert type(checked.values["amount"]) is float and type(checked.values["items"]) is int
    assert checked.entity == "c-1"
    assert checked.record_id == "o-1"
    assert checked.event_time == datetime(2024, 5, 1, 11, 59, tzinfo=UTC)
    assert checked.label == 0


def test_nullable_features_may_be_null_or_absent_and_come_out_as_null() -> None:
    checked = check(good_values(signup=ABSENT, discount=None))
    assert checked.ok
    assert checked.values["signup"] is None and checked.values["discount"] is None


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"amount": "lots"}, ("amount", "type")),
        ({"amount": True}, ("amount", "type")),
        ({"items": 2.5}, ("items", "type")),
        ({"member": "maybe"}, ("member", "type")),
        ({"signup": "last tuesday"}, ("signup", "type")),
        ({"amount": -1}, ("amount", "range")),
        ({"amount": 1000.01}, ("amount", "range")),
        ({"items": 0}, ("items", "range")),
        ({"items": 51}, ("items", "range")),
        ({"channel": "mail"}, ("channel", "category")),
        ({"channel": 8}, ("channel", "category")),
        ({"amount": ABSENT}, ("amount", "required")),
        ({"amount": None}, ("amount", "required")),
        ({"member": None}, ("member", "required")),
        ({"customer_id": ABSENT}, ("customer_id", "required")),
        ({"customer_id": None}, ("customer_id", "required")),
        ({"customer_id": " "}, ("customer_id", "required")),
        ({"order_id": ABSENT}, ("order_id", "required")),
        ({"order_id": ""}, ("order_id", "required")),
        ({"order_id": True}, ("order_id", "type")),
        ({"order_id": 1.5}, ("order_id", "type")),
        ({"order_id": "x" * 201}, ("order_id", "too_long")),
        ({"amount": math.nan}, ("amount", "not_finite")),
        ({"amount": math.inf}, ("amount", "not_finite")),
        ({"items": -math.inf}, ("items", "not_finite")),
        ({"amount": "NaN"}, ("amount", "not_finite")),
        ({"discount": "inf"}, ("discount", "not_finite")),
        ({"channel": math.nan}, ("channel", "not_finite")),
        ({"customer_id": math.nan}, ("customer_id", "not_finite")),
        ({"ts": math.nan}, ("ts", "not_finite")),
        ({"churned": math.nan}, ("churned", "not_finite")),
        ({"colour": "red"}, ("colour", "unexpected_field")),
        ({"ts": ABSENT}, ("ts", "event_time")),
        ({"ts": None}, ("ts", "event_time")),
        ({"ts": "soon"}, ("ts", "event_time")),
        ({"ts": (NOW + timedelta(seconds=61)).isoformat()}, ("ts", "future_time")),
        ({"churned": ABSENT}, ("churned", "label")),
        ({"churned": None}, ("churned", "label")),
        ({"churned": "yes"}, ("churned", "label")),
        ({"churned": 2}, ("churned", "label")),
    ],
)
def test_each_rule_names_its_field(changes: dict[str, Any], expected: tuple[str, str]) -> None:
    checked = check(good_values(**changes))
    assert {(e.field, e.rule) for e in checked.errors} == {expected}
    assert all(e.message for e in checked.errors)


def test_an_event_time_within_the_future_tolerance_passes() -> None:
    assert check(good_values(ts=(NOW + timedelta(seconds=60)).isoformat())).ok
    assert check(good_values(ts=NOW.timestamp())).ok, "epoch seconds"
    assert check(good_values(ts="2024-05-01T11:00:00")).ok, "no offset means UTC"


def test_every_failing_field_and_rule_is_collected_not_only_the_first() -> None:
    values = good_values(
        amount=-5, items="many", channel="mail", member=None, ts="never", colour="red", churned=7
    )
    assert failures(values) == {
        ("amount", "range"),
        ("items", "type"),
        ("channel", "category"),
        ("member", "required"),
        ("ts", "event_time"),
        ("colour", "unexpected_field"),
        ("churned", "label"),
    }


def test_errors_carry_the_value_as_received_strict_json_for_non_finite() -> None:
    [nan] = check(good_values(amount=math.nan)).errors
    assert nan.value == "NaN"
    [low] = check(good_values(amount=-5)).errors
    assert low.value == -5 and "below the minimum 0" in low.message


def test_the_record_id_is_the_event_id_when_the_spec_names_no_id_column() -> None:
    spec = a_spec(record_id=None)
    checked = check(good_values(order_id=ABSENT), spec)
    assert checked.ok and checked.record_id == "event-1"
    assert failures(good_values(), spec) == {("order_id", "unexpected_field")}


def test_integer_record_ids_become_strings() -> None:
    assert check(good_values(order_id=42)).record_id == "42"
    assert check(good_values(order_id=42.0)).record_id == "42"


def test_feedback_labels_must_not_come_with_the_record() -> None:
    spec = a_spec(label={"name": "churned", "type": "integer", "arrival": "feedback"})
    checked = check(good_values(churned=ABSENT), spec)
    assert checked.ok and checked.label is None
    assert failures(good_values(churned=1), spec) == {("churned", "label")}
    assert failures(good_values(churned=None), spec) == {("churned", "label")}


def test_categorical_labels_are_checked_against_their_categories() -> None:
    spec = a_spec(label={"name": "churned", "type": "categorical", "categories": ["no", "yes"]})
    assert check(good_values(churned="yes"), spec).label == "yes"
    assert failures(good_values(churned="perhaps"), spec) == {("churned", "label")}


def test_a_spec_without_label_treats_that_column_as_unexpected() -> None:
    spec = a_spec(label=None)
    assert check(good_values(churned=ABSENT), spec).ok
    assert failures(good_values(), spec) == {("churned", "unexpected_field")}


def test_the_entity_is_the_key_column_as_a_string_and_must_match_the_envelope() -> None:
    assert check(good_values(customer_id=42)).entity == "42"
    assert check(good_values(), entity="c-1").ok
    mismatch = check(good_values(), entity="c-2")
    assert {(e.field, e.rule) for e in mismatch.errors} == {("customer_id", "entity_mismatch")}


def test_a_naive_ingestion_time_is_utc() -> None:
    record = RecordIngested(
        dataset="shop", values=good_values(), ingested_at=NOW.replace(tzinfo=None)
    )
    assert check_record(record, SPEC, "event-1").ok


EXPECTED = a_spec(
    features=[
        {"name": "amount", "type": "numeric", "min": 0, "max": 1000, "expected_max": 200},
        {"name": "items", "type": "integer", "min": 1, "expected_min": 2, "expected_max": 10},
        {"name": "channel", "type": "categorical", "categories": ["web", "store", "7"]},
        {"name": "member", "type": "boolean"},
        {"name": "signup", "type": "timestamp", "nullable": True},
        {"name": "discount", "type": "numeric", "nullable": True, "expected_min": 0.1},
    ]
)


@pytest.mark.parametrize(
    ("changes", "flagged"),
    [
        ({}, []),
        ({"amount": 200}, []),
        ({"amount": 200.5}, ["amount"]),
        ({"amount": "999"}, ["amount"]),
        ({"items": 1}, ["items"]),
        ({"items": 2, "amount": 0}, []),
        ({"items": 11.0}, ["items"]),
        ({"items": 500}, ["items"]),
        ({"discount": 0.05}, ["discount"]),
        ({"discount": None}, []),
        ({"discount": ABSENT}, []),
        ({"amount": 201, "items": 1, "discount": 0}, ["amount", "items", "discount"]),
    ],
)
def test_a_value_outside_the_expected_range_passes_and_is_flagged(
    changes: dict[str, Any], flagged: list[str]
) -> None:
    checked = check(good_values(**changes), EXPECTED)
    assert checked.ok, checked.errors
    assert checked.out_of_range == flagged


@pytest.mark.parametrize(
    ("changes", "failure"),
    [({"amount": 1000.5}, ("amount", "range")), ({"items": 0}, ("items", "range"))],
)
def test_a_value_beyond_a_hard_bound_is_still_rejected_not_flagged(
    changes: dict[str, Any], failure: tuple[str, str]
) -> None:
    checked = check(good_values(**changes), EXPECTED)
    assert {(e.field, e.rule) for e in checked.errors} == {failure}
    assert checked.out_of_range == []
