"""Kafka brokers fail under load (issue 15, scenario 1), on a three-broker cluster of the test's
own (replication factor 3, min.insync.replicas 2), with HTTP and direct publishes and /predict
calls running throughout:

- data.raw's partition leader SIGKILLed five times, each started again and back in sync before
  the next: every acknowledged record ends exactly once in validated or rejected, /predict
  never fails, and a training asked afterwards registers a new version; meanwhile a replay of
  production runs into a replica namespace on the same cluster (scenario 9), which validates
  each replayed record once and trains its own model while production does not notice;
- two brokers of three down at once: ingestion answers 503 naming why (the first batch after
  its delivery timeout, the next ones at once), a direct acks=all publish is not confirmed
  either, nothing answered 202 is lost, and once both are back ingestion answers 202 again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.demo.loop import DATASET
from shared.events import Event, RecordIngested
from shared.kafka.committed import CommittedOffsets
from shared.kafka.config import producer_config
from shared.kafka.producer import DeliveryError, EventProducer, OutgoingMessage
from shared.settings import PlatformSettings
from tests.faults.brokers import (
    BROKERS,
    KafkaCluster,
    cluster_settings,
    kafka_cluster,
    platform_on,
    replication,
)
from tests.faults.conftest import MODEL, FaultPlatform
from tests.faults.effects import settled_row
from tests.faults.harness import (
    Row,
    SteadyLoad,
    ask_training,
    loans_feed,
    partition_ends,
    read_topic,
    steady_load,
    time_to_settle,
)
from tests.faults.replica import ReplayBeside, Replica, check_the_replica, replica_beside
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(1200)  # the module's platform starts in the first test's setup

KILLS = 5
DOWN_S = 4.0
OUTAGE_S = 20.0
DELIVERY_BOUND_S = 30.0
"""Ingestion's delivery timeout (15 s) and flush margin (5 s), with room to spare."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[KafkaCluster]:
    with kafka_cluster() as running:
        yield running


@pytest.fixture(scope="module")
def on_cluster(settings: PlatformSettings, cluster: KafkaCluster) -> PlatformSettings:
    return cluster_settings(settings, cluster)


@pytest.fixture(scope="module")
def platform(
    cluster: KafkaCluster, settings: PlatformSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultPlatform]:
    with platform_on(cluster, settings, tmp_path_factory.mktemp("faults-brokers")) as running:
        yield running


@pytest.fixture(scope="module")
def replica(
    cluster: KafkaCluster, settings: PlatformSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replica]:
    logs = tmp_path_factory.mktemp("faults-brokers-replica")
    brokers = {"MLOPS_KAFKA_BROKERS": str(BROKERS)}
    with replica_beside(cluster.admin(), settings, cluster.bootstrap, logs, brokers) as running:
        yield running


def raw_topic(platform: FaultPlatform) -> str:
    return f"{platform.namespace}.data.raw"


def versions(platform: FaultPlatform) -> int:
    answer = httpx.get(f"{platform.urls.registry}/models/{MODEL}/versions", timeout=10)
    answer.raise_for_status()
    return len(answer.json())


def assert_the_loop_closes(platform: FaultPlatform) -> None:
    """A training asked now reads the features, trains and registers a new version."""
    before = versions(platform)
    command_id = ask_training(platform.urls.training, MODEL, DATASET, "fault: after broker kills")
    url = f"{platform.urls.training}/runs/{command_id}"

    def finished() -> dict[str, Any] | None:
        answer = httpx.get(url, timeout=10)
        return answer.json() if answer.status_code == 200 else None

    run = wait_until(finished, what="the training asked after the faults", timeout_s=300)
    assert run["type"] == "mlops.ModelTrained", (
        f"{run['data'].get('reason')}; {feature_store_positions(platform)}"
    )
    wait_until(lambda: versions(platform) > before, what="a new registered version", timeout_s=120)


