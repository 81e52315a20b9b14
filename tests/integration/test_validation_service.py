"""The validation service against the real broker, run as `python -m services.validation`.

Each test gets its own topic namespace (the whole catalog), registers its dataset specs with
SpecRegistry.register, publishes raw records with the shared producer (envelopes) and kcat
(bare records and junk), and checks what comes out of data.validated and data.rejected.
The record-id store is the platform's database (PostgreSQL under `make test`), in a table
named after the namespace, dropped afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import create_engine

from services.validation.adapters.record_ids import record_ids_table, table_name
from shared.datasets.infer import infer_spec
from shared.datasets.registry import SpecRegistry
from shared.datasets.sources import breast_cancer_records
from shared.datasets.spec import DatasetSpec, shipped_specs
from shared.datasets.values import wire
from shared.events import Event, RecordIngested
from shared.kafka.config import client_config, producer_config
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.kafka.topics import TopicCatalog, ensure_topics
from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import committed_total, stable_members, unique_name
from tests.waiting import wait_until

KCAT = shutil.which("kcat") or "kcat"
PARTITIONS = TopicCatalog.load()["data.raw"].partitions
SHOP = DatasetSpec.model_validate(
    {
        "name": "shop",
        "entity_key": "customer_id",
        "event_time": "ts",
        "record_id": "order_id",
        "features": [
            {"name": "amount", "type": "numeric", "min": 0, "max": 1000},
            {"name": "items", "type": "integer", "min": 1, "max": 50},
            {"name": "channel", "type": "categorical", "categories": ["web", "store", "7"]},
            {"name": "member", "type": "boolean"},
            {"name": "discount", "type": "numeric", "nullable": True},
        ],
        "label": {"name": "churned", "type": "integer", "categories": ["0", "1"]},
    }
)
LOANS = next(spec for spec in shipped_specs() if spec.name == "loans")


@dataclass
class Message:
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    def json(self) -> dict[str, Any]:
        return json.loads(self.value)


def read_to_end(bootstrap: str, topic: str) -> list[Message]:
    """Every message of a topic up to its current end, in partition and offset order."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("reader"),
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in partitions
        }
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in pending])
        messages: list[Message] = []

        def drained() -> bool:
            for m in consumer.consume(1000, 0.5):
                if m.error() is None:
                    messages.append(Message(m.partition(), m.offset(), m.key(), m.value()))
                    if m.offset() + 1 >= ends[m.partition()]:
                        pending.discard(m.partition())
            return not pending

        wait_until(drained, what=f"{topic} read to its end", timeout_s=60, interval_s=0)
    finally:
        consumer.close()
    return sorted(messages, key=lambda m: (m.partition, m.offset))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.TransportError:
        return None


