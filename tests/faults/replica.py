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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from confluent_kafka.admin import AdminClient

from infra.processes import drop_namespace_state
from shared.settings import PlatformSettings
from tests.faults.harness import read_topic
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
    admin: AdminClient, settings: PlatformSettings, bootstrap: str, logs: Path
) -> Iterator[Replica]:
    """The replica's services in a namespace of their own, ready; stopped and its state
    dropped afterwards."""
    namespace = unique_name("faultrp").replace("-", "")
    env = {**os.environ, "MLOPS_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONUNBUFFERED": "1"}
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


def replay(production: str, replica: str, checkpoints: Path) -> None:
    """`mlops replay` of production's specs, records and labels, from their start to their
    end when each copy starts."""
    env = {**os.environ, "MLOPS_NAMESPACE": production}
    for topic in REPLAYED_TOPICS:
        done = subprocess.run(
            [sys.executable, "-m", "shared.cli", "replay", "--topic", topic, "--into", replica,
             "--checkpoint-dir", str(checkpoints)],
            env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, f"replay of {topic}: {done.stderr[-2000:]}"


RECORD_ID_FIELDS = ("application_id", "reading_id")  # of the load's datasets


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
    asked = httpx.post(
        f"{replica.url('training')}/train",
        json={"model_name": model, "dataset": dataset, "reason": "fault: the replay's model"},
        timeout=30,
    )
    assert asked.status_code == 202, asked.text
    run_url = f"{replica.url('training')}/runs/{asked.json()['command_id']}"
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
