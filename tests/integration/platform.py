"""The seven services as real processes in a namespace of their own, started once for a test
module (with start_platform, as `make demo` and the e2e tests start them), the registry with
an API key."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from infra.demo.loop import start_platform
from infra.processes import drop_namespace_state
from shared.kafka.config import producer_config
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import unique_name
from tests.integration.test_registry_service import MODEL, trained
from tests.services import RunningService, namespace_topics, start_service
from tests.waiting import wait_until

API_KEY = "fuzz-" + uuid.uuid4().hex
KEYED = {"X-API-Key": API_KEY}


@dataclass(frozen=True)
class Platform:
    namespace: str
    services: dict[str, RunningService]
    bootstrap: str

    def url(self, name: str) -> str:
        return self.services[name].url

    def register_model(self) -> str:
        """A model version in the registry (a ModelTrained as training publishes it; its
        artifact is never loaded), so reads reach its SQL rows. Returns its name."""
        event = trained(0.8, namespace=self.namespace)
        producer = EventProducer(producer_config(PlatformSettings(), "http-tests"))
        topic = f"{self.namespace}.models.trained"
        producer.publish_confirmed([OutgoingMessage.for_event(topic, event, key=MODEL)])
        producer.close()
        url = f"{self.url('registry')}/models/{MODEL}"
        wait_until(lambda: httpx.get(url).status_code == 200, what=f"{MODEL} in the registry")
        return MODEL

    def messages_in(self, topic: str) -> int:
        """How many messages a catalog topic of the namespace holds (sum of end offsets)."""
        name = f"{self.namespace}.{topic}"
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": unique_name("n")})
        try:
            partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
            return sum(
                consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
                for p in partitions
            )
        finally:
            consumer.close()


@contextmanager
def running_platform(
    admin: AdminClient, settings: PlatformSettings, logs: Path, prefix: str
) -> Iterator[Platform]:
    namespace = unique_name(prefix).replace("-", "")
    env = {**os.environ, "MLOPS_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    env["PYTHONUNBUFFERED"] = "1"
    env["MLOPS_REGISTRY_API_KEYS"] = json.dumps({"fuzzer": API_KEY})
    services: dict[str, RunningService] = {}

    def start(name: str, wait_ready: bool = True, **extra: str) -> RunningService:
        services[name] = start_service(
            name, namespace, env, logs, extra_env=extra, wait_ready=wait_ready
        )
        return services[name]

    with namespace_topics(admin, namespace):
        try:
            start_platform(start, namespace, {})
            yield Platform(namespace, services, settings.kafka_bootstrap_servers)
        finally:
            for service in reversed(list(services.values())):
                service.stop()
            if settings.database_url is not None:
                drop_namespace_state(settings.database_url.get_secret_value(), namespace)
