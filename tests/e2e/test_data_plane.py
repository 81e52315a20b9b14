"""The data plane end to end: records enter through HTTP and straight through Kafka (kcat),
are validated or rejected with reasons, and become features; nothing is lost or duplicated."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from shared.datasets.sources import agrawal_records, breast_cancer_records
from tests.integration.kafka_helpers import unique_name
from tests.services import RunningService, namespace_topics, start_service
from tests.waiting import wait_until

KCAT = shutil.which("kcat") or "kcat"
RECORDS = 10_000
BAD_EVERY = 20  # 5% of the records are crafted to fail one rule each

# How each crafted record is broken, and the rule its rejection must name.
DEFECTS: list[tuple[str, str, Any]] = [
    ("type", "salary", "a lot"),
    ("range", "age", 150),
    ("required", "salary", None),
    ("not_finite", "loan", float("nan")),
    ("category", "car", "99"),
    ("duplicate_id", "application_id", None),
]


@pytest.fixture
def data_plane(
    admin: AdminClient, subprocess_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[str, dict[str, RunningService]]]:
    namespace = unique_name("e2e").replace("-", "")
    with namespace_topics(admin, namespace):
        services: dict[str, RunningService] = {}
        try:
            for name in ("ingestion", "validation", "feature_store"):
                services[name] = start_service(name, namespace, subprocess_env, tmp_path)
            yield namespace, services
        finally:
            for service in services.values():
                service.stop()


def crafted_records() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """10,000 loan applications, 5% broken; returns them and record id -> expected rule."""
    start = datetime.now(UTC) - timedelta(days=1)
    records = [row for row, _ in agrawal_records(RECORDS, seed=11, start=start)]
    expected: dict[str, str] = {}
    for number, index in enumerate(range(BAD_EVERY - 1, RECORDS, BAD_EVERY)):
        rule, column, value = DEFECTS[number % len(DEFECTS)]
        record = records[index]
        if rule == "duplicate_id":
            earlier = records[index - 1]
            record["application_id"] = earlier["application_id"]
            record["applicant_id"] = earlier[
                "applicant_id"
            ]  # same entity: same partition, in order
            expected[f"dup:{index}"] = rule
            continue
        if rule == "required":
            del record[column]
        else:
            record[column] = value
        expected[record["application_id"]] = rule
    return records, expected


def read_topic(bootstrap: str, topic: str, until: int, timeout_s: float = 240) -> list[dict]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": unique_name("e2e-reader"),
         "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )  # fmt: skip
    consumer.subscribe([topic])
    events: list[dict] = []

    def collect() -> bool:
        for message in consumer.consume(1000, 0.5):
            if message.error() is None:
                events.append(json.loads(message.value()))
        return len(events) >= until

    try:
        wait_until(collect, what=f"{until} events on {topic}", timeout_s=timeout_s, interval_s=0)
    finally:
        consumer.close()
    return events


def post_in_batches(url: str, records: list[dict[str, Any]], size: int = 500) -> list[str]:
    ids: list[str] = []
    with httpx.Client(timeout=60) as client:
        for start in range(0, len(records), size):
            # NaN goes out as the NaN token (as Python and JavaScript write it): it must reach
            # validation and come back rejected as not_finite, not be refused at the door.
            body = json.dumps({"records": records[start : start + size]}, allow_nan=True)
            response = client.post(url, content=body, headers={"content-type": "application/json"})
            assert response.status_code == 202, response.text
            ids.extend(response.json()["ids"])
    return ids


def publish_with_kcat(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    lines = "".join(
        f"{r['applicant_id']}\t{json.dumps({'dataset': 'loans', 'entity': r['applicant_id'], 'values': r})}\n"
        for r in records
    )
    produced = subprocess.run(
        [KCAT, "-b", bootstrap, "-t", topic, "-P", "-K", "\t"],
        input=lines, text=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr


def test_ten_thousand_records_half_http_half_kcat_are_all_accounted_for(
    data_plane: tuple[str, dict[str, RunningService]], bootstrap: str
) -> None:
    namespace, services = data_plane
    records, expected = crafted_records()
    half = RECORDS // 2
    acknowledged = post_in_batches(
        f"{services['ingestion'].url}/datasets/loans/records", records[:half]
    )
    assert len(acknowledged) == half == len(set(acknowledged))
    publish_with_kcat(bootstrap, f"{namespace}.data.raw", records[half:])

    validated = read_topic(bootstrap, f"{namespace}.data.validated", until=RECORDS - len(expected))
    rejected = read_topic(bootstrap, f"{namespace}.data.rejected", until=len(expected))
    assert len(validated) + len(rejected) == RECORDS
    assert len({e["id"] for e in validated + rejected}) == RECORDS, "no output twice"
    sources = Counter((e["data"]["source"]["partition"], e["data"]["source"]["offset"])
                      for e in validated + rejected)  # fmt: skip
    assert max(sources.values()) == 1, "every raw message has exactly one outcome"

    rules_by_record = {e["data"]["record_id"]: {err["rule"] for err in e["data"]["errors"]}
                       for e in rejected}  # fmt: skip
    duplicates = [rules for rules in rules_by_record.values() if "duplicate_id" in rules]
    assert len(duplicates) == sum(1 for key in expected if key.startswith("dup:"))
    for record_id, rule in expected.items():
        if not record_id.startswith("dup:"):
            assert rule in rules_by_record.get(record_id, set()), (record_id, rule)
    validated_ids = {e["data"]["record_id"] for e in validated}
    assert not validated_ids & {k for k in expected if not k.startswith("dup:")}

    features = read_topic(bootstrap, f"{namespace}.data.features", until=len(validated))
    assert len(features) == len(validated)
    assert {e["data"]["record_id"] for e in features} == validated_ids


def test_the_second_shipped_dataset_runs_through_the_same_path_with_only_its_spec(
    data_plane: tuple[str, dict[str, RunningService]], bootstrap: str
) -> None:
    namespace, services = data_plane
    start = datetime.now(UTC) - timedelta(days=1)
    records = [row for row, _ in breast_cancer_records(seed=3, start=start)]
    ids = post_in_batches(f"{services['ingestion'].url}/datasets/breast_cancer/records", records)
    assert len(ids) == len(records) == 569
    validated = read_topic(bootstrap, f"{namespace}.data.validated", until=len(records))
    assert {e["data"]["dataset"] for e in validated} == {"breast_cancer"}
    assert all(e["data"]["label"] in (0, 1) for e in validated)
    features = read_topic(bootstrap, f"{namespace}.data.features", until=len(records))
    assert len({e["data"]["record_id"] for e in features}) == len(records)