def feature_store_positions(platform: FaultPlatform) -> str:
    """Where the feature store's stream and offline writers stand (committed / end per
    partition): which of them stopped, when the loop does not close."""
    namespace, bootstrap = platform.namespace, platform.bootstrap
    groups = {
        f"{namespace}-feature-store": f"{namespace}.data.validated",
        f"{namespace}-feature-store-offline-features": f"{namespace}.data.features",
        f"{namespace}-feature-store-offline-labels": f"{namespace}.data.labels",
    }
    committed = CommittedOffsets({"bootstrap.servers": bootstrap})
    try:
        parts = []
        for group, topic in groups.items():
            ends = partition_ends(bootstrap, topic)
            done = committed.of(group, ends)
            where = ", ".join(f"{p}: {done.get((t, p), '-')}/{end}" for (t, p), end in ends.items())
            parts.append(f"{group} on {topic}: {where}")
        return "; ".join(parts)
    finally:
        committed.close()


def refused_over_http_only_with_503(load: SteadyLoad) -> list[str]:
    """The load's refusals that are not a 503 (HTTP) or an unconfirmed write (Kafka)."""
    return [r for r in load.refused if not r.startswith(("503 ", "DeliveryError("))]


def test_data_raw_leader_sigkilled_five_times_loses_nothing_applies_nothing_twice(
    cluster: KafkaCluster,
    platform: FaultPlatform,
    replica: Replica,
    on_cluster: PlatformSettings,
    matrix: list[Row],
    tmp_path: Path,
) -> None:
    raw = raw_topic(platform)
    assert replication(cluster, raw) == (3, "2")
    specs_before = partition_ends(platform.bootstrap, f"{platform.namespace}.data.specs")
    load = steady_load(on_cluster, platform.namespace, platform.urls, MODEL, 611)
    killed: list[int] = []
    replaying: ReplayBeside | None = None
    try:
        time.sleep(3)
        for kill in range(KILLS):
            if kill == 1:
                replaying = ReplayBeside(platform, replica, tmp_path).start()
            started = time.monotonic()
            leader = cluster.leader(raw, partition=kill % 3)
            cluster.kill(leader)
            killed.append(leader)
            time.sleep(DOWN_S)
            cluster.up()
            cluster.wait_all_in_sync()
            took = time.monotonic() - started
            print(f"kill {kill + 1}: node {leader}, back in sync after {took:.0f}s")
        recovery_s = time_to_settle(load, platform.bootstrap, platform.namespace)
        time.sleep(3)  # the loop still flows afterwards
    finally:
        load.stop()
    print(f"killed nodes {killed}; refused batches: {len(load.refused)} {load.refused[:2]}")
    scenario = f"data.raw's leader SIGKILLed {KILLS} times (3 brokers)"
    settled_row(scenario, load, platform.bootstrap, platform.namespace, recovery_s, matrix)

    assert len(killed) == KILLS
    assert load.predict_failures == [], f"/predict failed: {load.predict_failures[:3]}"
    assert refused_over_http_only_with_503(load) == []
    assert [n for n, s in platform.services.items() if s.process.poll() is not None] == []
    assert replaying is not None
    replaying.join()
    trained = [
        message
        for message in read_topic(platform.bootstrap, f"{platform.namespace}.models.trained")
        if (message.key() or b"") == MODEL.encode()
    ]
    check_the_replica(platform, replica, specs_before, trained, "leader kills", matrix)


def test_after_the_leader_kills_a_training_asked_registers_a_new_version(
    platform: FaultPlatform,
) -> None:
    assert_the_loop_closes(platform)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    retry_after: str | None
    took_s: float
    ids: list[str]


def post(url: str, batch: list[dict[str, Any]]) -> Answer:
    started = time.monotonic()
    answer = httpx.post(
        f"{url}/datasets/{DATASET}/records", json={"records": batch}, timeout=DELIVERY_BOUND_S
    )
    took_s = time.monotonic() - started
    return Answer(
        answer.status_code,
        answer.json(),
        answer.headers.get("retry-after"),
        took_s,
        [r["application_id"] for r in batch],
    )


