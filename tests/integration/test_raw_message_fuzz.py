"""Generated raw messages of every shape against one validation service on the real broker.

Hypothesis generates the messages (seeded: `derandomize=True`, so every run publishes the same
ones; bounded by MAX_MESSAGES): random bytes, text that is not UTF-8, lone surrogates and NUL
characters anywhere, deep nesting, big sizes, numbers beyond the float range or past any digit
limit, wrong types, envelopes with broken attributes, odd keys and headers. The whole batch is
published at once to one validation service, then the invariant is checked once:

- each message ends exactly once in data.validated, data.rejected or bus.dead-letter, with a
  reason (a rule and a message, or dlq.reason);
- the service never stops and /live answers 200 throughout.

A failure lists the messages that broke the invariant (key, headers, the head of the value),
so a case found here can be pinned as a unit test.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.events import Event, RecordIngested
from tests.integration.test_validation_bad_input import live_throughout
from tests.integration.test_validation_service import (
    NOW,
    SHOP,
    Platform,
    read_to_end,
    shop_values,
)
from tests.integration.test_validation_service import platform as service_namespace

assert service_namespace  # a fixture: one namespace, its topics and validation, per test

MAX_MESSAGES = 160
BROKER_SAFE_BYTES = 1_000_000  # under the broker's limit, so every message can be published


@dataclass(frozen=True)
class Literal:
    """A JSON number written as is (json.dumps cannot write 1e400 or a 5000-digit integer)."""

    text: str


@dataclass(frozen=True)
class RawMessage:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def describe(self) -> str:
        head = None if self.value is None else self.value[:120]
        return f"key={self.key!r:.60} headers={self.headers!r:.120} value={head!r} ({len(self.value or b'')} bytes)"


def to_json(node: Any) -> str:
    if isinstance(node, Literal):
        return node.text
    if isinstance(node, dict):
        return "{" + ", ".join(f"{to_json(str(k))}: {to_json(v)}" for k, v in node.items()) + "}"
    if isinstance(node, list):
        return "[" + ", ".join(to_json(item) for item in node) + "]"
    return json.dumps(node, allow_nan=True)  # ensure_ascii: surrogates and NUL as \u escapes


odd_characters = st.characters(categories=["Cs", "Cc", "Cf", "Lo", "Ll", "Nd", "Zs"])
texts = st.one_of(
    st.text(max_size=30),
    st.text(odd_characters, max_size=30),
    st.sampled_from(
        ["", "\x00", "\ud800", "a\udfffb", "\ud83d\ude00", "o-\x00-1", " ", "NaN", "inf"]
    ),
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            Literal("1e400"),
            Literal("-1e400"),
            Literal("1e-400"),
            Literal("9" * 5000),
            Literal("-" + "1" * 150),
            Literal("1" + "0" * 400 + ".5"),
            Literal("0." + "0" * 200 + "1"),
            Literal("1.7976931348623157e308"),
            Literal("-0"),
        ]
    ),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(texts, children, max_size=4)
    ),
    max_leaves=12,
)
COLUMNS = list(shop_values("o-0"))


@st.composite
def records(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A shop record (valid or not), and the entity it names."""
    order = f"o-{draw(st.integers(0, 10**9))}"
    customer = f"c-{draw(st.integers(0, 50))}"
    values: dict[str, Any] = shop_values(order, customer=customer)
    changes = draw(
        st.dictionaries(st.one_of(st.sampled_from(COLUMNS), texts), json_values, max_size=3)
    )
    values.update(changes)
    for column in draw(st.lists(st.sampled_from(COLUMNS), max_size=2)):
        values.pop(column, None)
    return values, customer


@st.composite
def bare_records(draw: st.DrawFn) -> tuple[bytes, str]:
    values, entity = draw(records())
    document: dict[str, Any] = {
        "dataset": draw(st.one_of(st.just("shop"), st.just("shop"), texts, numbers)),
        "values": values if draw(st.integers(0, 9)) else draw(json_values),
    }
    if draw(st.booleans()):
        document["entity"] = draw(st.one_of(st.just(entity), texts, st.just("e" * 1001)))
    return to_json(document).encode(), entity


@st.composite
def envelopes(draw: st.DrawFn) -> tuple[bytes, str]:
    values, entity = draw(records())
    record = RecordIngested(dataset="shop", entity=entity, values={}, ingested_at=NOW)
    document = json.loads(Event.create(record, source="fuzz", subject=entity).to_json_bytes())
    document["data"]["values"] = values
    attribute = draw(
        st.sampled_from([None, "id", "type", "time", "subject", "specversion", "data"])
    )
    if attribute is not None:
        if draw(st.booleans()):
            document.pop(attribute)
        else:
            document[attribute] = draw(json_values)
    return to_json(document).encode(), entity


@st.composite
def not_utf8(draw: st.DrawFn) -> tuple[bytes, str]:
    value, entity = draw(bare_records())
    at = draw(st.integers(0, len(value)))
    bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80", b"\xfe\xff"]))
    return value[:at] + bad + value[at:], entity


@st.composite
def deep(draw: st.DrawFn) -> tuple[bytes, str]:
    depth = draw(st.sampled_from([10, 900, 1_100, 50_000, 200_000]))
    nested = "[" * depth + "]" * depth
    if draw(st.booleans()):
        return nested.encode(), ""
    return ('{"dataset": "shop", "values": {"amount": ' + nested + "}}").encode(), ""


