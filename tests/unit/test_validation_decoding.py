"""The raw topic's decoder: envelopes, bare records (kcat), and junk that is never dropped."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime

import pytest

from services.validation.domain.decoding import MalformedRaw, RawDecoder, position_id
from shared.events import Event, RecordIngested
from shared.kafka.consumer import MessageInfo

INFO = MessageInfo(
    topic="ns.data.raw", partition=2, offset=41, key=b"c-1", timestamp_ms=1714564800123
)
DECODER = RawDecoder(max_bytes=2000)


def decode(value: bytes | None, info: MessageInfo = INFO) -> Event:
    return DECODER.decode(value, info)


def test_an_envelope_keeps_its_own_id_and_fields() -> None:
    record = RecordIngested(
        dataset="shop",
        entity="c-1",
        values={"amount": 3.5},
        ingested_at=datetime(2024, 5, 1, tzinfo=UTC),
        spec_version=2,
    )
    sent = Event.create(record, source="ingestion", subject="c-1")
    decoded = decode(sent.to_json_bytes())
    assert decoded.id == sent.id
    assert decoded.data == record


def test_a_bare_record_gets_an_id_from_its_position_and_the_kafka_time() -> None:
    value = json.dumps({"dataset": "shop", "values": {"amount": 1}, "entity": "c-1"}).encode()
    decoded = decode(value)
    assert isinstance(decoded.data, RecordIngested)
    assert decoded.id == str(uuid.uuid5(uuid.NAMESPACE_URL, "ns.data.raw/2/41"))
    assert decoded.id == position_id("ns.data.raw", 2, 41)
    assert decoded.data.ingested_at == datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert decoded.data.values == {"amount": 1}
    assert decoded.data.entity == "c-1" and decoded.data.spec_version is None
    assert decode(value).id == decoded.id, "a redelivery keeps the id"
    moved = MessageInfo("ns.data.raw", 2, 42, None, 1714564800123)
    assert decode(value, moved).id != decoded.id, "another message is another record"


def test_json_nan_and_infinity_tokens_reach_the_rules_as_floats() -> None:
    decoded = decode(b'{"dataset": "shop", "values": {"a": NaN, "b": Infinity, "c": -Infinity}}')
    values = decoded.data.values
    assert math.isnan(values["a"]) and values["b"] == math.inf and values["c"] == -math.inf


@pytest.mark.parametrize(
    ("value", "reason", "dataset"),
    [
        (None, "tombstone", None),
        (b"", "not JSON", None),
        (b"hello there", "not JSON", None),
        (b"\xff\xfe\x00garbage", "not UTF-8", None),
        (b"NaN", "not a JSON object but float", None),
        (b"[1, 2]", "not a JSON object but list", None),
        (b'"shop"', "not a JSON object but str", None),
        (b'{"dataset": NaN, "values": {}}', "dataset", None),
        (b'{"dataset": "shop", "values": NaN}', "values", "shop"),
        (b'{"dataset": "shop"}', "values", "shop"),
        (b'{"dataset": "shop", "values": {"a": [1]}}', "values.a", "shop"),
        (b'{"dataset": "shop", "values": {}, "colour": 1}', "colour", "shop"),
        (b'{"values": {}}', "dataset", None),
        (b'{"type": "mlops.Other", "data": {"dataset": "shop"}}', "mlops.Other", "shop"),
        (b'{"type": "mlops.RecordIngested", "data": {"dataset": "shop"}}', "envelope", "shop"),
        (b'{"specversion": "1.0"}', "None", None),
    ],
)
def test_anything_else_becomes_a_malformed_event_with_the_reason(
    value: bytes | None, reason: str, dataset: str | None
) -> None:
    decoded = decode(value)
    assert isinstance(decoded.data, MalformedRaw)
    assert reason in decoded.data.reason
    assert decoded.data.dataset == dataset
    assert decoded.id == position_id("ns.data.raw", 2, 41)


def test_deeply_nested_junk_is_malformed_not_a_crash() -> None:
    decoded = RawDecoder(max_bytes=1_000_000).decode(b"[" * 100_000 + b"]" * 100_000, INFO)
    assert isinstance(decoded.data, MalformedRaw)
    assert "nested too deeply" in decoded.data.reason


def test_an_oversized_message_is_malformed_without_being_parsed() -> None:
    value = json.dumps({"dataset": "shop", "values": {"a": "x" * 3000}}).encode()
    decoded = decode(value)
    assert isinstance(decoded.data, MalformedRaw)
    assert "exceeds the limit of 2000" in decoded.data.reason and decoded.data.dataset is None


def test_a_malformed_record_keeps_the_values_that_can_be_shown() -> None:
    decoded = decode(b'{"dataset": "shop", "values": {"a": [1], "b": 2, "c": NaN}, "x": 1}')
    assert isinstance(decoded.data, MalformedRaw)
    assert decoded.data.values == {"b": 2, "c": "NaN"}


def test_a_message_without_kafka_time_is_ingested_now() -> None:
    info = MessageInfo("ns.data.raw", 0, 0, None, None)
    before = datetime.now(UTC)
    decoded = decode(b'{"dataset": "shop", "values": {}}', info)
    assert decoded.data.ingested_at >= before


def test_the_decoder_needs_the_message_position() -> None:
    with pytest.raises(TypeError, match="position"):
        DECODER.decode(b"{}")
