"""Benchmark of the console's server render time, next to the API calls behind each page.

    make bench-console   (or: python -m tests.bench.bench_console --requests 100)

In a namespace of its own: a registry (PostgreSQL schema of its own) holding MODELS models x
VERSIONS versions, registered from ModelTrained events on Kafka as training publishes them; a
monitoring service whose performance history holds POINTS points of the first model (written
to its SQL history before it starts, as a long run would have left them); and a console
reading both. Each page is requested REQUESTS times, one after another, after a warm-up; its
render time is the whole HTTP answer at the client. Beside it: the same API calls the page
makes (registry, monitoring), timed the same way, one after another (the console makes a
page's calls concurrently, so its render can even be faster than their sum).

Target (issue 13): a page within 2x the API calls it needs, p99 under 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
from confluent_kafka.admin import AdminClient
from sqlalchemy import create_engine, insert, text

from services.monitoring.adapters.history import History
from shared.kafka.config import producer_config
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.kafka.topics import TopicCatalog
from shared.settings import PlatformSettings, service_url
from tests.integration.test_registry_service import trained
from tests.services import RunningService, namespace_topics, start_service
from tests.waiting import wait_until


@dataclass(frozen=True)
class Page:
    path: str
    api: tuple[tuple[str, str], ...]
    """(service, path) of each call the console makes for it."""


def pages(model: str, versions: int) -> list[Page]:
    last = versions
    return [
        Page("/models", (("registry", "/models"), ("serving", "/models"))),
        Page(
            f"/models/{model}",
            (
                ("registry", f"/models/{model}"),
                ("registry", f"/models/{model}/versions"),
                ("registry", f"/models/{model}/audit"),
            ),
        ),
        Page(
            f"/models/{model}/versions/{last}",
            (
                ("registry", f"/lineage/{model}/{last}"),
                ("registry", f"/models/{model}/versions/{last}"),
            ),
        ),
        Page(
            f"/models/{model}/compare?a={last - 1}&b={last}",
            (
                ("registry", f"/models/{model}/compare?a={last - 1}&b={last}"),
                ("registry", f"/lineage/{model}/{last - 1}"),
                ("registry", f"/lineage/{model}/{last}"),
            ),
        ),
        Page(
            f"/monitoring/{model}",
            (
                ("monitoring", f"/performance/{model}/history"),
                ("monitoring", "/drift"),
                ("registry", f"/models/{model}/audit"),
                ("monitoring", "/performance"),
            ),
        ),
    ]


@dataclass
class Timings:
    seconds: list[float]

    def p(self, q: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def timed(call: Callable[[], None], repeat: int, warmup: int = 5) -> Timings:
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return Timings(seconds)


def register_models(
    settings: PlatformSettings, namespace: str, registry: str, models: int, versions: int
) -> list[str]:
    names = [f"bench_{n:03d}" for n in range(models)]
    topic = TopicCatalog.load().name("models.trained", namespace)
    producer = EventProducer(producer_config(settings, "bench-console"))
    events = [
        trained(0.5 + (v % 40) / 100, run=f"run-{v}", namespace=namespace, model=name)
        for v in range(versions)
        for name in names
    ]
    producer.publish_confirmed(
        OutgoingMessage.for_event(topic, event, key=event.data.model_name) for event in events
    )
    producer.close()

    def all_registered() -> bool:
        with httpx.Client(base_url=registry, timeout=30) as client:
            return all(
                len(client.get(f"/models/{name}/versions").json()) == versions for name in names
            )

    wait_until(
        all_registered, what=f"{models * versions} versions registered", timeout_s=900, interval_s=5
    )
    return names


def load_history(
    database_url: str, namespace: str, model: str, versions: int, points: int
) -> History:
    engine = create_engine(database_url)
    history = History(engine, namespace)
    start = datetime.now(UTC) - timedelta(seconds=points)
    rows = [
        {
            "at": (start + timedelta(seconds=n)).timestamp(),
            "model_name": model,
            "model_version": 1 + n * versions // points,
            "labelled": n,
            "accuracy": 0.8 + (n % 17) / 100,
            "last_100": 0.8,
            "last_1000": 0.8,
            "served": n,
            "expired": 0,
            "task": "classification",
        }
        for n in range(points)
    ]
    with engine.begin() as connection:
        connection.execute(insert(history.performance), rows)
    return history


@contextmanager
def bench_platform(
    args: argparse.Namespace,
) -> Iterator[tuple[RunningService, dict[str, str], str]]:
    settings = PlatformSettings()
    if settings.database_url is None:
        raise SystemExit("MLOPS_DATABASE_URL is not set: run `make up` and load .local/stack.env")
    database_url = settings.database_url.get_secret_value()
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    namespace = f"benchconsole{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "MLOPS_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    started: list[RunningService] = []
    history: History | None = None
    schema = f"reg_{namespace}"
    with TemporaryDirectory() as logs, namespace_topics(admin, namespace):
        try:

            def start(name: str, **extra: str) -> RunningService:
                started.append(start_service(name, namespace, env, Path(logs), extra_env=extra))
                return started[-1]

            registry = start("registry", MLOPS_REGISTRY_DATABASE_SCHEMA=schema)
            print(f"registering {args.models} models x {args.versions} versions ...", flush=True)
            names = register_models(settings, namespace, registry.url, args.models, args.versions)
            history = load_history(database_url, namespace, names[0], args.versions, args.points)
            monitoring = start(
                "monitoring",
                MLOPS_MONITORING_REGISTRY_URL=registry.url,
                MLOPS_MONITORING_HISTORY_POINTS=str(args.points),
            )
            urls = {"registry": registry.url, "monitoring": monitoring.url}
            console = start("console", MLOPS_CONSOLE_SERVICE_URLS=json.dumps(urls))
            yield console, {**urls, "serving": service_url("serving")}, names[0]
        finally:
            for service in reversed(started):
                service.stop()
            if history is not None:
                history.drop()
            with create_engine(database_url).begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def chart_points(html: str) -> int:
    """The points of the per-version series in the monitoring page's performance chart."""
    marker = '<script type="application/json" id="performance-chart-data">'
    blob = html.split(marker, 1)[1].split("</script>", 1)[0]
    traces = json.loads(blob)["data"]
    return sum(len(t.get("x") or []) for t in traces if str(t.get("name", "")).startswith("v"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    with bench_platform(args) as (console, urls, model):
        client = httpx.Client(timeout=30)
        points = chart_points(client.get(f"{console.url}/monitoring/{model}").text)
        rows = []
        for page in pages(model, args.versions):

            def render(page: Page = page) -> None:
                response = client.get(console.url + page.path)
                assert response.status_code == 200, (page.path, response.status_code)

            def api(page: Page = page) -> None:
                for service, path in page.api:
                    response = client.get(urls[service] + path)
                    assert response.status_code == 200, (service, path, response.status_code)

            rendered = timed(render, args.requests)
            behind = timed(api, args.requests)
            rows.append((page, rendered, behind))
    load = os.getloadavg()
    print(
        f"\nconsole render time, {args.models} models x {args.versions} versions, "
        f"{args.points:,} monitoring points ({points:,} drawn on /monitoring/{model}), "
        f"{args.requests} requests per page "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})"
    )
    header = f"{'page':<40} {'render p50':>10} {'p99':>8} {'API calls p50':>14} {'p99':>8} {'x API p50':>10}"
    print(header)
    print("-" * len(header))
    for page, rendered, behind in rows:
        print(
            f"{page.path[:40]:<40} {rendered.p(0.5):>8.1f}ms {rendered.p(0.99):>6.1f}ms "
            f"{behind.p(0.5):>12.1f}ms {behind.p(0.99):>6.1f}ms {rendered.p(0.5) / behind.p(0.5):>9.2f}x"
        )
    print("target: render within 2x the API calls behind the page, p99 under 300 ms")


if __name__ == "__main__":
    main()
