"""One trace crosses processes: the producer's trace context travels in Kafka headers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
from confluent_kafka.admin import AdminClient

from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import topics, unique_name
from tests.waiting import wait_until


def run_module(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_consumer_span_joins_the_producer_trace_and_jaeger_shows_both_processes(
    settings: PlatformSettings, admin: AdminClient, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    topic, dead = unique_name("trace-in"), unique_name("trace-dlq")
    producer_service, consumer_service = unique_name("bus-producer"), unique_name("bus-consumer")
    assert settings.otlp_endpoint, "MLOPS_OTLP_ENDPOINT must point at Jaeger's OTLP receiver"
    record = tmp_path / "handled.jsonl"
    with topics(admin, topic, dead):
        published = run_module(
            "tests.integration.procs.publish",
            "--topic",
            topic,
            "--count",
            "1",
            "--service",
            producer_service,
            env=subprocess_env,
        )
        assert published.returncode == 0, published.stderr
        sent = json.loads(published.stdout.strip().splitlines()[-1])
        consumed = run_module(
            "tests.integration.procs.consume",
            "--topic",
            topic,
            "--group",
            unique_name("trace-group"),
            "--dead-letter",
            dead,
            "--service",
            consumer_service,
            "--record",
            str(record),
            "--stop-after",
            "1",
            env=subprocess_env,
        )
        assert consumed.returncode == 0, consumed.stderr

    handled = [json.loads(line) for line in record.read_text().splitlines()]
    assert [h["event_id"] for h in handled] == sent["event_ids"]
    assert handled[0]["trace_id"] == sent["trace_id"]

    def trace_with_both_services() -> dict | None:
        try:
            response = httpx.get(
                f"{settings.jaeger_query_url}/api/traces/{sent['trace_id']}", timeout=5
            )
        except httpx.TransportError:
            return None
        if response.status_code != 200:
            return None
        data = response.json().get("data") or []
        if not data:
            return None
        services = {p["serviceName"] for p in data[0]["processes"].values()}
        return data[0] if {producer_service, consumer_service} <= services else None

    found = wait_until(
        trace_with_both_services,
        what="Jaeger to return the trace with both services",
        timeout_s=60,
        interval_s=1,
    )
    spans = {span["spanID"]: span for span in found["spans"]}
    process_service = {pid: p["serviceName"] for pid, p in found["processes"].items()}
    consumer_spans = [
        s
        for s in spans.values()
        if process_service[s["processID"]] == consumer_service
        and s["operationName"].endswith("process")
    ]
    assert consumer_spans, "the consumer's processing span is in the trace"
    parents = [
        ref["spanID"] for ref in consumer_spans[0]["references"] if ref["refType"] == "CHILD_OF"
    ]
    assert parents and process_service[spans[parents[0]]["processID"]] == producer_service
