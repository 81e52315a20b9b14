"""Values no store or output can carry are rejection rules, decided before any store sees
them; and a rejection stays within its size bound whatever the record held."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.validation.domain.rejections import MAX_TEXT, bounded
from shared.events import Event, RecordRejected
from shared.events.records import FieldError, SourcePosition
from shared.kafka.consumer import Emit, MessageInfo
from shared.settings import PlatformSettings
from tests.unit.test_validation_handler import NOW, TOPIC, Harness, envelope
from tests.unit.test_validation_rules import good_values

REJECTION_BYTES = PlatformSettings().max_rejection_bytes


def send(harness: Harness, value: bytes, key: bytes | None = None, offset: int = 0) -> Emit:
    info = MessageInfo(TOPIC, 0, offset, key, int(NOW.timestamp() * 1000))
    [emit] = harness.validator.handle(harness.decoder.decode(value, info), info)
    emit.event.to_json_bytes()  # every output can be published
    return emit


def bare_text(values: str) -> bytes:
    """A bare record whose values object is given as JSON text (to hold any escape)."""
    return b'{"dataset": "shop", "values": ' + values.encode() + b"}"


def with_value(name: str, literal: str) -> bytes:
    values = json.dumps(good_values())
    return bare_text(values[:-1] + f', "{name}": {literal}' + "}")


def replacing(name: str, literal: str) -> bytes:
    values = {k: v for k, v in good_values().items() if k != name}
    return bare_text(json.dumps(values)[:-1] + f', "{name}": {literal}' + "}")


CASES: dict[str, tuple[bytes, bytes | None, tuple[str | None, str]]] = {
    "NUL in the record id": (replacing("order_id", '"o\\u0000-1"'), None, ("order_id", "nul_character")),
    "NUL in a column name": (with_value("col\\u0000", "1"), None, ("col\\u0000", "nul_character")),
    "lone surrogate in a value": (replacing("channel", '"\\ud800"'), None, ("channel", "lone_surrogate")),
    "lone surrogate in the entity": (replacing("customer_id", '"c-\\udfff"'), None, ("customer_id", "lone_surrogate")),
    "bytes that are not UTF-8": (replacing("channel", '"web\xff"'.encode("latin-1").decode("latin-1")).replace(b"web\xc3\xbf", b"web\xff"), None, (None, "not_utf8")),
    "a number beyond the float range": (replacing("amount", "1e400"), None, ("amount", "number_overflow")),
    "an integer past the digit limit": (replacing("items", "9" * 5000), None, ("items", "number_too_long")),
    "a record id over 200 characters": (replacing("order_id", json.dumps("o" * 201)), None, ("order_id", "too_long")),
    "an entity key over 1000 characters": (replacing("customer_id", json.dumps("c" * 1001)), None, ("customer_id", "too_long")),
    "a Kafka key naming another entity": (replacing("customer_id", '"c-1"'), b"c-2", ("customer_id", "key_mismatch")),
}  # fmt: skip


@pytest.mark.parametrize(("value", "key", "expected"), CASES.values(), ids=CASES.keys())
def test_each_data_error_is_a_named_rule_decided_before_any_store(
    value: bytes, key: bytes | None, expected: tuple[str | None, str]
) -> None:
    harness = Harness()
    emit = send(harness, value, key)
    assert emit.topic == "data.rejected"
    rejected = emit.event.data
    assert isinstance(rejected, RecordRejected)
    assert expected in {(e.field, e.rule) for e in rejected.errors}
    assert all(e.message for e in rejected.errors)
    assert rejected.dataset == "shop"
    assert harness.ids._claims == {}, "the record id store never saw the record"
    assert harness.stats.snapshot("shop")["rejected_by_rule"][expected[1]] == 1


def test_the_reasons_are_clear_not_python_advice() -> None:
    harness = Harness()
    long_int = send(harness, replacing("items", "9" * 5000)).event.data.errors[0]
    assert "5000 digits" in long_int.message and "set_int_max_str_digits" not in long_int.message
    overflow = send(harness, replacing("amount", "1e400"), offset=1).event.data.errors[0]
    assert "1e400" in overflow.message and "Infinity" not in overflow.message
    assert overflow.value == "1e400"


def test_a_nul_anywhere_in_an_envelope_is_rejected_too() -> None:
    sent = json.loads(envelope(good_values()).to_json_bytes())
    sent["id"] = "id-with-\x00"
    emit = send(Harness(), json.dumps(sent).encode())
    [problem] = emit.event.data.errors
    assert (problem.field, problem.rule) == (None, "nul_character")
    assert problem.message.startswith("id ")


@pytest.mark.parametrize("key", [None, b"", b"c-1"], ids=["no key", "empty key", "entity key"])
def test_a_message_keyed_by_its_entity_or_not_keyed_is_validated(key: bytes | None) -> None:
    emit = send(Harness(), json.dumps({"dataset": "shop", "values": good_values()}).encode(), key)
    assert emit.topic == "data.validated"


def test_a_key_that_is_not_utf8_is_a_mismatch() -> None:
    value = json.dumps({"dataset": "shop", "values": good_values()}).encode()
    rules = {e.rule for e in send(Harness(), value, b"\xff\xfe").event.data.errors}
    assert rules == {"key_mismatch"}


def many_unexpected(total_bytes: int) -> bytes:
    """A record with many long unexpected columns, as the issue's 184 KB and 314 KB ones."""
    values: dict[str, Any] = good_values()
    n = 0
    while len(json.dumps(values)) < total_bytes:
        values[f"extra_{n}"] = "x" * 200
        n += 1
    return json.dumps({"dataset": "shop", "values": values}).encode()


