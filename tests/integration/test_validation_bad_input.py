"""Issue 12's defects against the validation service and the real stack: a lone surrogate, a
large record and a NUL byte in a record id each cost one rejection, never the service, and
the records behind them are validated (PostgreSQL is the record-id store under `make test`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from confluent_kafka import Producer

from shared.events import Event, RecordRejected
from shared.settings import PlatformSettings
from tests.integration.test_validation_service import (
    SHOP,
    Platform,
    get,
    read_to_end,
    shop_values,
)
from tests.integration.test_validation_service import platform as service_namespace

assert service_namespace  # a fixture: one namespace, its topics and validation, per test


def bare_values(values_json: str, dataset: str = "shop") -> bytes:
    return b'{"dataset": "' + dataset.encode() + b'", "values": ' + values_json.encode() + b"}"


def with_literal(order: str, customer: str, name: str, literal: str) -> bytes:
    """A shop record whose column `name` holds `literal` as written (any JSON escape)."""
    values = {k: v for k, v in shop_values(order, customer=customer).items() if k != name}
    return bare_values(json.dumps(values)[:-1] + f', "{name}": {literal}' + "}")


def valid(order: str, customer: str) -> bytes:
    return json.dumps({"dataset": "shop", "values": shop_values(order, customer=customer)}).encode()


def publish(platform: Platform, messages: list[tuple[str, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": platform.bootstrap, "message.max.bytes": 2_000_000})
    for key, value in messages:
        producer.produce(platform.topic("data.raw"), value=value, key=key)
    assert producer.flush(30) == 0


@contextmanager
def live_throughout(platform: Platform) -> Iterator[list[int]]:
    """Polls /live every 0.2 s while the block runs; yields the status codes seen."""
    seen: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            response = get(f"{platform.base}/live")
            seen.append(response.status_code if response is not None else 0)
            stop.wait(0.2)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        yield seen
    finally:
        stop.set()
        poller.join(10)


def outputs(platform: Platform, name: str) -> list[dict[str, Any]]:
    return [m.json() for m in read_to_end(platform.bootstrap, platform.topic(name))]


def rules_of(rejection: dict[str, Any]) -> set[tuple[str | None, str]]:
    return {(e["field"], e["rule"]) for e in rejection["data"]["errors"]}


def retries_and_waits(platform: Platform) -> float:
    """What validation's /metrics count of handler retries and dependency waits."""
    response = get(f"{platform.base}/metrics")
    assert response is not None and response.status_code == 200
    total = 0.0
    for line in response.text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in ("mlops_handler_retries_total", "mlops_consumer_dependency_waits_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def assert_one_output_each_and_no_dead_letter(platform: Platform, raw_count: int) -> None:
    validated, rejected = outputs(platform, "data.validated"), outputs(platform, "data.rejected")
    assert len(validated) + len(rejected) == raw_count, "validated + rejected = raw"
    assert read_to_end(platform.bootstrap, platform.topic("bus.dead-letter")) == []


def test_a_lone_surrogate_is_rejected_and_the_records_behind_it_validated(
    service_namespace: Platform,
) -> None:
    """Defect 1: this 316-byte message used to kill the consumer thread (/live 503) and,
    its offset never stored, every restart with it."""
    platform = service_namespace
    platform.register(SHOP)
    service = platform.start()
    surrogate = with_literal("o-1", "c-1", "channel", '"\\ud800"')
    surrogate = surrogate[:-2] + b', "note": "' + b"n" * (316 - len(surrogate) - 12) + b'"}}'
    assert len(surrogate) == 316
    behind = [(f"c-{n}", valid(f"o-{n}", f"c-{n}")) for n in range(2, 7)]
    with live_throughout(platform) as seen:
        publish(platform, [("c-1", surrogate), *behind])
        platform.wait_all_handled(1 + len(behind), timeout_s=60)
    assert service.poll() is None, "validation is still running"
    assert set(seen) == {200}, f"/live answered {sorted(set(seen))}"
    [rejection] = outputs(platform, "data.rejected")
    assert ("channel", "lone_surrogate") in rules_of(rejection)
    assert "surrogate" in rejection["data"]["errors"][0]["message"]
    validated = outputs(platform, "data.validated")
    assert sorted(v["data"]["record_id"] for v in validated) == [f"o-{n}" for n in range(2, 7)]
    assert_one_output_each_and_no_dead_letter(platform, 1 + len(behind))


def many_columns(order: str, customer: str, size: int) -> bytes:
    values: dict[str, Any] = shop_values(order, customer=customer)
    n = 0
    while len(json.dumps(values)) < size:
        values[f"unexpected_{n}"] = "v" * 100
        n += 1
    return json.dumps({"dataset": "shop", "values": values}).encode()


def test_large_records_are_rejected_within_the_broker_limit(
    service_namespace: Platform, settings: PlatformSettings
) -> None:
    """Defect 2: a 184 KB record became a rejection over 1 MiB (flush raised), a 314 KB one
    made produce raise MSG_SIZE_TOO_LARGE; either stopped validation."""
    platform = service_namespace
    platform.register(SHOP)
    service = platform.start()
    large = [
        ("c-1", many_columns("o-1", "c-1", 184_000)),
        ("c-2", many_columns("o-2", "c-2", 314_000)),
    ]
    assert (
        len(large[0][1]) < settings.max_record_bytes
        and len(large[1][1]) < settings.max_record_bytes
    )
    with live_throughout(platform) as seen:
        publish(platform, [*large, ("c-3", valid("o-3", "c-3"))])
        platform.wait_all_handled(3, timeout_s=60)
    assert service.poll() is None and set(seen) == {200}
    rejected = read_to_end(platform.bootstrap, platform.topic("data.rejected"))
    assert len(rejected) == 2
    for message in rejected:
        assert len(message.value) <= settings.max_rejection_bytes
        payload = Event[RecordRejected].model_validate_json(message.value).data
        assert payload.truncated is not None and "left out" in payload.truncated
        assert {e.rule for e in payload.errors} == {"unexpected_field"}
    [validated] = outputs(platform, "data.validated")
    assert validated["data"]["record_id"] == "o-3"
    assert_one_output_each_and_no_dead_letter(platform, 3)


def test_a_nul_in_a_record_id_is_rejected_at_once_before_the_database(
    service_namespace: Platform, settings: PlatformSettings
) -> None:
    """Defect 3: a NUL reached PostgreSQL (psycopg.DataError), was retried for ~11.5 s while
    every partition waited, then dead-lettered instead of rejected."""
    if settings.database_url is None:
        pytest.skip("needs PostgreSQL as the record-id store (MLOPS_DATABASE_URL)")
    platform = service_namespace
    platform.register(SHOP)
    service = platform.start()
    nul = with_literal("ignored", "c-1", "order_id", '"o-\\u0000-1"')
    publish(platform, [("c-1", nul), ("c-2", valid("o-2", "c-2"))])
    platform.wait_all_handled(2, timeout_s=60)
    assert service.poll() is None
    assert retries_and_waits(platform) == 0, "the NUL was retried as if transient"
    [rejection] = outputs(platform, "data.rejected")
    assert rules_of(rejection) == {("order_id", "nul_character")}
    assert_one_output_each_and_no_dead_letter(platform, 2)