@st.composite
def big(draw: st.DrawFn) -> tuple[bytes, str]:
    values, entity = draw(records())
    size = draw(st.sampled_from([70_000, 200_000, 400_000, 600_000, 900_000]))
    if draw(st.booleans()):
        values["note"] = "x" * size
    else:
        for n in range(size // 120):
            values[f"extra_{n}"] = "v" * 100
    return to_json({"dataset": "shop", "values": values}).encode(), entity


raw_values = st.one_of(
    bare_records(),
    bare_records(),
    envelopes(),
    not_utf8(),
    st.binary(max_size=300).map(lambda value: (value, "")),
    json_values.map(lambda node: (to_json(node).encode(), "")),
    deep(),
    big(),
    envelopes(),
    big(),
    bare_records(),
)
headers = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from(["traceparent", "tracestate", "ce_type", "dlq.reason"]),
            st.text(max_size=10),
        ),
        st.one_of(st.binary(max_size=60), st.just(b"00-zz-garbage-01")),
    ),
    max_size=3,
)


@st.composite
def raw_messages(draw: st.DrawFn) -> RawMessage:
    value, entity = draw(raw_values)
    key = draw(
        st.one_of(
            st.just(entity.encode() or None),
            st.none(),
            st.just(b""),
            st.binary(max_size=40),
            st.just(b"k" * 5000),
        )
    )
    tombstone = draw(st.integers(0, 40)) == 23
    return RawMessage(key, None if tombstone else value, draw(headers))


def generated_messages() -> list[RawMessage]:
    collected: list[RawMessage] = []

    @settings(
        max_examples=MAX_MESSAGES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(raw_messages())
    def collect(message: RawMessage) -> None:
        if (
            message.value is None
            or len(message.value) + len(message.key or b"") < BROKER_SAFE_BYTES
        ):
            collected.append(message)

    collect()
    return collected


def publish(platform: Platform, messages: list[RawMessage]) -> None:
    producer = Producer({"bootstrap.servers": platform.bootstrap, "message.max.bytes": 2_000_000})
    for message in messages:
        producer.produce(
            platform.topic("data.raw"),
            value=message.value,
            key=message.key,
            headers=message.headers,
        )
    assert producer.flush(60) == 0


def where_each_ended(platform: Platform) -> dict[tuple[int, int], list[str]]:
    """For each raw position, the outputs naming it: 'validated', 'rejected:<rules>' or
    'dead-letter:<reason>'; an output without a reason is listed as such."""
    ended: dict[tuple[int, int], list[str]] = defaultdict(list)
    for name in ("data.validated", "data.rejected"):
        for message in read_to_end(platform.bootstrap, platform.topic(name)):
            data = json.loads(message.value)["data"]
            position = (data["source"]["partition"], data["source"]["offset"])
            if name == "data.validated":
                ended[position].append("validated")
                continue
            reasons = [e["rule"] for e in data["errors"] if e.get("rule") and e.get("message")]
            ended[position].append(
                f"rejected:{','.join(reasons)}" if reasons else "rejected WITHOUT REASON"
            )
    for letter in read_to_end(platform.bootstrap, platform.topic("bus.dead-letter")):
        headers = {k: v.decode(errors="replace") for k, v in letter.headers or ()}
        position = (int(headers["dlq.original.partition"]), int(headers["dlq.original.offset"]))
        reason = headers.get("dlq.reason")
        ended[position].append(f"dead-letter:{reason}" if reason else "dead-letter WITHOUT REASON")
    return ended


def test_every_raw_message_ends_exactly_once_with_a_reason_and_validation_never_stops(
    service_namespace: Platform,
) -> None:
    platform = service_namespace
    messages = generated_messages()
    assert len(messages) >= MAX_MESSAGES * 0.8, "hypothesis generated the whole batch"
    platform.register(SHOP)
    service = platform.start()
    with live_throughout(platform) as seen:
        publish(platform, messages)
        platform.wait_all_handled(len(messages), timeout_s=120)
    assert service.poll() is None, "validation is still running"
    assert seen and set(seen) == {200}, f"/live answered {sorted(set(seen))}"

    raw = read_to_end(platform.bootstrap, platform.topic("data.raw"))
    assert len(raw) == len(messages)
    by_value: dict[bytes | None, list[RawMessage]] = defaultdict(list)
    for message in messages:
        by_value[message.value].append(message)
    ended = where_each_ended(platform)
    broken = []
    for message in raw:
        outcomes = ended.pop((message.partition, message.offset), [])
        if len(outcomes) != 1 or "WITHOUT REASON" in outcomes[0]:
            sent = by_value.get(message.value, [])
            shown = sent[0].describe() if sent else repr(message.value[:120])
            broken.append(f"{message.partition}@{message.offset}: {outcomes} for {shown}")
    assert not ended, f"outputs naming no raw message: {ended}"
    assert not broken, "\n".join(broken[:20])
    kinds: dict[int, int] = defaultdict(int)
    for message in raw:
        kinds[math.floor(math.log10(len(message.value or b"") + 1))] += 1
    assert len(kinds) >= 4, f"sizes from bytes to hundreds of KB: {dict(kinds)}"
