"""A three-broker Kafka of the fault suite's own (infra/stack/stack.sh with KAFKA_BROKERS=3 under
a state dir in /tmp, on ports away from the shared stack's), and the platform on it: the seven
services in a namespace of their own whose topics are replicated three times with
min.insync.replicas 2, PostgreSQL, MinIO and Jaeger from the shared stack.

A node is killed with SIGKILL by its pid file and started again with `stack.sh up kafka`, which
starts only the nodes not running."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient, ConfigResource

from infra.demo.loop import Urls, start_platform, train_first_model
from infra.processes import drop_namespace_state
from shared.settings import PlatformSettings
from tests.faults.conftest import MODEL, ROOT, FaultPlatform
from tests.integration.kafka_helpers import unique_name
from tests.services import RunningService, namespace_topics, start_service
from tests.waiting import wait_until

BROKERS = 3
KAFKA_PORT = int(os.environ.get("MLOPS_FAULT_KAFKA_PORT", "19092"))
"""Nodes listen on KAFKA_PORT, +2, +4; their controllers on KAFKA_PORT+1, +3, +5."""


@dataclass
class KafkaCluster:
    home: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "MLOPS_HOME": str(self.home),
            "KAFKA_BROKERS": str(BROKERS),
            "KAFKA_PORT": str(KAFKA_PORT),
            "KAFKA_CONTROLLER_PORT": str(KAFKA_PORT + 1),
        }

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{KAFKA_PORT + 2 * n}" for n in range(BROKERS))

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def stack(self, *args: str) -> None:
        done = subprocess.run(
            ["bash", str(ROOT / "infra/stack/stack.sh"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, (
            f"stack.sh {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
        )

    def up(self) -> None:
        """Starts the nodes that are not running and waits until every node lists all three."""
        self.stack("up", "kafka")

    def down(self) -> None:
        self.stack("down", "kafka")

    def pid(self, node: int) -> int:
        return int((self.home / "run" / f"kafka-{node}.pid").read_text())

    def kill(self, node: int) -> None:
        """SIGKILLs a node's JVM and returns once it is gone."""
        pid = self.pid(node)
        os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid),
            what=f"kafka node {node} (pid {pid}) to die",
            timeout_s=10,
            interval_s=0.05,
        )

    def leader(self, topic: str, partition: int) -> int:
        metadata = self.admin().list_topics(topic, timeout=10).topics[topic]
        return metadata.partitions[partition].leader

    def wait_all_in_sync(self, timeout_s: float = 120) -> None:
        """Returns once every partition of every topic has all its replicas in sync."""

        def behind() -> list[str]:
            topics = self.admin().list_topics(timeout=10).topics
            return [
                f"{name}[{p.id}] isr {p.isrs} of {p.replicas}"
                for name, topic in topics.items()
                for p in topic.partitions.values()
                if sorted(p.isrs) != sorted(p.replicas)
            ]

        lagging: list[str] = []

        def in_sync() -> bool:
            lagging[:] = behind()
            return not lagging

        try:
            wait_until(in_sync, what="every replica in sync", timeout_s=timeout_s, interval_s=0.5)
        except AssertionError as error:
            raise AssertionError(f"{error}: still behind: {lagging[:5]}") from None


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


@contextmanager
def kafka_cluster() -> Iterator[KafkaCluster]:
    """A fresh three-node cluster, stopped and deleted afterwards whatever happens."""
    cluster = KafkaCluster(Path(tempfile.mkdtemp(prefix="mlops-kb-", dir="/tmp")))
    try:
        cluster.up()
        yield cluster
    finally:
        try:
            cluster.down()
        finally:
            shutil.rmtree(cluster.home, ignore_errors=True)


def cluster_settings(settings: PlatformSettings, cluster: KafkaCluster) -> PlatformSettings:
    """The test run's settings with the three-broker cluster as Kafka."""
    return settings.model_copy(
        update={"kafka_bootstrap_servers": cluster.bootstrap, "kafka_brokers": BROKERS}
    )


@contextmanager
def platform_on(
    cluster: KafkaCluster, settings: PlatformSettings, logs: Path
) -> Iterator[FaultPlatform]:
    """The seven services on `cluster`, in a namespace of their own, first model served."""
    namespace = unique_name("faultkb").replace("-", "")
    env = {
        **os.environ,
        "MLOPS_KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap,
        "MLOPS_KAFKA_BROKERS": str(BROKERS),
        "MLOPS_KAFKA_CLIENT_EXTRA": json.dumps({"session.timeout.ms": "6000"}),
        "PYTHONUNBUFFERED": "1",
    }
    services: dict[str, RunningService] = {}
    extras: dict[str, dict[str, str]] = {}

    def start(name: str, wait_ready: bool = True, **extra: str) -> RunningService:
        extras[name] = extra
        services[name] = start_service(
            name, namespace, env, logs, extra_env=extra, wait_ready=wait_ready
        )
        return services[name]

    def restart(name: str) -> RunningService:
        old = services[name]
        old.kill()
        services[name] = start_service(
            name, namespace, env, logs, extra_env=extras[name], port=old.port
        )
        return services[name]

    with namespace_topics(cluster.admin(), namespace):
        try:
            start_platform(start, namespace, {}, serve_only=MODEL)
            urls = Urls(**{n: s.url for n, s in services.items() if n in Urls.__dataclass_fields__})
            train_first_model(urls, MODEL, 600, seed=92)
            yield FaultPlatform(namespace, services, urls, cluster.bootstrap, restart)
        finally:
            for service in reversed(list(services.values())):
                service.stop()
            if settings.database_url is not None:
                drop_namespace_state(settings.database_url.get_secret_value(), namespace)


def replication(cluster: KafkaCluster, topic: str) -> tuple[int, str]:
    """A topic's replication factor and its min.insync.replicas."""
    admin = cluster.admin()
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    [future] = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    configs = future.result(timeout=10)
    return len(partitions[0].replicas), configs["min.insync.replicas"].value
