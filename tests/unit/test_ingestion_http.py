"""The HTTP API on fakes of the ports: statuses, bodies and refusals, no Kafka needed."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from services.ingestion.bootstrap import build_app
from services.ingestion.domain.ingestion import Ingestion
from services.ingestion.settings import IngestionSettings
from shared.datasets.spec import SHIPPED_SPECS
from shared.service import ServiceRuntime
from shared.settings import PlatformSettings
from tests.unit.test_ingestion_usecases import FakePublisher, FakeSpecs, shipped

LIMIT = 4096


@pytest.fixture
def fakes() -> tuple[FakeSpecs, FakePublisher]:
    return FakeSpecs([shipped("loans")]), FakePublisher()


@pytest.fixture
def client(fakes: tuple[FakeSpecs, FakePublisher]) -> Iterator[TestClient]:
    specs, publisher = fakes
    settings = IngestionSettings(max_body_bytes=LIMIT, file_chunk_rows=4)
    runtime = ServiceRuntime(name="ingestion", settings=PlatformSettings())
    with TestClient(build_app(runtime, Ingestion(specs, publisher), settings)) as test_client:
        yield test_client


def test_a_batch_is_accepted_with_its_ids_once_published(
    client: TestClient, fakes: tuple[FakeSpecs, FakePublisher]
) -> None:
    answer = client.post("/datasets/loans/records", json={"records": [{"applicant_id": "a"}] * 3})
    assert answer.status_code == 202
    body = answer.json()
    assert body["accepted"] == 3 and body["spec_version"] == 1
    assert body["ids"] == [emit.event.id for emit in fakes[1].emitted]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b'{"records": [', 400, "malformed_body"),
        (b'{"records": []}', 422, "empty_batch"),
        (b'{"records": [1]}', 422, "invalid_row"),
        (b'{"records": [{"a": {"b": 1}}]}', 422, "invalid_row"),
        (b'["not", "a", "batch"]', 422, "not_a_batch"),
        (b'{"records": [{"a": "' + b"x" * LIMIT + b'"}]}', 413, "too_large"),
    ],
)
def test_what_is_not_a_batch_gets_its_status_and_reason(
    client: TestClient, body: bytes, status: int, reason: str
) -> None:
    answer = client.post(
        "/datasets/loans/records", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    assert answer.json()["reason"] == reason
    assert isinstance(answer.json()["detail"], str)


def test_an_oversize_body_is_refused_even_without_a_content_length(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"records": ['
        for _ in range(100):
            yield b'{"a": 1}, ' * 10

    answer = client.post(
        "/datasets/loans/records", content=chunks(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413
    assert f"limit of {LIMIT} bytes" in answer.json()["detail"]


def test_an_unknown_dataset_is_404_listing_the_known_ones(client: TestClient) -> None:
    answer = client.post("/datasets/nope/records", json={"records": [{"a": 1}]})
    assert answer.status_code == 404
    assert answer.json()["known"] == ["loans"]
    assert "known datasets: loans" in answer.json()["detail"]


def test_a_broker_down_is_503_for_every_write(
    client: TestClient, fakes: tuple[FakeSpecs, FakePublisher]
) -> None:
    specs, publisher = fakes
    publisher.fail_from = 1
    for path, body in [
        ("/datasets/loans/records", {"records": [{"a": 1}]}),
        ("/datasets/loans/labels", {"labels": [{"record_id": "r", "label": 1}]}),
    ]:
        answer = client.post(path, json=body)
        assert answer.status_code == 503 and answer.json()["reason"] == "broker_unavailable"
    publisher.retry_after_s = 2.4
    answer = client.post("/datasets/loans/records", json={"records": [{"a": 1}]})
    assert answer.status_code == 503 and answer.headers["retry-after"] == "3"
    specs.down = True
    answer = client.post("/datasets", json=shipped("loans").model_dump(mode="json"))
    assert answer.status_code == 503
    assert client.get("/datasets").status_code == 503
    assert publisher.emitted == []


def test_spec_registration_answers_201_for_a_new_version_and_200_when_known(
    client: TestClient,
) -> None:
    loans_yaml = (SHIPPED_SPECS / "loans.yaml").read_bytes()
    same = client.post("/datasets", content=loans_yaml, headers={"content-type": "text/yaml"})
    assert same.status_code == 200
    assert same.json() == {
        "name": "loans",
        "version": 1,
        "fingerprint": shipped("loans").fingerprint(),
    }
    changed = shipped("loans").model_dump(mode="json") | {"description": "v2"}
    created = client.post("/datasets", json=changed)
    assert created.status_code == 201 and created.json()["version"] == 2
    assert client.post("/datasets", json=changed).status_code == 200
    bad = client.post("/datasets", json={**changed, "features": []})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == "features"
    listed = client.get("/datasets").json()["datasets"]
    assert [(d["name"], d["version"]) for d in listed] == [("loans", 2)]
    latest = client.get("/datasets/loans").json()
    assert latest["version"] == 2 and latest["spec"]["description"] == "v2"
    first = client.get("/datasets/loans/versions/1").json()
    assert first["spec"]["description"] == shipped("loans").description
    assert client.get("/datasets/loans/versions/9").status_code == 404
    assert client.get("/datasets/nope").status_code == 404


def loans_csv(rows: int) -> bytes:
    frame = pd.DataFrame(
        {
            "applicant_id": [f"a-{i}" for i in range(rows)],
            "age": range(rows),
            "elevel": ["1"] * rows,
        }
    )
    return frame.to_csv(index=False).encode()


def test_files_upload_as_multipart_or_raw_body(
    client: TestClient, fakes: tuple[FakeSpecs, FakePublisher]
) -> None:
    answer = client.post(
        "/datasets/loans/files", files={"file": ("loans.csv", loans_csv(10), "text/csv")}
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 10 and answer.json()["chunks"] == 3
    raw = client.post(
        "/datasets/loans/files", content=loans_csv(5), headers={"content-type": "text/csv"}
    )
    assert raw.status_code == 202 and raw.json()["accepted"] == 5
    buffer = io.BytesIO()
    pd.read_csv(io.BytesIO(loans_csv(6))).to_parquet(buffer)
    parquet = client.post(
        "/datasets/loans/files?format=parquet",
        content=buffer.getvalue(),
        headers={"content-type": "application/octet-stream"},
    )
    assert parquet.status_code == 202 and parquet.json()["accepted"] == 6
    assert len(fakes[1].emitted) == 21
    assert fakes[1].emitted[-1].event.data.values == {
        "applicant_id": "a-5",
        "age": 5,
        "elevel": 1,
    }, "parquet keeps the file's types (pandas read elevel as a number)"


def test_files_are_not_subject_to_the_body_limit(client: TestClient) -> None:
    big = loans_csv(1000)
    assert len(big) > LIMIT
    answer = client.post("/datasets/loans/files", content=big, headers={"content-type": "text/csv"})
    assert answer.status_code == 202 and answer.json()["accepted"] == 1000


@pytest.mark.parametrize(
    ("content", "headers", "status", "reason"),
    [
        (b"a,b\n1,2,3\n", {"content-type": "text/csv"}, 422, "unreadable_file"),
        (b"", {"content-type": "text/csv"}, 422, "empty_batch"),
        (b"abc", {"content-type": "application/octet-stream"}, 415, "unsupported_format"),
        (b"abc", {"content-type": "application/vnd.apache.parquet"}, 422, "unreadable_file"),
    ],
)
def test_unreadable_files_are_refused_with_the_reason(
    client: TestClient, content: bytes, headers: dict, status: int, reason: str
) -> None:
    answer = client.post("/datasets/loans/files", content=content, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.json()["reason"] == reason


def test_a_multipart_upload_needs_a_file_field(client: TestClient) -> None:
    answer = client.post("/datasets/loans/files", files={"upload": ("x.csv", b"a\n1\n")})
    assert answer.status_code == 422 and '"file"' in answer.json()["detail"]


def test_labels_are_accepted_and_bad_ones_refused(client: TestClient) -> None:
    answer = client.post(
        "/datasets/loans/labels",
        json={"labels": [{"record_id": "app-1", "label": 1, "labelled_at": "2024-01-01T00:00Z"}]},
    )
    assert answer.status_code == 202 and answer.json()["accepted"] == 1
    bad = client.post("/datasets/loans/labels", json={"labels": [{"label": 1}]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["column"] == "record_id"


def test_metrics_count_accepted_records_labels_and_refusals(client: TestClient) -> None:
    client.post("/datasets/loans/records", json={"records": [{"a": 1}]})
    client.post("/datasets/loans/labels", json={"labels": [{"record_id": "r", "label": 1}]})
    client.post("/datasets/nope/records", json={"records": [{"a": 1}]})
    text = client.get("/metrics").text
    assert 'mlops_ingestion_records_accepted_total{dataset="loans",via="batch"}' in text
    assert 'mlops_ingestion_labels_accepted_total{dataset="loans"}' in text
    assert 'mlops_ingestion_refusals_total{reason="unknown_dataset"}' in text


def test_the_api_is_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/datasets",
        "/datasets/{name}",
        "/datasets/{name}/versions/{version}",
        "/datasets/{name}/records",
        "/datasets/{name}/files",
        "/datasets/{name}/labels",
    } <= set(paths)
    assert "multipart/form-data" in json.dumps(paths["/datasets/{name}/files"])


def test_a_parquet_file_uploads_as_multipart(
    client: TestClient, fakes: tuple[FakeSpecs, FakePublisher]
) -> None:
    buffer = io.BytesIO()
    pd.read_csv(io.BytesIO(loans_csv(9))).to_parquet(buffer)
    answer = client.post(
        "/datasets/loans/files",
        files={"file": ("loans.parquet", buffer.getvalue(), "application/octet-stream")},
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 9 and answer.json()["chunks"] == 3
