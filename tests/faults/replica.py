"""A replay into a namespace of its own, running beside production while production fails
(issue 15, scenario 9): the replica's own registry, feature store, validation and training
on the same Kafka, PostgreSQL and MinIO; `mlops replay` copies production's specs, records
and labels into it; the replica validates the copy and trains a model of the same name as
production's. Production's topics, stores and models must not notice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from confluent_kafka import Message
from confluent_kafka.admin import AdminClient

from infra.demo.loop import DATASET
from infra.processes import drop_namespace_state
from shared.settings import PlatformSettings
from tests.faults.conftest import MODEL, FaultPlatform
from tests.faults.harness import (
    Row,
    ask_training,
    loans_feed,
    partition_ends,
    read_topic,
    readings_feed,
)
from tests.integration.kafka_helpers import unique_name
from tests.services import RunningService, namespace_topics, start_service
from tests.waiting import wait_until

REPLAYED_TOPICS = ("data.specs", "data.raw", "data.labels")


@dataclass
class Replica:
    namespace: str
    services: dict[str, RunningService]

    def url(self, service: str) -> str:
        return self.services[service].url


@contextmanager
def replica_beside(
    admin: AdminClient,
    settings: PlatformSettings,
    bootstrap: str,
    logs: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Replica]:
    """The replica's services in a namespace of their own, ready; stopped and its state
    dropped afterwards."""
    namespace = unique_name("faultrp").replace("-", "")
    env = {**os.environ, "MLOPS_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONUNBUFFERED": "1"}
    env.update(extra_env or {})
    services: dict[str, RunningService] = {}

    def start(name: str, **extra: str) -> RunningService:
        services[name] = start_service(name, namespace, env, logs, extra_env=extra)
        return services[name]

    with namespace_topics(admin, namespace):
        try:
            registry = start("registry", MLOPS_REGISTRY_DATABASE_SCHEMA=f"reg_{namespace}")
            features = start("feature_store", MLOPS_FEATURE_STORE_OFFLINE_FLUSH_S="1")
            start("validation")
            start(
                "training",
                MLOPS_TRAINING_FEATURE_STORE_URL=features.url,
                MLOPS_TRAINING_REGISTRY_URL=registry.url,
                MLOPS_TRAINING_DATABASE_SCHEMA=f"train_{namespace}",
                MLOPS_TRAINING_RETRAIN_EVERY_LABELS="1000000",
            )
            yield Replica(namespace, services)
        finally:
            for service in reversed(list(services.values())):
                service.stop()
            if settings.database_url is not None:
                drop_namespace_state(settings.database_url.get_secret_value(), namespace)


def replay(production: str, replica: str, checkpoints: Path, bootstrap: str) -> None:
    """`mlops replay` of production's specs, records and labels, from their start to their
    end when each copy starts."""
    env = {**os.environ, "MLOPS_NAMESPACE": production, "MLOPS_KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    for topic in REPLAYED_TOPICS:
        done = subprocess.run(
            [sys.executable, "-m", "shared.cli", "replay", "--topic", topic, "--into", replica,
             "--checkpoint-dir", str(checkpoints)],
            env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, f"replay of {topic}: {done.stderr[-2000:]}"


RECORD_ID_FIELDS = tuple(feed.record_id for feed in (loans_feed(""), readings_feed("")))


def record_ids(bootstrap: str, topic: str) -> list[str]:
    """The record id of every message of `topic`: an outcome's record_id, or for data.raw the
    record's own id among its values."""
    ids = []
    for message in read_topic(bootstrap, topic):
        data = json.loads(message.value())["data"]
        if "record_id" in data:
            ids.append(data["record_id"])
        else:
            ids.append(next(data["values"][f] for f in RECORD_ID_FIELDS if f in data["values"]))
    return ids


def versions(registry_url: str, model: str) -> list[int]:
    answer = httpx.get(f"{registry_url}/models/{model}/versions", timeout=30)
    if answer.status_code == 404:
        return []
    answer.raise_for_status()
    return sorted(int(v["version"]) for v in answer.json())


def train_in_replica(replica: Replica, model: str, dataset: str) -> int:
    """Asks the replica's training for a model and returns the version its registry holds."""
    command_id = ask_training(replica.url("training"), model, dataset, "fault: the replay's model")
    run_url = f"{replica.url('training')}/runs/{command_id}"
    wait_until(
        lambda: httpx.get(run_url, timeout=10).status_code == 200,
        what="the replica's training to end",
        timeout_s=300,
    )
    ended = httpx.get(run_url, timeout=10).json()
    assert ended["type"] == "mlops.ModelTrained", ended["data"]
    return wait_until(
        lambda: versions(replica.url("registry"), model)[-1:] or None,
        what="the replica's registry to hold the replayed model",
        timeout_s=60,
    )[0]


class ReplayBeside:
    """The replay, in a thread of its own, of production into the replica."""

    def __init__(self, platform: FaultPlatform, replica: Replica, checkpoints: Path) -> None:
        self.failure: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run,
            args=(platform.namespace, replica.namespace, checkpoints, platform.bootstrap),
        )

    def _run(self, production: str, replica: str, checkpoints: Path, bootstrap: str) -> None:
        try:
            replay(production, replica, checkpoints, bootstrap)
        except BaseException as error:
            self.failure = error

    def start(self) -> ReplayBeside:
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(300)
        assert not self._thread.is_alive(), "the replay did not end"
        if self.failure is not None:
            raise self.failure


def check_the_replica(
    platform: FaultPlatform,
    replica: Replica,
    specs_before: dict[tuple[str, int], int],
    production_trained: list[Message],
    during: str,
    matrix: list[Row],
) -> None:
    """The replica validated every replayed record once and trained its own model; production
    kept its own specs (their end offsets `specs_before`) and versions."""
    specs_topic = f"{platform.namespace}.data.specs"
    started = time.monotonic()
    replayed = record_ids(platform.bootstrap, f"{replica.namespace}.data.raw")
    assert replayed, "nothing was replayed"

    def outcomes() -> Counter[str]:
        return Counter(
            record
            for name in ("data.validated", "data.rejected")
            for record in record_ids(platform.bootstrap, f"{replica.namespace}.{name}")
        )

    wait_until(
        lambda: set(replayed) <= outcomes().keys(),
        what="the replica to validate every replayed record",
        timeout_s=180,
        interval_s=2,
    )
    found = outcomes()
    version = train_in_replica(replica, MODEL, DATASET)
    outcome = Row(
        scenario=f"replay beside production during the {during}",
        records_in=len(replayed),
        records_out=sum(1 for record in replayed if record in found),
        lost=len(set(replayed) - found.keys()),
        twice=sum(1 for record in replayed if found[record] > 1),
        dead_lettered=0,
        predict_ok=0,
        predict_failed=0,
        recovery_s=time.monotonic() - started,
    )
    matrix.append(outcome)
    assert len(set(replayed)) == len(replayed), "the replay copied a record twice"
    assert all(found[record] == 1 for record in replayed), "the replica validated twice"
    assert set(found) == set(replayed), "the replica validated records it was not given"
    assert version == 1
    assert partition_ends(platform.bootstrap, specs_topic) == specs_before
    production_runs = {
        m.value() for m in production_trained if b'"mlops.ModelTrained"' in m.value()
    }
    assert len(versions(platform.urls.registry, MODEL)) == len(production_runs), (
        "production's registry holds a version its own training did not make"
    )
