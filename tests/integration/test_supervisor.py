"""The local stack's supervisor: a service killed with SIGKILL is back within seconds, nothing
sent to the platform before or during the outage is lost, and `stack.sh status` (what
`make status` runs) reports the restart.

This is about the stack `make up` / `make test` started from this checkout (its services on
the ports `stack.sh status` reports, namespace `mlops`), not about services a test starts
itself. Against a stack whose services are not supervised (started by an older checkout) it
is skipped, saying so."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from shared.settings import PlatformSettings
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "infra" / "stack" / "stack.sh"
VICTIM = "validation"
# From SIGKILL to /live answering again: supervisord respawns at once (about a second), the
# rest is the service's own start (imports, connections).
BACK_WITHIN_S = 45.0
# Until every record is validated: a consumer group moves the dead member's partitions
# to the new one once the broker's session timeout expires.
ALL_VALIDATED_WITHIN_S = 180.0

SERVICE_LINE = re.compile(
    r"^svc-(?P<name>\w+)\s+pid=(?P<pid>\S+)\s+port=(?P<port>\d+)\s+(?P<state>[A-Z]+)\s+"
    r"uptime=\S+\s+restarts=(?P<restarts>\d+)\s+last-restart=\S+\s+(?P<health>healthy|down)$"
)


@dataclass(frozen=True)
class Supervised:
    pid: int | None
    port: int
    state: str
    restarts: int
    healthy: bool


def stack_status() -> tuple[str, dict[str, Supervised]]:
    """`stack.sh status` of this checkout's stack: its text and the supervised services."""
    result = subprocess.run(
        [str(STACK), "status"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    services: dict[str, Supervised] = {}
    for line in result.stdout.splitlines():
        match = SERVICE_LINE.match(line.strip())
        if match:
            pid = match["pid"]
            services[match["name"]] = Supervised(
                pid=int(pid) if pid.isdigit() else None,
                port=int(match["port"]),
                state=match["state"],
                restarts=int(match["restarts"]),
                healthy=match["health"] == "healthy",
            )
    return result.stdout, services


def stack_env_bootstrap() -> str | None:
    path = Path(os.environ.get("MLOPS_HOME", REPO / ".local")) / "stack.env"
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("MLOPS_KAFKA_BOOTSTRAP_SERVERS="):
            return line.split("=", 1)[1]
    return None


@pytest.fixture
def supervised_stack(settings: PlatformSettings) -> dict[str, Supervised]:
    text, services = stack_status()
    supervisor_up = any(
        line.startswith("supervisord ") and line.split()[-1] != "down" for line in text.splitlines()
    )
    if not supervisor_up or VICTIM not in services or "ingestion" not in services:
        pytest.skip(
            "the running stack's services are not supervised by this checkout's make up "
            "(started by an older checkout, or not started): `infra/stack/stack.sh down services && make up` supervises them"
            f"; stack.sh status said:\n{text}"
        )
    if stack_env_bootstrap() != settings.kafka_bootstrap_servers:
        pytest.skip(
            f"the tests point at Kafka {settings.kafka_bootstrap_servers}, not at the stack "
            f"this checkout started ({stack_env_bootstrap()}); load .local/stack.env"
        )
    assert services[VICTIM].healthy and services["ingestion"].healthy, text
    return services


def live(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/live", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Readings:
    """Records of a dataset of its own, sent through the stack's ingestion."""

    def __init__(self, ingestion_port: int) -> None:
        self.dataset = f"supervised_{uuid.uuid4().hex[:12]}"
        self.url = f"http://127.0.0.1:{ingestion_port}/datasets"
        self.client = httpx.Client(timeout=30)
        self.sent: list[str] = []
        self.start = datetime.now(UTC) - timedelta(minutes=5)

    def register(self) -> None:
        spec = {
            "name": self.dataset,
            "description": "records of tests/integration/test_supervisor.py",
            "entity_key": "sensor_id",
            "event_time": "measured_at",
            "record_id": "reading_id",
            "features": [{"name": "x", "type": "numeric"}],
        }
        response = self.client.post(self.url, json=spec)
        assert response.status_code in (200, 201), response.text

    def send(self, count: int) -> list[str]:
        first = len(self.sent)
        records: list[dict[str, Any]] = [
            {
                "reading_id": f"{self.dataset}-{n}",
                "sensor_id": f"s{n % 7}",
                "measured_at": (self.start + timedelta(milliseconds=n)).isoformat(),
                "x": n / 10,
            }
            for n in range(first, first + count)
        ]
        response = self.client.post(f"{self.url}/{self.dataset}/records", json={"records": records})
        assert response.status_code == 202, response.text
        ids = [r["reading_id"] for r in records]
        self.sent.extend(ids)
        return ids


def validated_reader(bootstrap: str, topic: str) -> Consumer:
    """A reader of `topic` from its current end: only what is validated from now on."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"supervisor-test-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    assert metadata.error is None, metadata.error
    ends = []
    for partition in metadata.partitions:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        ends.append(TopicPartition(topic, partition, high if high >= 0 else OFFSET_END))
    consumer.assign(ends)
    return consumer


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_service_killed_with_sigkill_is_back_within_seconds_and_loses_nothing(
    supervised_stack: dict[str, Supervised], settings: PlatformSettings
) -> None:
    before = supervised_stack[VICTIM]
    victim_pid = before.pid
    assert victim_pid is not None and "services.validation" in cmdline(victim_pid), (
        f"stack.sh status names pid {victim_pid} for {VICTIM}, which is {cmdline(victim_pid)!r}"
    )
    readings = Readings(supervised_stack["ingestion"].port)
    readings.register()
    reader = validated_reader(
        settings.kafka_bootstrap_servers, f"{settings.namespace}.data.validated"
    )
    try:
        readings.send(200)  # before: some are in flight when the kill lands

        os.kill(victim_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: not live(before.port), what=f"{VICTIM}'s /live to stop answering")
        during = 0
        while not live(before.port):  # the outage: ingestion still takes records
            during += len(readings.send(20))
            assert time.monotonic() - killed_at < BACK_WITHIN_S, (
                f"{VICTIM} not back {BACK_WITHIN_S}s after SIGKILL; stack.sh status:\n"
                f"{stack_status()[0]}"
            )
            time.sleep(0.5)
        back_after = time.monotonic() - killed_at
        assert during > 0, "no record was sent while the service was down"
        readings.send(100)  # after

        expected = set(readings.sent)
        seen: set[str] = set()
        foreign = 0

        def all_validated() -> bool:
            nonlocal foreign
            for message in reader.consume(500, 0.5):
                if message.error() is not None:
                    continue
                data = json.loads(message.value())["data"]
                if data.get("dataset") == readings.dataset:
                    assert data["record_id"] in expected, data
                    seen.add(data["record_id"])
                else:
                    foreign += 1
            return seen == expected

        wait_until(
            all_validated,
            what=f"all {len(expected)} records of {readings.dataset} on "
            f"{settings.namespace}.data.validated (missing {len(expected - seen)})",
            timeout_s=ALL_VALIDATED_WITHIN_S,
            interval_s=0,
        )
    finally:
        reader.close()
        readings.client.close()

    text, after = stack_status()
    restarted = after[VICTIM]
    assert restarted.pid is not None and restarted.pid != victim_pid, text
    assert "services.validation" in cmdline(restarted.pid), text
    assert restarted.state == "RUNNING" and restarted.healthy, text
    assert restarted.restarts == before.restarts + 1, f"the restart is not reported:\n{text}"
    print(f"{VICTIM} back after {back_after:.1f}s; {len(expected)} records validated\n{text}")
