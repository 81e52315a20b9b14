"""The ingestion service as a real process on the real broker, in a namespace of its own.

Records, files and labels are acknowledged only once Kafka has them, and what is acknowledged
is on the topics, keyed as promised; what is not a batch is refused and leaves no trace.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from shared.datasets.infer import infer_spec, spec_to_yaml
from shared.datasets.sources import agrawal_records, breast_cancer_records
from shared.datasets.spec import SHIPPED_SPECS, DatasetSpec
from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import unique_name
from tests.services import RunningService, namespace_topics, start_service
from tests.waiting import wait_until

BODY_LIMIT = 1024 * 1024
CHUNK_ROWS = 5000
# The CI machine runs the fault matrix beside this suite: a spec registration reads the
# specs topic afresh, which took over httpx's default 5 s there once.
http = httpx.Client(timeout=30.0)


def start_ingestion(
    env: dict[str, str], namespace: str, logs: Path, **kwargs: Any
) -> RunningService:
    limits = {
        "MLOPS_INGESTION_MAX_BODY_BYTES": str(BODY_LIMIT),
        "MLOPS_INGESTION_FILE_CHUNK_ROWS": str(CHUNK_ROWS),
    }
    return start_service("ingestion", namespace, env, logs, extra_env=limits, **kwargs)


def answers(url: str) -> httpx.Response | None:
    try:
        return http.get(url, timeout=5)
    except httpx.TransportError:
        return None


def base_env(settings: PlatformSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_INGESTION_")}
    env["MLOPS_KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module")
def service(
    settings: PlatformSettings, admin: AdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    namespace = unique_name("ingest").replace("-", "")
    with namespace_topics(admin, namespace):
        logs = tmp_path_factory.mktemp("ingestion")
        running = start_ingestion(base_env(settings), namespace, logs)
        try:
            yield running
        finally:
            code = running.stop()
    assert code == 0, running.output(skip_prefix="%")


def envelopes(bootstrap: str, topic: str) -> Callable[[], list[tuple[Any, dict[str, Any]]]]:
    """Reads a topic from the start up to its current end: (message, decoded envelope)."""

    def read() -> list[tuple[Any, dict[str, Any]]]:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": unique_name("ingest-reader"),
                "enable.auto.commit": False,
            }
        )
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            ends = {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions
            }
            pending = {p for p, end in ends.items() if end > 0}
            consumer.assign([TopicPartition(topic, p, 0) for p in pending])
            found: list[tuple[Any, dict[str, Any]]] = []

            def drained() -> bool:
                for message in consumer.consume(1000, 0.5):
                    if message.error() is not None:
                        continue
                    found.append((message, json.loads(message.value())))
                    if message.offset() + 1 >= ends[message.partition()]:
                        pending.discard(message.partition())
                return not pending

            wait_until(drained, what=f"{topic} read to its end {ends}", timeout_s=60, interval_s=0)
            return found
        finally:
            consumer.close()

    return read


def on_topic(
    bootstrap: str, topic: str, keep: Callable[[dict[str, Any]], bool], expected: int
) -> list[tuple[Any, dict[str, Any]]]:
    """The messages of a topic that `keep` selects, once there are `expected` of them."""
    read = envelopes(bootstrap, topic)
    return wait_until(
        lambda: (
            (found := [(m, e) for m, e in read() if keep(e)]) and len(found) >= expected and found
        ),
        what=f"{expected} matching messages on {topic}",
        timeout_s=60,
        interval_s=0.5,
    )


def loans(count: int, seed: int) -> list[dict[str, Any]]:
    start = datetime.now(UTC) - timedelta(seconds=count)
    return [record for record, _ in agrawal_records(count, seed=seed, start=start)]


def test_a_batch_is_acknowledged_once_every_record_is_on_the_raw_topic(
    service: RunningService, bootstrap: str
) -> None:
    rows = loans(50, seed=101)
    rows[3] = {**rows[3], "note": None, "extra_flag": True}
    answer = http.post(f"{service.url}/datasets/loans/records", json={"records": rows})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["accepted"] == 50 and body["spec_version"] == 1
    assert len(set(body["ids"])) == 50

    found = on_topic(
        bootstrap,
        service.topic("data.raw"),
        lambda e: e["data"]["values"].get("application_id", "").startswith("app-101-"),
        expected=50,
    )
    by_id = {envelope["id"]: (message, envelope) for message, envelope in found}
    assert set(by_id) == set(body["ids"])
    for event_id, row in zip(body["ids"], rows, strict=True):
        message, envelope = by_id[event_id]
        assert message.key() == row["applicant_id"].encode(), "keyed by entity"
        assert envelope["type"] == "mlops.RecordIngested" and envelope["source"] == "ingestion"
        data = envelope["data"]
        assert data["dataset"] == "loans" and data["entity"] == row["applicant_id"]
        assert data["values"] == row, "values as received"
        assert data["spec_version"] == 1


def test_an_unknown_dataset_is_404_and_lists_the_known_ones(service: RunningService) -> None:
    answer = http.post(f"{service.url}/datasets/nope/records", json={"records": [{"a": 1}]})
    assert answer.status_code == 404
    assert {"breast_cancer", "loans"} <= set(answer.json()["known"])
    assert "known datasets: " in answer.json()["detail"]
    assert "breast_cancer" in answer.json()["detail"]


def test_what_is_not_a_batch_is_refused_and_nothing_of_it_is_written(
    service: RunningService, bootstrap: str
) -> None:
    marker = unique_name("refused")
    url = f"{service.url}/datasets/loans/records"
    row = {"applicant_id": marker}
    refused = [
        (b'{"records": [{"applicant_id": "' + marker.encode() + b'"', 400, "malformed JSON"),
        (json.dumps({"records": [row, [1, 2]]}).encode(), 422, "records[1] is a JSON array"),
        (
            json.dumps({"records": [row, {"applicant_id": marker, "nested": {"a": 1}}]}).encode(),
            422,
            "records[1].nested",
        ),
        (json.dumps({"records": []}).encode(), 422, "empty"),
        (
            json.dumps({"records": [row, {"pad": "x" * BODY_LIMIT}]}).encode(),
            413,
            f"limit of {BODY_LIMIT} bytes",
        ),
    ]
    for body, status, message in refused:
        answer = http.post(url, content=body, headers={"content-type": "application/json"})
        assert answer.status_code == status, (body[:60], answer.text)
        assert message in answer.json()["detail"]
        assert "ids" not in answer.json()

    everything = envelopes(bootstrap, service.topic("data.raw"))()
    assert not [e for _, e in everything if e["data"].get("entity") == marker]
    metrics = http.get(f"{service.url}/metrics").text
    for reason in ("malformed_body", "invalid_row", "empty_batch", "too_large"):
        assert f'mlops_ingestion_refusals_total{{reason="{reason}"}}' in metrics


def test_a_20000_row_csv_upload_arrives_complete(service: RunningService, bootstrap: str) -> None:
    rows = loans(20_000, seed=202)
    csv = pd.DataFrame(rows).to_csv(index=False).encode()
    answer = http.post(
        f"{service.url}/datasets/loans/files",
        files={"file": ("loans.csv", csv, "text/csv")},
        timeout=120,
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["accepted"] == 20_000 and body["chunks"] == 20_000 // CHUNK_ROWS

    found = on_topic(
        bootstrap,
        service.topic("data.raw"),
        lambda e: e["data"]["values"].get("application_id", "").startswith("app-202-"),
        expected=20_000,
    )
    assert len(found) == 20_000
    ids = {envelope["id"] for _, envelope in found}
    assert len(ids) == 20_000 and {body["first_id"], body["last_id"]} <= ids
    by_application = {e["data"]["values"]["application_id"]: (m, e) for m, e in found}
    assert len(by_application) == 20_000
    message, envelope = by_application["app-202-123"]
    sent = rows[123]
    assert message.key() == sent["applicant_id"].encode()
    values = envelope["data"]["values"]
    assert values["age"] == sent["age"] and type(values["age"]) is int, "typed by the spec"
    assert values["elevel"] == sent["elevel"], "categories stay text"
    assert values["salary"] == pytest.approx(sent["salary"])
    assert values["applied_at"] == sent["applied_at"]


def test_a_parquet_upload_arrives_complete(service: RunningService, bootstrap: str) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    rows = [record for record, _ in breast_cancer_records(1200, seed=303, start=start)]
    frame = pd.DataFrame(rows)
    frame.loc[5, "mean_radius"] = float("nan")
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    answer = http.post(
        f"{service.url}/datasets/breast_cancer/files",
        content=buffer.getvalue(),
        headers={"content-type": "application/vnd.apache.parquet"},
        timeout=120,
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 1200

    found = on_topic(
        bootstrap,
        service.topic("data.raw"),
        lambda e: e["data"]["values"].get("sample_id", "").startswith("bc-303-"),
        expected=1200,
    )
    assert len({envelope["id"] for _, envelope in found}) == 1200
    by_sample = {e["data"]["values"]["sample_id"]: (m, e) for m, e in found}
    assert by_sample["bc-303-5"][1]["data"]["values"]["mean_radius"] is None, "NaN is null"
    message, envelope = by_sample["bc-303-7"]
    assert message.key() == rows[7]["patient_id"].encode()
    assert envelope["data"]["values"]["diagnosis"] == rows[7]["diagnosis"]
    assert envelope["data"]["dataset"] == "breast_cancer"


def test_labels_land_on_the_labels_topic_keyed_by_record_id(
    service: RunningService, bootstrap: str
) -> None:
    marker = unique_name("label")
    labels = [
        {"record_id": f"{marker}-1", "label": 1},
        {
            "record_id": f"{marker}-2",
            "label": 0,
            "labelled_at": "2024-06-01T10:00:00Z",
            "entity": "applicant-2",
        },
    ]
    answer = http.post(f"{service.url}/datasets/loans/labels", json={"labels": labels})
    assert answer.status_code == 202, answer.text
    ids = answer.json()["ids"]

    found = on_topic(
        bootstrap,
        service.topic("data.labels"),
        lambda e: e["data"]["record_id"].startswith(marker),
        expected=2,
    )
    by_record = {e["data"]["record_id"]: (m, e) for m, e in found}
    message, envelope = by_record[f"{marker}-2"]
    assert message.key() == f"{marker}-2".encode()
    assert envelope["type"] == "mlops.LabelRecorded" and envelope["id"] == ids[1]
    assert envelope["data"]["label"] == 0 and envelope["data"]["entity"] == "applicant-2"
    assert envelope["data"]["labelled_at"].startswith("2024-06-01T10:00:00")
    assert by_record[f"{marker}-1"][1]["data"]["label"] == 1


def test_spec_registration_versions_changes_and_keeps_unchanged_ones(
    service: RunningService, bootstrap: str
) -> None:
    shipped = (SHIPPED_SPECS / "loans.yaml").read_bytes()
    again = http.post(
        f"{service.url}/datasets", content=shipped, headers={"content-type": "application/yaml"}
    )
    assert again.status_code == 200 and again.json()["version"] == 1, again.text

    name = unique_name("copy").replace("-", "_")
    spec = DatasetSpec.from_file(SHIPPED_SPECS / "loans.yaml").model_dump(mode="json")
    first = http.post(f"{service.url}/datasets", json={**spec, "name": name})
    assert first.status_code == 201 and first.json()["version"] == 1, first.text
    same = http.post(f"{service.url}/datasets", json={**spec, "name": name})
    assert same.status_code == 200 and same.json() == first.json()
    changed = {**spec, "name": name, "description": "second version"}
    second = http.post(f"{service.url}/datasets", json=changed)
    assert second.status_code == 201 and second.json()["version"] == 2
    assert second.json()["fingerprint"] != first.json()["fingerprint"]

    bad = http.post(f"{service.url}/datasets", json={**changed, "features": [{"name": "x"}]})
    assert bad.status_code == 422
    assert any(error["loc"].startswith("features.0") for error in bad.json()["errors"])

    listed = {
        d["name"]: d["version"] for d in http.get(f"{service.url}/datasets").json()["datasets"]
    }
    assert listed[name] == 2 and listed["loans"] == 1 and listed["breast_cancer"] == 1
    assert (
        http.get(f"{service.url}/datasets/{name}/versions/1").json()["spec"]["description"]
        == (spec["description"])
    )
    record = http.post(
        f"{service.url}/datasets/{name}/records", json={"records": [{"applicant_id": "a"}]}
    )
    assert record.json()["spec_version"] == 2

    registered = on_topic(
        bootstrap,
        service.topic("data.specs"),
        lambda e: e["data"]["registered"]["spec"]["name"] == name,
        expected=2,
    )
    assert sorted(e["data"]["registered"]["version"] for _, e in registered) == [1, 2]
    assert {m.key() for m, _ in registered} == {f"{name}:1".encode(), f"{name}:2".encode()}


def test_an_inferred_regression_spec_registers_and_unrunnable_specs_are_refused_in_one_line(
    service: RunningService,
) -> None:
    rng = np.random.default_rng(5)
    sample = pd.DataFrame(
        {
            "home_id": [f"h{i}" for i in range(300)],
            "sold_at": pd.date_range("2024-01-01", periods=300, freq="h", tz="UTC"),
            "rooms": rng.integers(1, 9, 300),
            "area": rng.normal(90, 25, 300).round(1),
            "district": rng.choice(["north", "south", "east"], 300),
            "price": rng.normal(300_000, 80_000, 300).round(-2),
        }
    )
    name = unique_name("homes").replace("-", "_")
    inferred = infer_spec(
        sample, name=name, entity_key="home_id", event_time="sold_at", label="price"
    )
    text = spec_to_yaml(inferred)
    registered = http.post(
        f"{service.url}/datasets", content=text, headers={"content-type": "application/yaml"}
    )
    assert registered.status_code == 201, registered.text
    spec = http.get(f"{service.url}/datasets/{name}").json()["spec"]
    assert spec["label"]["task"] == "regression"
    assert spec["model"]["primary_metric"] == "rmse"
    assert spec["features"][0]["expected_max"] is not None and spec["features"][0]["max"] is None

    document = inferred.model_dump(mode="json")
    refused = {
        "categorical_label": {
            **document,
            "name": f"{name}_a",
            "label": {
                "name": "price",
                "type": "categorical",
                "categories": ["cheap", "dear"],
                "task": "regression",
            },
        },
        "unknown_metric": {
            **document,
            "name": f"{name}_b",
            "model": {**document["model"], "primary_metric": "accuracy"},
        },
        "classifier_for_regression": {
            **document,
            "name": f"{name}_c",
            "model": {"estimator": "sklearn.ensemble.RandomForestClassifier"},
        },
    }
    expected = {
        "categorical_label": "label price: a regression label must be numeric or integer, "
        "not categorical",
        "unknown_metric": "model.primary_metric 'accuracy' is not a regression metric",
        "classifier_for_regression": "model.estimator sklearn.ensemble.RandomForestClassifier "
        "is not a regressor, and the label's task is regression",
    }
    for case, body in refused.items():
        answer = http.post(f"{service.url}/datasets", json=body)
        assert answer.status_code == 422, (case, answer.text)
        refusal = answer.json()
        assert refusal["reason"] == "invalid_spec", case
        assert refusal["detail"].startswith(f"invalid dataset spec: {expected[case]}"), refusal
        assert "\n" not in refusal["detail"]
        assert http.get(f"{service.url}/datasets/{body['name']}").status_code == 404, case


def test_with_kafka_unreachable_it_starts_is_not_ready_and_answers_writes_503(
    settings: PlatformSettings, tmp_path: Path
) -> None:
    env = {**base_env(settings), "MLOPS_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    namespace = unique_name("down").replace("-", "")
    running = start_ingestion(env, namespace, tmp_path, timeout_s=60, wait_ready=False)
    try:
        ready = answers(f"{running.url}/ready")
        assert ready is not None and ready.status_code == 503
        assert {"kafka", "shipped_specs"} <= set(ready.json()["failing"])

        url = running.url
        writes = [
            ("/datasets/loans/records", {"records": [{"applicant_id": "a"}]}),
            ("/datasets/loans/labels", {"labels": [{"record_id": "r", "label": 1}]}),
        ]
        for path, body in writes:
            answer = http.post(f"{url}{path}", json=body, timeout=60)
            assert answer.status_code == 503, answer.text
            assert answer.json()["reason"] == "broker_unavailable"
            assert "ids" not in answer.json() and "accepted" not in answer.json()
        spec = DatasetSpec.from_file(SHIPPED_SPECS / "loans.yaml").model_dump(mode="json")
        assert http.post(f"{url}/datasets", json=spec, timeout=60).status_code == 503
        upload = http.post(
            f"{url}/datasets/loans/files",
            content=b"applicant_id\na\n",
            headers={"content-type": "text/csv"},
            timeout=60,
        )
        assert upload.status_code == 503
    finally:
        code = running.stop()
    assert code == 0, running.output(skip_prefix="%")
