"""One trace per ingested batch: ingestion -> validation -> feature store, read back from
Jaeger's HTTP query API with its parent-child structure."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from shared.datasets.sources import agrawal_records
from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import unique_name
from tests.services import RunningService, namespace_topics, start_service
from tests.waiting import wait_until

SERVICES = ("ingestion", "validation", "feature-store")


@pytest.fixture(scope="module")
def data_plane(
    admin: AdminClient, settings: PlatformSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, RunningService]]:
    namespace = unique_name("trace").replace("-", "")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["MLOPS_KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    logs = tmp_path_factory.mktemp("data-traces")
    services: dict[str, RunningService] = {}
    with namespace_topics(admin, namespace):
        try:
            for name in ("feature_store", "validation", "ingestion"):
                services[name] = start_service(name, namespace, env, logs)
            yield services
        finally:
            for service in services.values():
                service.stop()


def jaeger_trace(settings: PlatformSettings, trace_id: str) -> dict[str, Any] | None:
    try:
        answer = httpx.get(f"{settings.jaeger_query_url}/api/traces/{trace_id}", timeout=5)
    except httpx.TransportError:
        return None
    data = answer.json().get("data") or [] if answer.status_code == 200 else []
    return data[0] if data else None


def services_in(trace: dict[str, Any] | None) -> set[str]:
    if trace is None:
        return set()
    return {process["serviceName"] for process in trace["processes"].values()}


def test_an_ingested_batch_is_one_trace_through_ingestion_validation_and_the_feature_store(
    data_plane: dict[str, RunningService], settings: PlatformSettings
) -> None:
    assert settings.jaeger_query_url, "MLOPS_JAEGER_QUERY_URL must point at Jaeger's query API"
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    start = datetime.now(UTC) - timedelta(hours=1)
    records = [row for row, _ in agrawal_records(20, seed=3, start=start)]
    answer = httpx.post(
        f"{data_plane['ingestion'].url}/datasets/loans/records",
        json={"records": records},
        headers={"traceparent": f"00-{trace_id}-{caller_span}-01"},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text

    trace = wait_until(
        lambda: (t := jaeger_trace(settings, trace_id)) and set(SERVICES) <= services_in(t) and t,
        what=f"trace {trace_id} in Jaeger with spans of {SERVICES}",
        timeout_s=90,
        interval_s=1,
    )
    spans = {span["spanID"]: span for span in trace["spans"]}
    service_of = {pid: process["serviceName"] for pid, process in trace["processes"].items()}

    def service(span: dict[str, Any]) -> str:
        return service_of[span["processID"]]

    def parent(span: dict[str, Any]) -> dict[str, Any] | None:
        ids = [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"]
        return spans.get(ids[0]) if ids else None

    def ancestors(span: dict[str, Any]) -> list[str]:
        chain, current = [], parent(span)
        while current is not None:
            chain.append(service(current))
            current = parent(current)
        return chain

    assert all(span["traceID"].rjust(32, "0") == trace_id for span in spans.values())
    roots = [span for span in spans.values() if parent(span) is None]
    assert roots and all(service(root) == "ingestion" for root in roots), [
        (service(r), r["operationName"]) for r in roots
    ]
    for name, upstream in (("validation", "ingestion"), ("feature-store", "validation")):
        consumers = [
            s
            for s in spans.values()
            if service(s) == name and s["operationName"].endswith("process")
        ]
        assert consumers, f"{name} has a processing span in the trace"
        for span in consumers:
            assert upstream in ancestors(span), (name, span["operationName"], ancestors(span))
    published = [
        s
        for s in spans.values()
        if service(s) == "feature-store" and s["operationName"].endswith("publish")
    ]
    assert published and all(
        service(parent(s) or {}) == "feature-store" for s in published if parent(s)
    )


def test_batches_sent_on_one_keep_alive_connection_are_separate_traces(
    data_plane: dict[str, RunningService], settings: PlatformSettings
) -> None:
    """uvicorn hands a request that arrives while the previous one finishes (always for bodies
    over 64 KiB) that request's context: without a fresh context per request, a batch sent
    without a traceparent would join the previous batch's trace."""
    start = datetime.now(UTC) - timedelta(hours=1)
    rows = [row for row, _ in agrawal_records(1500, seed=4, start=start)]
    batches = [rows[0:500], rows[500:1000], rows[1000:1500]]
    first, last = secrets.token_hex(16), secrets.token_hex(16)
    url = f"{data_plane['ingestion'].url}/datasets/loans/records"
    with httpx.Client(timeout=30) as client:
        for batch, trace_id in zip(batches, (first, None, last), strict=True):
            headers = (
                {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"} if trace_id else {}
            )
            answer = client.post(url, json={"records": batch}, headers=headers)
            assert answer.status_code == 202, answer.text
            assert len(answer.request.content) > 65_536

    wait_until(
        lambda: set(SERVICES) <= services_in(jaeger_trace(settings, last)),
        what=f"the last batch's trace {last} in Jaeger",
        timeout_s=90,
        interval_s=1,
    )
    trace = jaeger_trace(settings, first)
    assert trace is not None
    requests = [s for s in trace["spans"] if s["operationName"] == "POST /datasets/{name}/records"]
    assert len(requests) == 1, "the batch sent after the first one is not in the first's trace"
