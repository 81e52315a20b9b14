"""bench-scale, part 1: registry reads with MODELS x VERSIONS registered.

A registry process in a namespace of its own, on the stack's PostgreSQL (a schema of its
own), registers MODELS x VERSIONS ModelTrained events published on Kafka as training
publishes them (artifacts are references only: the registry never loads them). Then each
read route is requested REQUESTS times, one after another over one keep-alive connection,
each time for a model (and version) drawn at random, after a warm-up (a route slower than
BUDGET_S for them all stops at MIN_REQUESTS or more)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from confluent_kafka.admin import AdminClient

from shared.kafka.config import producer_config
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.kafka.topics import TopicCatalog
from shared.settings import PlatformSettings
from tests.bench.scale_common import child_env, namespace
from tests.bench.scale_stats import percentile
from tests.integration.test_registry_service import trained
from tests.services import start_service
from tests.waiting import wait_until

BUDGET_S = 45.0
MIN_REQUESTS = 100


@dataclass(frozen=True)
class RouteTiming:
    route: str
    requests: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    body_bytes: int


@dataclass(frozen=True)
class RegistryResult:
    models: int
    versions: int
    registered_per_s: float
    requests: int
    routes: list[RouteTiming]


def model_names(models: int) -> list[str]:
    return [f"scale_{n:04d}" for n in range(models)]


def publish_versions(settings: PlatformSettings, ns: str, names: list[str], versions: int) -> None:
    topic = TopicCatalog.load().name("models.trained", ns)
    producer = EventProducer(producer_config(settings, "bench-scale"))
    events = (
        trained(0.5 + (v % 40) / 100, run=f"run-{v}", namespace=ns, model=name)
        for v in range(versions)
        for name in names
    )
    producer.publish_confirmed(
        (OutgoingMessage.for_event(topic, e, key=e.data.model_name) for e in events), timeout=120
    )
    producer.close()


def registered_versions(url: str) -> int:
    return sum(model["versions"] for model in httpx.get(f"{url}/models", timeout=60).json())


def time_route(
    client: httpx.Client, path_for: Callable[[random.Random], str], requests: int
) -> tuple[list[float], int]:
    """Milliseconds per request (after 10 warm-up requests) and the last body's size; a slow
    route stops after BUDGET_S once it has MIN_REQUESTS samples."""
    draw = random.Random(7)
    size = 0
    for _ in range(10):
        client.get(path_for(draw)).raise_for_status()
    samples: list[float] = []
    deadline = time.perf_counter() + BUDGET_S
    for _ in range(requests):
        if len(samples) >= MIN_REQUESTS and time.perf_counter() > deadline:
            break
        path = path_for(draw)
        started = time.perf_counter()
        answer = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
        size = len(answer.content)
    return samples, size


def routes(names: list[str], versions: int) -> dict[str, Callable[[random.Random], str]]:
    def version(draw: random.Random) -> int:
        return draw.randint(1, versions)

    return {
        "GET /models": lambda draw: "/models",
        "GET /models/{name}": lambda draw: f"/models/{draw.choice(names)}",
        "GET /models/{name}/versions": lambda draw: f"/models/{draw.choice(names)}/versions",
        "GET /models/{name}/versions/{v}": lambda draw: (
            f"/models/{draw.choice(names)}/versions/{version(draw)}"
        ),
        "GET /lineage/{name}/{v}": lambda draw: f"/lineage/{draw.choice(names)}/{version(draw)}",
    }


def run(models: int, versions: int, requests: int, logs: Path) -> RegistryResult:
    settings = PlatformSettings()
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    with namespace(admin, settings, "scalereg") as ns:
        registry = start_service(
            "registry",
            ns,
            child_env(settings),
            logs,
            extra_env={"MLOPS_REGISTRY_DATABASE_SCHEMA": f"reg_{ns}"},
        )
        try:
            names = model_names(models)
            total = models * versions
            print(f"  registering {models} models x {versions} versions ...", flush=True)
            started = time.perf_counter()
            publish_versions(settings, ns, names, versions)
            wait_until(
                lambda: registered_versions(registry.url) >= total,
                what=f"{total} versions registered",
                timeout_s=900,
                interval_s=2,
            )
            rate = total / (time.perf_counter() - started)
            timings = []
            with httpx.Client(base_url=registry.url, timeout=60) as client:
                for route, path_for in routes(names, versions).items():
                    samples, size = time_route(client, path_for, requests)
                    timings.append(
                        RouteTiming(
                            route,
                            len(samples),
                            percentile(samples, 50),
                            percentile(samples, 99),
                            max(samples),
                            size,
                        )
                    )
        finally:
            registry.stop()
    return RegistryResult(models, versions, rate, requests, timings)
