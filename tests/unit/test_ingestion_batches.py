"""Request bodies into rows and labels: only the shape is checked, and every refusal says where."""

import math
import re
from datetime import UTC, datetime

import pytest

from services.ingestion.domain.batches import (
    MAX_LISTED_ERRORS,
    check_entity_keys,
    parse_json,
    parse_label_batch,
    parse_record_batch,
)
from services.ingestion.domain.errors import (
    EmptyBatch,
    InvalidLabel,
    InvalidNumber,
    InvalidRow,
    MalformedBody,
    NotABatch,
)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"records": [', "malformed JSON: the body ends before the JSON document does"),
        (b"", "malformed JSON: the body is empty"),
        (b"  \n", "malformed JSON: the body is empty"),
        (b"[1,]", "a value is missing or is not JSON at line 1 column 4 (char 3)"),
        (b"{'a': 1}", "Expecting property name enclosed in double quotes at line 1 column 2"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_a_body_that_is_not_json_is_malformed_with_the_parsers_message(
    body: bytes, message: str
) -> None:
    with pytest.raises(MalformedBody, match=re.escape(message)) as refused:
        parse_json(body)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"a": 1e400}', "the number 1e400 is out of float range"),
        (b'{"a": -2.5E+999}', "the number -2.5E+999 is out of float range"),
        (b'{"a": ' + b"7" * 5000 + b"}", "an integer with 5000 digits, more than 4300"),
    ],
)
def test_a_number_no_service_can_hold_is_refused_saying_why(body: bytes, message: str) -> None:
    with pytest.raises(InvalidNumber, match=re.escape(message)) as refused:
        parse_json(body)
    assert refused.value.status == 422 and "set_int_max_str_digits" not in refused.value.message


def test_nan_and_infinity_literals_and_large_numbers_in_float_range_are_values() -> None:
    document = parse_json(b"[NaN, Infinity, 1e308, " + b"9" * 4300 + b"]")
    assert math.isnan(document[0]) and document[1] == math.inf and document[2] == 1e308
    assert len(str(document[3])) == 4300


def test_a_batch_keeps_rows_exactly_as_received() -> None:
    rows = [{"a": 1, "b": "x", "c": None, "d": True, "e": 2.5}, {}]
    assert parse_record_batch({"records": rows}) == rows
    assert type(parse_record_batch({"records": [{"n": 1}]})[0]["n"]) is int


@pytest.mark.parametrize(
    ("document", "refusal", "message"),
    [
        ([{"a": 1}], NotABatch, 'must be a JSON object {"records"'),
        ({"rows": []}, NotABatch, 'no "records" field'),
        ({"records": [], "extra": 1}, NotABatch, r"unexpected fields \['extra'\]"),
        ({"records": {"a": 1}}, NotABatch, '"records" must be a list, not a JSON object'),
        ({"records": []}, EmptyBatch, "empty"),
    ],
)
def test_what_is_not_a_batch_is_refused(document: object, refusal: type, message: str) -> None:
    with pytest.raises(refusal, match=message) as refused:
        parse_record_batch(document)
    assert refused.value.status == 422


def test_rows_that_are_not_objects_and_values_that_are_not_scalars_are_named() -> None:
    with pytest.raises(InvalidRow) as refused:
        parse_record_batch({"records": [{"ok": 1}, [1, 2], {"a": 1, "where": {"x": 1}}]})
    body = refused.value.body()
    assert body["detail"].startswith("records[1] is a JSON array, not an object")
    assert "(and 1 more problem)" in body["detail"]
    assert body["errors"] == [
        {"index": 1, "column": None, "message": "records[1] is a JSON array, not an object"},
        {
            "index": 2,
            "column": "where",
            "message": "records[2].where is a JSON object, not a scalar "
            "(string, number, boolean or null)",
        },
    ]
    assert body["error_count"] == 2


def test_a_batch_full_of_problems_lists_the_first_ones_and_counts_all() -> None:
    with pytest.raises(InvalidRow) as refused:
        parse_record_batch({"records": [1] * 100})
    assert len(refused.value.extra["errors"]) == MAX_LISTED_ERRORS
    assert refused.value.extra["error_count"] == 100


def test_an_entity_too_long_for_a_key_is_refused_with_its_row() -> None:
    check_entity_keys([{"id": "x" * 1000}], "id")
    with pytest.raises(InvalidRow, match=r"rows\[12\]\.id: the entity key is 1001"):
        check_entity_keys([{"id": "x" * 1001}], "id", label="rows", offset=12)


def test_labels_parse_with_their_optional_time_and_entity() -> None:
    labels = parse_label_batch(
        {
            "labels": [
                {"record_id": "r1", "label": 1},
                {"record_id": 42, "label": "yes", "labelled_at": "2024-01-02T03:04:05Z"},
                {"record_id": "r3", "label": False, "labelled_at": "2024-01-02T03:04:05"},
                {"record_id": "r4", "label": 0.5, "entity": 7},
            ]
        }
    )
    assert [label.record_id for label in labels] == ["r1", "42", "r3", "r4"]
    assert labels[0].labelled_at is None
    assert labels[1].labelled_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert labels[2].labelled_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "naive is UTC"
    assert labels[3].entity == "7"
    assert labels[2].label is False


@pytest.mark.parametrize(
    ("label", "column", "message"),
    [
        ({"label": 1}, "record_id", "record_id is required"),
        ({"record_id": "", "label": 1}, "record_id", "record_id is required"),
        ({"record_id": True, "label": 1}, "record_id", "record_id is required"),
        ({"record_id": "r"}, "label", "label is required"),
        ({"record_id": "r", "label": None}, "label", "label is required"),
        ({"record_id": "r", "label": [1]}, "label", "label is a JSON array, not a scalar"),
        ({"record_id": "r", "label": 1, "labelled_at": "soon"}, "labelled_at", "not an ISO"),
        ({"record_id": "r", "label": 1, "labelled_at": 5}, "labelled_at", "not an ISO"),
        ({"record_id": "r", "label": 1, "entity": {}}, "entity", "string or a number"),
        ({"record_id": "r", "label": 1, "extra": 1}, "extra", "unexpected field 'extra'"),
    ],
)
def test_a_bad_label_is_refused_naming_its_index_and_field(
    label: dict, column: str, message: str
) -> None:
    with pytest.raises(InvalidLabel, match=message) as refused:
        parse_label_batch({"labels": [{"record_id": "fine", "label": 1}, label]})
    first = refused.value.extra["errors"][0]
    assert (first["index"], first["column"]) == (1, column)


def test_a_label_batch_has_the_labels_shape() -> None:
    with pytest.raises(NotABatch, match='"labels"'):
        parse_label_batch({"records": []})
    with pytest.raises(EmptyBatch):
        parse_label_batch({"labels": []})


def test_non_finite_numbers_pass_through_for_validation_to_reject() -> None:
    document = parse_json(b'{"records": [{"a": NaN, "b": Infinity}]}')
    value = document["records"][0]
    assert value["a"] != value["a"]
    assert value["b"] == float("inf")
