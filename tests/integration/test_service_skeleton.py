"""The service skeleton: HTTP health, metrics and docs, and its consumer loop, in one process."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime

import httpx
from confluent_kafka.admin import AdminClient

from shared.events import Event, RecordIngested
from shared.kafka.config import producer_config
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import read_all, topics, unique_name
from tests.waiting import wait_until


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.TransportError:
        return None


def test_service_serves_health_metrics_docs_and_runs_its_consumer_until_sigterm(
    settings: PlatformSettings, admin: AdminClient, bootstrap: str, subprocess_env: dict[str, str]
) -> None:
    source, target, dead = unique_name("svc-in"), unique_name("svc-out"), unique_name("svc-dlq")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with topics(admin, source, target, dead):
        service = subprocess.Popen(
            [
                sys.executable, "-m", "tests.integration.procs.example_service",
                "--port", str(port), "--source-topic", source, "--target-topic", target,
                "--dead-letter", dead, "--group", unique_name("svc-group"),
            ],
            env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            live = wait_until(lambda: get(f"{base}/live"), what="/live to answer", timeout_s=60)
            assert live.status_code == 200
            ready = wait_until(
                lambda: (r := get(f"{base}/ready")) is not None and r.status_code == 200 and r,
                what="/ready to report ready",
            )
            assert ready.json()["checks"] == ["kafka"]

            record = RecordIngested(
                dataset="svc", entity="e-1", values={"n": 1}, ingested_at=datetime.now(UTC)
            )
            sent = Event.create(record, source="test", subject="e-1")
            EventProducer(producer_config(settings, "svc-test")).publish_confirmed(
                [OutgoingMessage.for_event(source, sent)]
            )
            [message] = read_all(bootstrap, target, expected=1)
            forwarded = json.loads(message.value())
            assert forwarded["causationid"] == sent.id
            assert forwarded["correlationid"] == sent.correlationid
            assert forwarded["data"] == json.loads(sent.to_json_bytes())["data"]

            metrics = wait_until(
                lambda: (r := get(f"{base}/metrics")) and f'topic="{source}"' in r.text and r,
                what="/metrics to count the handled message",
            )
            assert "mlops_messages_handled_total" in metrics.text
            paths = httpx.get(f"{base}/openapi.json").json()["paths"]
            assert {"/live", "/ready", "/metrics", "/hello"} <= set(paths)
        finally:
            service.send_signal(signal.SIGTERM)
            output, _ = service.communicate(timeout=60)
    assert service.returncode == 0, output[-3000:]