@pytest.mark.parametrize("size", [184_000, 314_000, 500_000], ids=lambda s: f"{s // 1000}KB")
def test_a_large_record_is_rejected_within_the_bound_with_a_note(size: int) -> None:
    harness = Harness()
    harness.validator._deps.max_rejection_bytes = REJECTION_BYTES
    harness.decoder.max_bytes = PlatformSettings().max_record_bytes
    emit = send(harness, many_unexpected(size))
    assert len(emit.event.to_json_bytes()) <= REJECTION_BYTES
    rejected = emit.event.data
    assert rejected.truncated is not None and "left out" in rejected.truncated
    assert rejected.errors[0].rule == "unexpected_field"


def test_a_small_rejection_is_left_as_it_is() -> None:
    emit = send(
        Harness(), json.dumps({"dataset": "shop", "values": good_values(items=99)}).encode()
    )
    assert emit.event.data.truncated is None


def rejection(values: dict[str, Any], errors: int = 1) -> RecordRejected:
    return RecordRejected(
        dataset="shop",
        values=values,
        errors=[FieldError(field="a", rule="type", message="m") for _ in range(errors)],
        source=SourcePosition(topic="t", partition=0, offset=0),
    )


def test_long_texts_are_cut_saying_how_much() -> None:
    summary = bounded(rejection({"a": "y" * 50_000}), 20_000)
    shown = summary.values["a"]
    assert isinstance(shown, str) and shown.startswith("y" * MAX_TEXT)
    assert f"{50_000 - MAX_TEXT} more characters" in shown
    assert summary.truncated is not None and "1 texts cut" in summary.truncated


def test_long_lists_keep_their_head_and_say_how_many_were_left_out() -> None:
    summary = bounded(rejection({f"c{i}": i for i in range(20_000)}, errors=20_000), 50_000)
    assert len(summary.model_dump_json()) < 50_000
    assert 0 < len(summary.errors) < 20_000 and list(summary.values)[:1] in ([], ["c0"])
    assert summary.truncated is not None and "of 20000 errors left out" in summary.truncated
    Event.create(summary, source="validation").to_json_bytes()


@pytest.mark.parametrize(
    "value",
    [
        b"\xef\xbb\xbf" + json.dumps({"dataset": "shop", "values": good_values()}).encode(),
        json.dumps({"dataset": "shop", "values": good_values()}).encode(),
        json.dumps(
            {"dataset": "shop", "values": good_values(amount=999.0, discount=1e-300)}
        ).encode(),
        json.dumps({"dataset": "shop", "values": good_values(items=10)}).encode(),
    ],
    ids=["UTF-8 byte order mark", "plain", "tiny and large finite numbers", "small integer"],
)
def test_ordinary_records_pass_the_byte_rules(value: bytes) -> None:
    assert send(Harness(), value, b"c-1").topic == "data.validated"


def test_escaped_text_that_only_looks_like_an_escape_is_no_finding() -> None:
    """A backslash followed by u0000 as text (an escaped backslash) is four characters, no NUL."""
    value = json.dumps({"dataset": "shop", "values": good_values(order_id="o-\\u0000")}).encode()
    emit = send(Harness(), value, b"c-1")
    assert emit.topic == "data.validated"
    assert emit.event.data.record_id == "o-\\u0000"


def test_json_nan_tokens_are_still_the_not_finite_rule() -> None:
    value = bare_text(json.dumps(good_values())[:-1] + ', "discount": Infinity}')
    rules = {(e.field, e.rule) for e in send(Harness(), value).event.data.errors}
    assert rules == {("discount", "not_finite")}


@pytest.mark.parametrize("form", ["bare", "envelope"])
def test_an_entity_over_the_subject_limit_in_the_message_is_too_long(form: str) -> None:
    if form == "bare":
        document = {"dataset": "shop", "values": good_values(), "entity": "e" * 1001}
    else:
        document = json.loads(envelope(good_values()).to_json_bytes())
        document["data"]["entity"] = "e" * 1001
    [problem] = send(Harness(), json.dumps(document).encode()).event.data.errors
    assert (problem.field, problem.rule) == (None, "too_long")
    assert "at most 1000 characters" in problem.message