@dataclass
class Platform:
    """One test's namespace: its topics, spec registry, producer, and validation processes."""

    namespace: str
    settings: PlatformSettings
    bootstrap: str
    env: dict[str, str]
    logs: Path
    producer: EventProducer = field(init=False)
    port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.producer = EventProducer(producer_config(self.settings, "validation-test"))

    def topic(self, name: str) -> str:
        return TopicCatalog.load().name(name, self.namespace)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def group(self) -> str:
        return f"{self.namespace}.validation"

    def register(self, *specs: DatasetSpec) -> None:
        registry = SpecRegistry(
            client_config(self.settings, "validation-test"), self.topic("data.specs"), "test"
        )
        for spec in specs:
            registry.register(spec, self.producer)

    def start(self, port: int | None = None, **extra_env: str) -> subprocess.Popen:
        """A validation process on `port` (default the namespace's); several share the group."""
        port = port or self.port
        log = (self.logs / f"validation-{len(self.processes)}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "services.validation"],
            env={
                **self.env,
                "MLOPS_NAMESPACE": self.namespace,
                "MLOPS_VALIDATION_PORT": str(port),
                "MLOPS_VALIDATION_SQLITE_PATH": str(self.logs / "validation.sqlite"),
                **extra_env,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"validation exited: {self.output_of(process)[-3000:]}")
            response = get(f"http://127.0.0.1:{port}/ready")
            return response is not None and response.status_code == 200

        try:
            wait_until(ready, what="validation /ready", timeout_s=60)
        except AssertionError as late:
            readiness = get(f"http://127.0.0.1:{port}/ready")
            raise AssertionError(f"{late}; /ready said {readiness and readiness.text}") from None
        return process

    def output_of(self, process: subprocess.Popen) -> str:
        return (self.logs / f"validation-{self.processes.index(process)}.log").read_text()

    def publish_envelopes(self, events: list[tuple[str, Event[RecordIngested]]]) -> None:
        raw = self.topic("data.raw")
        self.producer.publish_confirmed(OutgoingMessage.for_event(raw, e, key) for key, e in events)

    def publish_with_kcat(self, lines: list[tuple[str, bytes]]) -> None:
        payload = b"".join(key.encode() + b"\t" + value + b"\n" for key, value in lines)
        produced = subprocess.run(
            [KCAT, "-b", self.bootstrap, "-t", self.topic("data.raw"), "-P", "-K", "\t"],
            input=payload,
            capture_output=True,
            timeout=60,
        )
        assert produced.returncode == 0, produced.stderr.decode()

    def wait_all_handled(self, raw_count: int, timeout_s: float = 120) -> None:
        wait_until(
            lambda: (
                committed_total(self.bootstrap, self.group, self.topic("data.raw"), PARTITIONS)
                >= raw_count
            ),
            what=f"validation to commit all {raw_count} raw offsets",
            timeout_s=timeout_s,
            interval_s=0.5,
        )

    def stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        assert process.returncode in (0, -signal.SIGKILL), self.output_of(process)[-3000:]


@pytest.fixture
def platform(
    settings: PlatformSettings,
    admin: AdminClient,
    bootstrap: str,
    subprocess_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[Platform]:
    namespace = unique_name("val").replace("-", "")
    catalog = TopicCatalog.load()
    ensure_topics(admin, list(catalog.specs.values()), namespace)
    running = Platform(namespace, settings, bootstrap, subprocess_env, tmp_path)
    try:
        yield running
    finally:
        for process in running.processes:
            if process.poll() is None:
                process.kill()
                process.wait(30)
        admin.delete_topics(
            [spec.full_name(namespace) for spec in catalog.specs.values()], operation_timeout=30
        )
        url = settings.database_url_or_sqlite(str(tmp_path / "validation.sqlite"))
        record_ids_table(table_name(namespace)).drop(create_engine(url), checkfirst=True)


# --- the mixed batch -------------------------------------------------------------------------

NOW = datetime.now(UTC).replace(microsecond=0)
ABSENT = object()


def shop_values(order: str, customer: str = "c-1", **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "customer_id": customer,
        "order_id": order,
        "ts": (NOW - timedelta(minutes=5)).isoformat(),
        "amount": 10.0,
        "items": 2,
        "channel": "web",
        "member": True,
        "churned": 0,
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not ABSENT}


def envelope(values: dict[str, Any], dataset: str = "shop", **fields: Any) -> Event[RecordIngested]:
    record = RecordIngested(dataset=dataset, values=values, ingested_at=datetime.now(UTC), **fields)
    return Event.create(record, source="validation-test")


def bare(values: dict[str, Any], dataset: str = "shop") -> bytes:
    return json.dumps({"dataset": dataset, "values": values}).encode()


@dataclass
class Case:
    """A raw message and what validation must make of it."""

    name: str
    key: str
    value: bytes
    rejected: set[tuple[str | None, str]] = field(default_factory=set)
    typed: dict[str, Any] | None = None  # for validated ones: the typed values expected
    stats_of: str | None = None  # the dataset whose statistics count it
    received: dict[str, Any] | None = None  # the record's values as published

    @property
    def feature_values(self) -> dict[str, Any] | None:
        """What the statistics see: the values of records of a known dataset."""
        return self.received if self.stats_of is not None else None


def mixed_batch() -> tuple[list[tuple[Case, Event[RecordIngested]]], list[Case]]:
    """Envelopes for the shared producer, and lines for kcat (bare records and junk)."""
    e_valid = envelope(shop_values("o-1"))
    coerced = shop_values(
        "o-2", customer="c-2", amount="12.5", items=3.0, channel=7, member="false", discount=None
    )
    envelopes = [
        (Case("valid", "c-1", b"", typed={"amount": 10.0, "items": 2, "channel": "web",
                                         "member": True, "discount": None}), e_valid),
        (Case("coerced", "c-2", b"", typed={"amount": 12.5, "items": 3, "channel": "7",
                                           "member": False, "discount": None}),
         envelope(coerced)),
        (Case("several errors", "c-3", b"", rejected={("amount", "range"), ("channel", "category"),
                                                      ("colour", "unexpected_field")}),
         envelope(shop_values("o-3", customer="c-3", amount=-5, channel="mail", colour="red"))),
        (Case("same record id", "c-1", b"", rejected={("order_id", "duplicate_id")}),
         envelope(shop_values("o-1", amount=11))),
        (Case("same envelope again", "c-1", b"", rejected={("order_id", "duplicate_id")}), e_valid),
        (Case("future", "c-4", b"", rejected={("ts", "future_time")}),
         envelope(shop_values("o-4", customer="c-4", ts=(NOW + timedelta(days=1)).isoformat()))),
        (Case("unknown version", "c-5", b"", rejected={(None, "unknown_version")}),
         envelope(shop_values("o-5", customer="c-5"), spec_version=99)),
        (Case("unknown dataset", "c-6", b"", rejected={(None, "unknown_dataset")}),
         envelope(shop_values("o-6", customer="c-6"), dataset="nope")),
        (Case("no entity", "c-7", b"", rejected={("customer_id", "required")}),
         envelope(shop_values("o-7", customer=ABSENT))),
        (Case("feedback label sent along", "a-1", b"", rejected={("approved", "label")}),
         envelope(loans_values("x-1", approved=1), dataset="loans")),
    ]  # fmt: skip
    for case, event in envelopes:
        case.value = event.to_json_bytes()
        case.received = event.data.values
        if event.data.dataset in ("shop", "loans"):
            case.stats_of = event.data.dataset

    def line(name: str, key: str, value: bytes, **expected: Any) -> Case:
        return Case(name, key, value, **expected)

    lines = [
        line("bare valid", "c-8", bare(shop_values("o-101", customer="c-8", discount=0.5)),
             typed={"amount": 10.0, "items": 2, "channel": "web", "member": True,
                    "discount": 0.5}),
        line("json NaN and Infinity", "c-9",
             b'{"dataset": "shop", "values": {"customer_id": "c-9", "order_id": "o-102", "ts": "'
             + NOW.isoformat().encode() + b'", "amount": NaN, "items": Infinity, "channel": "web",'
             b' "member": true, "churned": 1}}',
             rejected={("amount", "not_finite"), ("items", "not_finite")}),
        line("inf string", "c-10", bare(shop_values("o-103", customer="c-10", discount="inf")),
             rejected={("discount", "not_finite")}),
        line("bare duplicate", "c-8", bare(shop_values("o-101", customer="c-8", amount=3)),
             rejected={("order_id", "duplicate_id")}),
        line("label missing", "c-11", bare(shop_values("o-105", customer="c-11", churned=ABSENT)),
             rejected={("churned", "label")}),
        line("bare loans", "a-2", bare(loans_values("x-2"), dataset="loans"),
             typed={"salary": 50000.0, "age": 30, "elevel": "1"}),
        line("not json", "junk", b"this is not json", rejected={(None, "malformed")}),
        line("NaN alone", "junk", b"NaN", rejected={(None, "malformed")}),
        line("no values", "junk", b'{"dataset": "shop"}', rejected={(None, "malformed")}),
        line("nested value", "junk", b'{"dataset": "shop", "values": {"a": {"b": 1}}}',
             rejected={(None, "malformed")}),
        line("a list", "junk", b"[1, 2, 3]", rejected={(None, "malformed")}),
    ]  # fmt: skip
    for case in lines:
        if case.name in ("no values", "nested value"):
            case.stats_of = "shop"
        elif case.key != "junk":
            document = json.loads(case.value)
            case.stats_of, case.received = document["dataset"], document["values"]
    return envelopes, lines


def loans_values(application: str, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "applicant_id": "a-1" if application == "x-1" else "a-2",
        "application_id": application,
        "applied_at": (NOW - timedelta(minutes=1)).isoformat(),
        "salary": 50000,
        "commission": 0,
        "age": 30,
        "elevel": "1",
        "car": "2",
        "zipcode": "3",
        "hvalue": 100000,
        "hyears": 5,
        "loan": 2000,
    }
    values.update(changes)
    return values


def outputs_by_position(platform: Platform) -> dict[tuple[int, int], list[dict[str, Any]]]:
    by_position: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    raw = platform.topic("data.raw")
    for name in ("data.validated", "data.rejected"):
        for message in read_to_end(platform.bootstrap, platform.topic(name)):
            event = message.json()
            source = event["data"]["source"]
            assert source["topic"] == raw
            by_position[(source["partition"], source["offset"])].append(event)
    return by_position


def test_a_mixed_batch_gives_one_typed_or_explained_output_per_raw_message(
    platform: Platform,
) -> None:
    platform.register(SHOP, LOANS)
    service = platform.start()
    envelopes, lines = mixed_batch()
    platform.publish_envelopes([(case.key, event) for case, event in envelopes])
    platform.publish_with_kcat([(case.key, case.value) for case in lines])
    cases = [case for case, _ in envelopes] + lines
    platform.wait_all_handled(len(cases))

    raw = read_to_end(platform.bootstrap, platform.topic("data.raw"))
    assert len(raw) == len(cases)
    outputs = outputs_by_position(platform)
    assert sum(len(events) for events in outputs.values()) == len(raw), "validated + rejected = raw"

    # Identical bytes (the envelope published twice) are matched in offset order.
    expected_for: dict[bytes, list[Case]] = defaultdict(list)
    for case in cases:
        expected_for[case.value].append(case)
    for message in raw:
        case = expected_for[message.value].pop(0)
        [event] = outputs[(message.partition, message.offset)]
        data = event["data"]
        if case.rejected:
            assert event["type"] == "mlops.RecordRejected", (case.name, data)
            assert {(e["field"], e["rule"]) for e in data["errors"]} == case.rejected, case.name
            assert all(e["message"] for e in data["errors"])
            if case.received is not None:
                as_received = {k: wire(v) for k, v in case.received.items()}
                assert data["values"] == as_received, case.name
        else:
            assert event["type"] == "mlops.RecordValidated", (case.name, data)
            assert case.typed is not None
            assert {k: data["values"][k] for k in case.typed} == case.typed, case.name
            for name, value in case.typed.items():
                assert type(data["values"][name]) is type(value), (case.name, name)
            assert data["spec_version"] == 1
            assert datetime.fromisoformat(data["event_time"]) < datetime.now(UTC)
            if data["dataset"] == "shop":
                assert data["label"] in (0, 1)
            assert data["entity"] == case.key
    duplicates = [
        e["data"]["errors"][0]["message"]
        for events in outputs.values()
        for e in events
        if e["type"] == "mlops.RecordRejected" and e["data"]["errors"][0]["rule"] == "duplicate_id"
    ]
    assert len(duplicates) == 3 and all("first seen at" in m for m in duplicates)

    # The statistics reflect the raw stream of each known dataset.
    stats = httpx.get(f"{platform.base}/stats/shop").json()
    shop = [case for case in cases if case.stats_of == "shop"]
    rejected = [case for case in shop if case.rejected]
    assert (stats["records"], stats["validated"], stats["rejected"]) == (
        len(shop),
        len(shop) - len(rejected),
        len(rejected),
    )
    rules = Counter(rule for case in rejected for rule in {r for _, r in case.rejected})
    assert stats["rejected_by_rule"] == dict(rules)
    with_values = [case.feature_values for case in shop if case.feature_values is not None]
    missing = sum(1 for values in with_values if values.get("discount") is None)
    discount = stats["features"]["discount"]
    assert discount["count"] == len(with_values)
    assert discount["missing_rate"] == pytest.approx(missing / len(with_values))
    channels = Counter(str(values["channel"]) for values in with_values)
    assert stats["features"]["channel"]["categories"] == dict(channels)
    assert stats["features"]["channel"]["category_frequency"]["web"] == pytest.approx(
        channels["web"] / sum(channels.values())
    )
    assert stats["features"]["amount"]["non_finite"] == 1
    loans = httpx.get(f"{platform.base}/stats/loans").json()
    assert loans["records"] == 2 and loans["rejected_by_rule"] == {"label": 1}
    unknown = httpx.get(f"{platform.base}/stats/nope")
    assert unknown.status_code == 404 and "known: loans, shop" in unknown.json()["detail"]

    metrics = httpx.get(f"{platform.base}/metrics").text
    assert f'mlops_validation_records{{dataset="shop",outcome="raw"}} {len(shop)}.0' in metrics
    assert "mlops_validation_feature_missing_rate" in metrics
    dead = read_to_end(platform.bootstrap, platform.topic("bus.dead-letter"))
    assert dead == [], "junk is rejected, never dead-lettered"
    platform.stop(service)
    assert service.returncode == 0


# --- crash and restart ------------------------------------------------------------------------

CRASH_ENVELOPES = 8000
CRASH_BARE = 2000
PLANTED_DUPLICATES = 50
REPLICA_RECORDS = 6000


@pytest.mark.slow
def test_sigkill_mid_stream_then_restart_loses_nothing_and_validates_each_id_once(
    platform: Platform,
) -> None:
    platform.register(SHOP)
    envelopes = []
    for n in range(CRASH_ENVELOPES):
        amount = -1 if n % 10 == 0 else n % 900  # every tenth is out of range
        values = shop_values(f"o-{n}", customer=f"c-{n % 97}", amount=amount)
        envelopes.append((f"c-{n % 97}", envelope(values)))
    lines = [
        (f"c-{n % 97}", bare(shop_values(f"b-{n}", customer=f"c-{n % 97}")))
        for n in range(CRASH_BARE)
    ]
    # Real duplicates: record ids already used, published after their first occurrence.
    lines += [
        (f"c-{n % 97}", bare(shop_values(f"o-{n}", customer=f"c-{n % 97}", amount=1)))
        for n in range(1, PLANTED_DUPLICATES * 2, 2)
    ]
    total = len(envelopes) + len(lines)
    platform.publish_envelopes(envelopes)
    platform.publish_with_kcat(lines)

    # A killed member leaves the group only when its session times out (45 s by default);
    # a short session lets the restarted one take over its partitions sooner.
    short_session = {"MLOPS_KAFKA_CLIENT_EXTRA": json.dumps({"session.timeout.ms": "6000"})}
    first = platform.start(**short_session)

    def records_seen() -> int:
        response = get(f"{platform.base}/stats/shop")
        return (
            response.json()["records"]
            if response is not None and response.status_code == 200
            else 0
        )

    wait_until(lambda: records_seen() >= total // 5, what="a fifth of the stream", timeout_s=120)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    handled_at_kill = sum(len(v) for v in outputs_by_position(platform).values())
    assert handled_at_kill < total, "the service must be killed mid-stream"

    second = platform.start(**short_session)
    platform.wait_all_handled(total, timeout_s=180)
    platform.stop(second)

    raw = read_to_end(platform.bootstrap, platform.topic("data.raw"))
    assert len(raw) == total
    outputs = outputs_by_position(platform)
    assert set(outputs) == {(m.partition, m.offset) for m in raw}, "no raw message lost"
    redelivered = sum(1 for events in outputs.values() if len(events) > 1)
    assert redelivered > 0, "the kill must leave handled but uncommitted messages to redeliver"
    validated_ids: dict[str, set[str]] = defaultdict(set)
    rules: Counter[str] = Counter()
    for position, events in outputs.items():
        assert len({e["id"] for e in events}) == 1, f"a redelivery of {position} got a new id"
        assert len({e["type"] for e in events}) == 1
        event = events[0]
        if event["type"] == "mlops.RecordValidated":
            validated_ids[event["data"]["record_id"]].add(event["id"])
        else:
            rules.update({e["rule"] for e in event["data"]["errors"]})
    assert all(len(ids) == 1 for ids in validated_ids.values()), "a record id validated twice"
    out_of_range = CRASH_ENVELOPES // 10
    assert len(validated_ids) == total - out_of_range - PLANTED_DUPLICATES
    assert rules == {"range": out_of_range, "duplicate_id": PLANTED_DUPLICATES}, (
        "redeliveries after the crash must not be taken for duplicates"
    )


def test_two_replicas_share_the_stream_and_one_killed_loses_nothing_nor_validates_twice(
    platform: Platform, admin: AdminClient
) -> None:
    """Two validation processes in one consumer group, as `MLOPS_REPLICAS="validation=2"`
    runs them: duplicates are caught across replicas (their keys put them on partitions the
    other replica owns), and when one is killed its partitions move to the other."""
    platform.register(SHOP)
    envelopes = [
        (f"c-{n % 97}", envelope(shop_values(f"o-{n}", customer=f"c-{n % 97}", amount=n % 900)))
        for n in range(REPLICA_RECORDS)
    ]
    # Each duplicate under another customer's key, so most land where the other replica reads.
    lines = [
        (f"c-{(n + 1) % 97}", bare(shop_values(f"o-{n}", customer=f"c-{(n + 1) % 97}")))
        for n in range(0, REPLICA_RECORDS, REPLICA_RECORDS // PLANTED_DUPLICATES)
    ]
    short_session = {"MLOPS_KAFKA_CLIENT_EXTRA": json.dumps({"session.timeout.ms": "6000"})}
    first = platform.start(**short_session)
    second_port = free_port()
    second = platform.start(port=second_port, **short_session)
    wait_until(
        lambda: stable_members(admin, platform.group, with_partitions=True) == 2,
        what="both replicas to get partitions of data.raw",
        timeout_s=60,
    )
    platform.publish_envelopes(envelopes[: REPLICA_RECORDS // 2])
    total = len(envelopes) + len(lines)

    def seen_by(port: int) -> int:
        response = get(f"http://127.0.0.1:{port}/stats/shop")
        ok = response is not None and response.status_code == 200
        return response.json()["records"] if ok else 0

    wait_until(
        lambda: seen_by(platform.port) > 0 and seen_by(second_port) > 0,
        what="both replicas to handle records (partitions shared)",
        timeout_s=120,
    )
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    # The rest of the stream, with the duplicates of ids the killed replica may have claimed.
    platform.publish_with_kcat(lines)
    platform.publish_envelopes(envelopes[REPLICA_RECORDS // 2 :])
    platform.wait_all_handled(total, timeout_s=180)
    platform.stop(second)

    raw = read_to_end(platform.bootstrap, platform.topic("data.raw"))
    outputs = outputs_by_position(platform)
    assert set(outputs) == {(m.partition, m.offset) for m in raw}, "no raw message lost"
    validated: dict[str, set[str]] = defaultdict(set)
    rules: Counter[str] = Counter()
    for position, events in outputs.items():
        assert len({e["id"] for e in events}) == 1, f"a redelivery of {position} got a new id"
        event = events[0]
        if event["type"] == "mlops.RecordValidated":
            validated[event["data"]["record_id"]].add(event["id"])
        else:
            rules.update({e["rule"] for e in event["data"]["errors"]})
    assert all(len(ids) == 1 for ids in validated.values()), "a record id validated twice"
    assert len(validated) == REPLICA_RECORDS
    assert rules == {"duplicate_id": len(lines)}, "each planted duplicate rejected once"


# --- expected ranges: covariate shift is flagged and counted, hard bounds still reject --------


def homes_sample(count: int, seed: int) -> list[dict[str, Any]]:
    """A regression dataset no spec ships for: home sales, the price in the record."""
    rng = np.random.default_rng(seed)
    start = NOW - timedelta(hours=1)
    return [
        {
            "home_id": f"home-{seed}-{i % 40}",
            "sold_at": (start + timedelta(seconds=i)).isoformat(),
            "sale_id": f"sale-{seed}-{i}",
            "rooms": int(rng.integers(1, 9)),
            "area": round(float(rng.normal(90, 20)), 1),
            "district": str(rng.choice(["north", "south", "harbour"])),
            "price": round(float(rng.normal(300_000, 60_000)), -2),
        }
        for i in range(count)
    ]


def inferred_homes() -> tuple[DatasetSpec, list[dict[str, Any]]]:
    """The spec `infer` proposes for a sample, with one documented edit: area gets the hard
    min 0 a user adds for a physical bound (infer never invents one)."""
    sample = homes_sample(300, seed=1)
    inferred = infer_spec(
        pd.DataFrame(sample),
        name="homes",
        entity_key="home_id",
        event_time="sold_at",
        record_id="sale_id",
        label="price",
    )
    assert inferred.task == "regression"
    document = inferred.model_dump(mode="json")
    for feature in document["features"]:
        assert feature["min"] is None and feature["max"] is None, "infer invents no hard bound"
        if feature["name"] == "area":
            feature["min"] = 0
    spec = DatasetSpec.model_validate(document)
    rows = [{**row, "sale_id": f"live-{n}"} for n, row in enumerate(sample[:30])]
    return spec, rows


def breast_cancer_rows() -> tuple[DatasetSpec, list[dict[str, Any]]]:
    spec = next(s for s in shipped_specs() if s.name == "breast_cancer")
    start = NOW - timedelta(hours=1)
    return spec, [record for record, _ in breast_cancer_records(30, seed=7, start=start)]


@dataclass(frozen=True)
class Shift:
    """A dataset, records like its own, and how they are shifted or broken."""

    spec: DatasetSpec
    rows: list[dict[str, Any]]
    shifted: list[tuple[dict[str, Any], list[str]]]  # changes, features flagged
    broken: tuple[str, Any]  # a feature and a value past its hard bound


def homes_shift() -> Shift:
    spec, rows = inferred_homes()
    rooms, area = spec.feature("rooms"), spec.feature("area")
    assert rooms.expected_max is not None and area.expected_max is not None
    assert area.expected_min is not None and area.expected_min > 2
    return Shift(
        spec,
        rows,
        shifted=[
            (
                {"rooms": int(rooms.expected_max) + 3, "area": area.expected_max + 50},
                ["rooms", "area"],
            ),
            ({"area": area.expected_min / 2}, ["area"]),
            ({"area": area.expected_max * 3}, ["area"]),
        ],
        broken=("area", -10.0),
    )


def breast_cancer_shift() -> Shift:
    spec, rows = breast_cancer_rows()
    radius, texture = spec.feature("mean_radius"), spec.feature("mean_texture")
    assert radius.expected_max is not None and texture.expected_min is not None
    return Shift(
        spec,
        rows,
        shifted=[
            (
                {"mean_radius": radius.expected_max + 6, "worst_area": 5000.0},
                ["mean_radius", "worst_area"],
            ),
            ({"mean_texture": texture.expected_min / 2}, ["mean_texture"]),
            ({"mean_radius": radius.expected_max * 2}, ["mean_radius"]),
        ],
        broken=("mean_radius", -1.0),
    )


@pytest.mark.parametrize(
    "make", [homes_shift, breast_cancer_shift], ids=["inferred", "breast_cancer"]
)
def test_a_shifted_value_is_validated_flagged_and_counted_and_one_past_a_hard_bound_rejected(
    platform: Platform, make: Any
) -> None:
    shift: Shift = make()
    spec = shift.spec
    platform.register(spec)
    service = platform.start()
    record_id = spec.record_id
    assert record_id is not None
    plain = shift.rows[: len(shift.rows) - len(shift.shifted) - 1]
    shifted = [
        ({**row, **changes}, flagged)
        for row, (changes, flagged) in zip(shift.rows[len(plain) :], shift.shifted, strict=False)
    ]
    feature, value = shift.broken
    broken = {**shift.rows[-1], feature: value}
    sent = [*plain, *(row for row, _ in shifted), broken]
    platform.publish_envelopes(
        [(str(row[spec.entity_key]), envelope(row, dataset=spec.name)) for row in sent]
    )
    platform.wait_all_handled(len(sent))

    outputs = {
        e["data"]["record_id"]: e
        for events in outputs_by_position(platform).values()
        for e in events
    }
    assert len(outputs) == len(sent)
    for row in plain:
        out = outputs[row[record_id]]
        assert out["type"] == "mlops.RecordValidated", out["data"]
        assert out["data"]["out_of_range"] == []
    for row, flagged in shifted:
        out = outputs[row[record_id]]
        assert out["type"] == "mlops.RecordValidated", out["data"]
        assert out["data"]["out_of_range"] == flagged
        for name in flagged:
            assert out["data"]["values"][name] == row[name], "accepted as sent"
    rejected = outputs[broken[record_id]]
    assert rejected["type"] == "mlops.RecordRejected"
    assert {(e["field"], e["rule"]) for e in rejected["data"]["errors"]} == {(feature, "range")}

    stats = httpx.get(f"{platform.base}/stats/{spec.name}").json()
    validated = len(plain) + len(shifted)
    assert (stats["validated"], stats["rejected"]) == (validated, 1)
    assert stats["rejected_by_rule"] == {"range": 1}
    counts = Counter(name for _, flagged in shifted for name in flagged)
    metrics = httpx.get(f"{platform.base}/metrics").text
    for name in (f.name for f in spec.features if f.type in ("numeric", "integer")):
        summary = stats["features"][name]
        assert summary["out_of_range"] == counts[name], name
        assert summary["out_of_range_rate"] == pytest.approx(counts[name] / validated), name
        assert summary["rejected"] == (1 if name == feature else 0), name
        sample = f'mlops_validation_out_of_range_total{{dataset="{spec.name}",feature="{name}"}}'
        assert f"{sample} {float(counts[name])}" in metrics, name
    platform.stop(service)
    assert service.returncode == 0
