import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared.events import Event, RecordIngested
from shared.events.codec import (
    EventDecoder,
    InvalidJson,
    PayloadTooLarge,
    SchemaViolation,
    UnexpectedEventType,
)


def a_record(**values: object) -> RecordIngested:
    return RecordIngested(
        dataset="loans", entity="c-1", values=values or {"age": 41}, ingested_at=datetime.now(UTC)
    )


def test_new_event_starts_its_own_correlation() -> None:
    event = Event.create(a_record(), source="ingestion", subject="c-1")
    assert event.correlationid == event.id
    assert event.causationid is None
    assert event.type == "mlops.RecordIngested"
    assert event.specversion == "1.0"


def test_event_caused_by_another_carries_its_correlation_and_names_its_cause() -> None:
    first = Event.create(a_record(), source="ingestion")
    second = Event.create(a_record(), source="validation", caused_by=first)
    third = Event.create(a_record(), source="features", caused_by=second)
    assert second.causationid == first.id
    assert third.causationid == second.id
    assert third.correlationid == first.id


def test_event_round_trips_through_json_with_its_typed_payload() -> None:
    event = Event.create(a_record(age=41, income=52_000.5, owner=True), source="ingestion")
    decoded = EventDecoder([RecordIngested], max_bytes=10_000).decode(event.to_json_bytes())
    assert decoded == event
    assert isinstance(decoded.data, RecordIngested)
    assert decoded.data.values == {"age": 41, "income": 52_000.5, "owner": True}


def test_type_attribute_must_name_the_payload() -> None:
    with pytest.raises(ValidationError, match="does not match payload type"):
        Event[RecordIngested](source="x", type="mlops.Other", data=a_record())


def test_payload_ignores_fields_it_does_not_know_so_old_readers_accept_new_writers() -> None:
    event = Event.create(a_record(), source="ingestion")
    document = event.model_dump(mode="json")
    document["data"]["added_in_a_later_version"] = 1
    document["added_attribute"] = "x"
    decoded = EventDecoder([RecordIngested], 10_000).decode(json.dumps(document).encode())
    assert decoded.id == event.id
    assert decoded.data == event.data


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (b"not json at all", InvalidJson, "Invalid JSON"),
        (b'{"id": 1}', SchemaViolation, "source: Field required"),
        (
            b'{"specversion": "1.0", "source": "s", "type": "mlops.RecordIngested", "data": {}}',
            SchemaViolation,
            "data.dataset: Field required",
        ),
        (b"x" * 2_000, PayloadTooLarge, "2000 bytes exceeds the limit of 1000"),
        (None, SchemaViolation, "tombstone"),
    ],
)
def test_decoder_refuses_bad_values_with_a_reason(
    value: bytes | None, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        EventDecoder([RecordIngested], max_bytes=1_000).decode(value)


def test_multi_type_decoder_names_the_types_it_expected() -> None:
    class Other(RecordIngested):
        event_type = "mlops.Other"

    decoder = EventDecoder([RecordIngested, Other], max_bytes=10_000)
    other = Event.create(Other(**a_record().model_dump()), source="x")
    assert isinstance(decoder.decode(other.to_json_bytes()).data, Other)
    with pytest.raises(UnexpectedEventType, match=r"mlops\.Other, mlops\.RecordIngested"):
        decoder.decode(b'{"type": "mlops.Unknown"}')
    with pytest.raises(InvalidJson):
        decoder.decode(b"{oops")


def test_non_finite_values_stay_non_finite_on_the_wire_instead_of_becoming_null() -> None:
    event = Event.create(a_record(ratio=float("nan"), limit=float("inf")), source="ingestion")
    decoded = EventDecoder([RecordIngested], max_bytes=10_000).decode(event.to_json_bytes())
    assert decoded.data.values["ratio"] != decoded.data.values["ratio"]  # NaN
    assert decoded.data.values["limit"] == float("inf")
