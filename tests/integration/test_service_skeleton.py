"""The service skeleton: HTTP health, metrics and docs, and its consumer loop, in one process."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
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


def test_asked_to_stop_a_service_drains_then_answers_what_it_was_given_and_exits(
    admin: AdminClient, subprocess_env: dict[str, str]
) -> None:
    """SIGTERM: /live and /ready answer 503 at once while the other routes still answer
    (MLOPS_SHUTDOWN_DRAIN_S, for a load balancer to take the process out); then the port
    closes, a request under way is still answered, and the process ends with status 0."""
    source, target, dead = unique_name("drain-in"), unique_name("drain-out"), unique_name("dlq")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**subprocess_env, "MLOPS_SHUTDOWN_DRAIN_S": "8"}
    with topics(admin, source, target, dead):
        service = subprocess.Popen(
            [
                sys.executable, "-m", "tests.integration.procs.example_service",
                "--port", str(port), "--source-topic", source, "--target-topic", target,
                "--dead-letter", dead, "--group", unique_name("drain-group"),
            ],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        answers: list[httpx.Response] = []
        try:
            wait_until(
                lambda: (r := get(f"{base}/ready")) is not None and r.status_code == 200,
                what="/ready to report ready",
                timeout_s=60,
            )
            under_way = threading.Thread(
                target=lambda: answers.append(httpx.get(f"{base}/slow?seconds=12", timeout=60))
            )
            under_way.start()
            service.send_signal(signal.SIGTERM)
            stopping = wait_until(
                lambda: (r := get(f"{base}/live")) is not None and r.status_code == 503 and r,
                what="/live to say the service is stopping",
            )
            assert stopping.json() == {"status": "stopping"}
            assert httpx.get(f"{base}/ready", timeout=5).status_code == 503
            assert httpx.get(f"{base}/hello", timeout=5).status_code == 200, "still serving"
            wait_until(
                lambda: get(f"{base}/hello") is None,
                what="the port to close after the drain",
                timeout_s=30,
            )
            under_way.join(60)
            output, _ = service.communicate(timeout=60)
        finally:
            if service.poll() is None:
                service.kill()
    assert [a.json() for a in answers] == [{"slept": 12}], "the request under way was answered"
    assert service.returncode == 0, output[-3000:]
