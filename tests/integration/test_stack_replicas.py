"""`MLOPS_REPLICAS` in the local stack: a second set of services (`STACK_SERVICES`: the ones
these tests need), on the running Kafka, PostgreSQL and MinIO but in a namespace and on
ports of its own, with two replicas of ingestion, validation and serving under supervisord
behind HAProxy."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from infra.processes import drop_namespace_state
from shared.datasets.infer import spec_to_yaml
from shared.kafka.topics import TopicCatalog
from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import unique_name
from tests.integration.test_validation_service import SHOP, Message, read_to_end, shop_values
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "infra" / "stack" / "stack.sh"
REPLICAS = "ingestion=2 validation=2 serving=2"
PORT_BASE = 18101  # ingestion; validation 18102, serving 18106
# stack.sh's replica ports: REPLICA_PORT_BASE (SERVICE_PORT_BASE + 10000) + 10 x (port - 8000) + n
VALIDATION_1 = PORT_BASE + 10_000 + 10 * (8002 - 8000) + 1


@dataclass(frozen=True)
class ReplicatedStack:
    home: Path
    namespace: str
    env: dict[str, str]

    def url(self, port_offset: int) -> str:
        return f"http://127.0.0.1:{PORT_BASE + port_offset}"

    def stack(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", str(STACK), *args], env=self.env, capture_output=True, text=True, timeout=300
        )
        assert not check or done.returncode == 0, done.stdout + done.stderr
        return done

    def supervisorctl(self, *args: str) -> str:
        conf = self.home / "supervisor" / "supervisord.conf"
        done = subprocess.run(
            [str(REPO / ".venv/bin/supervisorctl"), "-c", str(conf), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.stdout + done.stderr


@pytest.fixture(scope="module")
def replicated(settings: PlatformSettings, admin: AdminClient) -> Iterator[ReplicatedStack]:
    main_home = Path(os.environ.get("MLOPS_HOME", REPO / ".local"))
    home = Path(tempfile.mkdtemp(prefix="mr", dir="/tmp"))  # a unix socket path is short
    shutil.copy(main_home / "credentials.env", home / "credentials.env")
    namespace = unique_name("replicas").replace("-", "")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")},
        "MLOPS_HOME": str(home),
        "SERVICE_PORT_BASE": str(PORT_BASE),
        "CONSOLE_PORT": str(PORT_BASE - 1),
        "STACK_NAMESPACE": namespace,
        "MLOPS_REPLICAS": REPLICAS,
        "STACK_SERVICES": "ingestion validation registry serving",
    }
    stack = ReplicatedStack(home, namespace, env)
    try:
        stack.stack("up", "services")
        yield stack
    finally:
        print(stack.stack("down", "services", check=False).stderr[-2000:])
        catalog = TopicCatalog.load()
        admin.delete_topics(
            [spec.full_name(namespace) for spec in catalog.specs.values()], operation_timeout=30
        )
        if settings.database_url is not None:
            drop_namespace_state(settings.database_url.get_secret_value(), namespace)
        shutil.rmtree(home, ignore_errors=True)


def test_status_names_every_replica_and_the_load_balancer(replicated: ReplicatedStack) -> None:
    status = replicated.stack("status", check=False).stdout
    lines = {line.split()[0]: line for line in status.splitlines() if line.strip()}
    for program in ("ingestion", "validation", "serving"):
        for index in (1, 2):
            assert lines[f"svc-{program}-{index}"].endswith("healthy"), status
        assert f"svc-{program}" not in lines, "a replicated service has no program of its name"
    assert lines["svc-registry"].endswith("healthy"), "an unreplicated service runs once"
    assert "18101,18102,18106" in lines["haproxy"] and lines["haproxy"].endswith("healthy")


def test_a_killed_replica_costs_no_request_and_is_restarted(replicated: ReplicatedStack) -> None:
    """Requests to the service's one port keep succeeding while a replica is SIGKILLed:
    HAProxy sends them to the other one until supervisord has restarted it."""
    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def traffic() -> None:
        nonlocal answered
        with httpx.Client(base_url=replicated.url(1), timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.get("/stats")
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text[:200]}")
                except httpx.HTTPError as error:
                    failures.append(repr(error))
                answered += 1

    before = replicated.supervisorctl("pid", "validation-1").strip()
    assert before.isdigit(), before
    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        wait_until(lambda: answered > 50, what="traffic through haproxy", timeout_s=30)
        os.kill(int(before), 9)
        wait_until(
            lambda: (
                replicated.supervisorctl("pid", "validation-1").strip() not in ("", "0", before)
            ),
            what="supervisord to restart validation-1",
            timeout_s=60,
        )
        wait_until(
            lambda: answers(f"http://127.0.0.1:{VALIDATION_1}/live"),
            what="the restarted replica to answer",
            timeout_s=90,
        )
        settled = answered
        wait_until(lambda: answered > settled + 50, what="traffic after the restart", timeout_s=30)
    finally:
        stop.set()
        worker.join(30)
    assert failures == [], f"{len(failures)} of {answered} requests failed: {failures[:5]}"


def test_records_posted_to_replicated_ingestion_are_validated_once(
    replicated: ReplicatedStack, bootstrap: str
) -> None:
    ingestion = replicated.url(0)
    answer = httpx.post(
        f"{ingestion}/datasets",
        content=spec_to_yaml(SHOP),
        headers={"content-type": "application/yaml"},
        timeout=30,
    )
    assert answer.status_code in (200, 201), answer.text
    sent = 0
    with httpx.Client(base_url=ingestion, timeout=30) as client:
        for batch in range(10):
            records = [shop_values(f"r-{batch}-{n}", customer=f"c-{n % 13}") for n in range(50)]
            posted = client.post("/datasets/shop/records", json={"records": records})
            assert posted.status_code == 202, posted.text
            sent += len(records)
    validated = f"{replicated.namespace}.data.validated"
    messages = read_to_end_at_least(bootstrap, validated, sent)
    ids = [message.json()["data"]["record_id"] for message in messages]
    assert sorted(set(ids)) == sorted(ids), "a record validated twice"
    assert len(ids) == sent
    # Each replica counted the partitions it read; any of them answers for all.
    replicas = [VALIDATION_1, VALIDATION_1 + 1]
    local = [
        httpx.get(f"http://127.0.0.1:{port}/stats/shop", params={"scope": "local"}).json()
        for port in replicas
    ]
    assert all(part["records"] > 0 for part in local), "both replicas read part of the stream"
    assert sum(part["records"] for part in local) == sent
    for _ in range(4):  # haproxy alternates between the replicas
        merged = httpx.get(f"{replicated.url(1)}/stats/shop", timeout=10).json()
        assert merged["records"] == sent and merged["replicas"] == 2


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def read_to_end_at_least(bootstrap: str, topic: str, count: int) -> list[Message]:
    found: list[Message] = []

    def enough() -> bool:
        found[:] = read_to_end(bootstrap, topic)
        return len(found) >= count

    wait_until(enough, what=f"{count} records in {topic}", timeout_s=120, interval_s=2)
    return found