def publish_directly(settings: PlatformSettings, topic: str, batch: list[dict[str, Any]]) -> str:
    """An acks=all publish of `batch` to data.raw: "confirmed" or why not."""
    producer = EventProducer(producer_config(settings, "fault-direct"))
    messages = [
        OutgoingMessage.for_event(
            topic,
            Event.create(
                RecordIngested(
                    dataset=DATASET,
                    entity=r["applicant_id"],
                    values=r,
                    ingested_at=datetime.now(UTC),
                ),
                source="fault-direct",
            ),
            r["applicant_id"],
        )
        for r in batch
    ]
    try:
        producer.publish_confirmed(messages, timeout=10)
    except DeliveryError as error:
        return f"not confirmed: {error}"
    return "confirmed"


def test_two_brokers_down_ingestion_answers_503_and_acknowledges_nothing_it_cannot_keep(
    cluster: KafkaCluster,
    platform: FaultPlatform,
    on_cluster: PlatformSettings,
    matrix: list[Row],
) -> None:
    raw = raw_topic(platform)
    ingestion = platform.urls.ingestion
    pool = list(islice(loans_feed(MODEL).stream(613), 1000))
    batches = iter([pool[first : first + 10] for first in range(0, len(pool), 10)])
    probes: list[Answer] = []
    acked_by_probes: set[str] = set()
    load = steady_load(on_cluster, platform.namespace, platform.urls, MODEL, 612)
    try:
        time.sleep(3)
        survivor = cluster.leader(raw, partition=0)
        down = [node for node in (1, 2, 3) if node != survivor]
        for node in down:
            cluster.kill(node)
        with ThreadPoolExecutor(1) as direct:
            direct_outcome = direct.submit(publish_directly, on_cluster, raw, next(batches))
            outage_ends = time.monotonic() + OUTAGE_S
            while time.monotonic() < outage_ends or len(probes) < 3:
                probes.append(post(ingestion, next(batches)))
                time.sleep(0.3)
            direct_said = direct_outcome.result()
        cluster.up()
        back = time.monotonic()
        cluster.wait_all_in_sync()
        after = wait_until(
            lambda: (answer := post(ingestion, next(batches))).status == 202 and answer,
            what="ingestion to answer 202 again",
            timeout_s=120,
            interval_s=1,
        )
        acked_by_probes.update(after.ids)
        for probe in probes:
            if probe.status == 202:
                acked_by_probes.update(probe.ids)
        load.acked |= acked_by_probes
        time_to_settle(load, platform.bootstrap, platform.namespace)
        recovery_s = time.monotonic() - back
        time.sleep(3)
    finally:
        load.stop()
    statuses = [(p.status, round(p.took_s, 1)) for p in probes]
    print(f"nodes down {down}; ingestion during the outage {statuses}; direct: {direct_said}")
    print(f"first refusal: {probes[0].body}")
    scenario = "2 of 3 brokers SIGKILLed ~20 s (ingestion 503)"
    settled_row(scenario, load, platform.bootstrap, platform.namespace, recovery_s, matrix)

    assert {p.status for p in probes} == {503}, statuses
    assert all(p.body["reason"] == "broker_unavailable" for p in probes), probes[0].body
    assert all("Kafka cannot make the records durable" in p.body["detail"] for p in probes)
    assert all(p.retry_after is not None for p in probes)
    assert max(p.took_s for p in probes) < DELIVERY_BOUND_S, statuses
    refused_at_once = [p for p in probes if "s ago); nothing of this batch" in p.body["detail"]]
    assert refused_at_once, "after one unconfirmed batch the next ones are refused at once"
    assert direct_said.startswith("not confirmed"), direct_said
    assert refused_over_http_only_with_503(load) == []
    assert load.predict_failures == [], f"/predict failed: {load.predict_failures[:3]}"
    assert [n for n, s in platform.services.items() if s.process.poll() is not None] == []
