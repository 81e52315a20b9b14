"""Benchmark of the data plane, printed side by side with its references.

    make bench-data      (or: python -m tests.bench.bench_data --records 20000 --lookups 2000)

1. Records/s from the raw topic through validation and the feature store to data.features,
   next to a bare confluent-kafka consume->produce relay with the same two hops on the same
   broker (target: 0.5x the relay or better), and next to the floor of the platform's own
   engines: the same relay for the first hop and a bare faust-streaming agent (the feature
   store's engine, configured like it) forwarding bytes for the second.
2. Online feature lookup latency (p50/p99, one entity per HTTP request, sequential, same
   client) of the feature store next to Feast's SQLite online store serving the same
   features through `feast serve` (target: faster than Feast). Feast runs in its own
   virtualenv under .local/bench (it needs pandas < 3).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from shared.datasets.registry import SpecRegistry
from shared.datasets.sources import agrawal_records
from shared.datasets.spec import shipped_specs
from shared.events import Event, RecordIngested
from shared.kafka.config import client_config, producer_config
from shared.kafka.producer import EventProducer
from shared.settings import PlatformSettings
from tests.bench.venvs import ensure_venv
from tests.services import free_port, namespace_topics, start_service
from tests.waiting import wait_until

FEAST_VERSION = "0.67.0"
REPO = Path(__file__).resolve().parents[2]
FEAST_VENV = REPO / ".local" / "bench" / f"feast-{FEAST_VERSION}"


def raw_payloads(count: int, spec_version: int) -> list[tuple[bytes, bytes]]:
    start = datetime.now(UTC) - timedelta(days=1)
    payloads = []
    for row, _ in agrawal_records(count, seed=5, start=start, entities=2000):
        event = Event.create(
            RecordIngested(
                dataset="loans",
                entity=row["applicant_id"],
                values=row,
                ingested_at=datetime.now(UTC),
                spec_version=spec_version,
            ),
            source="bench",
            subject=row["applicant_id"],
        )
        payloads.append((row["applicant_id"].encode(), event.to_json_bytes()))
    return payloads


class TopicCounter:
    """Counts messages arriving on a topic, from its end at creation time."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-count-{uuid.uuid4().hex[:8]}",
             "auto.offset.reset": "earliest", "enable.auto.commit": False}
        )  # fmt: skip
        self._consumer.subscribe([topic])
        self.count = 0

    def wait_for(self, total: int, timeout_s: float) -> float:
        def arrived() -> bool:
            self.count += sum(1 for m in self._consumer.consume(1000, 0.2) if m.error() is None)
            return self.count >= total

        wait_until(arrived, what=f"{total} messages", timeout_s=timeout_s, interval_s=0)
        return time.perf_counter()


def time_pipeline(
    bootstrap: str, source: str, sink: str, payloads: list[tuple[bytes, bytes]]
) -> float:
    """Seconds from the first produce to the last message out, after a one-record warm-up."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    counter = TopicCounter(bootstrap, sink)
    producer.produce(source, payloads[0][1], payloads[0][0])
    producer.flush(10)
    counter.wait_for(1, timeout_s=120)
    started = time.perf_counter()
    for key, value in payloads[1:]:
        while True:
            try:
                producer.produce(source, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)
    finished = counter.wait_for(len(payloads), timeout_s=600)
    return finished - started


HopFactory = Callable[[str, str], subprocess.Popen[bytes]]


def run_relay(
    settings: PlatformSettings,
    admin: AdminClient,
    payloads: list[tuple[bytes, bytes]],
    hops: tuple[HopFactory, HopFactory],
) -> float:
    """Seconds through two relay processes chained raw -> mid -> out on fresh topics."""
    names = [f"bench-relay-{uuid.uuid4().hex[:8]}-{hop}" for hop in ("raw", "mid", "out")]
    futures = admin.create_topics([NewTopic(n, 3, 1) for n in names])
    for future in futures.values():
        future.result(30)
    relays = [
        hop(src, dst) for hop, (src, dst) in zip(hops, itertools.pairwise(names), strict=True)
    ]
    try:
        return time_pipeline(settings.kafka_bootstrap_servers, names[0], names[2], payloads)
    finally:
        for relay in relays:
            relay.terminate()
            relay.wait(30)
        admin.delete_topics(names)


def relay_process(source: str, target: str) -> subprocess.Popen[bytes]:
    group = f"relay-{uuid.uuid4().hex[:8]}"
    command = ["-m", "tests.bench.relay", "--source", source, "--target", target, "--group", group]
    return subprocess.Popen([sys.executable, *command])


def faust_relay_process(source: str, target: str) -> subprocess.Popen[bytes]:
    app_id = f"faust-relay-{uuid.uuid4().hex[:8]}"
    command = ["-m", "tests.bench.faust_relay", "--source", source, "--target", target]
    return subprocess.Popen([sys.executable, *command, "--app-id", app_id])


def latencies(request: Callable[[str], None], entities: list[str], rounds: int) -> list[float]:
    samples = []
    for n in range(rounds):
        entity = entities[n % len(entities)]
        started = time.perf_counter()
        request(entity)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


def ensure_feast_venv() -> Path:
    return ensure_venv(FEAST_VENV, [f"feast=={FEAST_VERSION}"])


def online_vectors(feature_store_url: str, entities: list[str]) -> pd.DataFrame:
    response = httpx.post(
        f"{feature_store_url}/features/loans/batch", json={"entities": entities}, timeout=60
    )
    response.raise_for_status()
    rows = []
    for found in response.json()["found"]:
        numeric = {k: v for k, v in found["features"].items() if isinstance(v, int | float)}
        rows.append({"applicant_id": found["entity"], **numeric})
    frame = pd.DataFrame(rows)
    frame["event_timestamp"] = datetime.now(UTC) - timedelta(hours=1)
    return frame


def start_feast(frame: pd.DataFrame, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    python = ensure_feast_venv()
    features = workdir / "features.parquet"
    frame.to_parquet(features)
    port = free_port()
    process = subprocess.Popen(
        [str(python), str(Path(__file__).with_name("feast_reference.py")), "--features",
         str(features), "--entity-column", "applicant_id", "--repo", str(workdir / "repo"),
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def serving() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(serving, what="feast serve", timeout_s=300, interval_s=1)
    return process, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--lookups", type=int, default=2_000)
    args = parser.parse_args()
    settings = PlatformSettings()
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    with namespace_topics(admin, namespace), tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        registry = SpecRegistry(
            client_config(settings, "bench"), f"{namespace}.data.specs", "bench"
        )
        loans = next(s for s in shipped_specs() if s.name == "loans")
        version = registry.register(
            loans, EventProducer(producer_config(settings, "bench"))
        ).version
        payloads = raw_payloads(args.records, version)

        relay_s = run_relay(settings, admin, payloads, (relay_process, relay_process))
        floor_s = run_relay(settings, admin, payloads, (relay_process, faust_relay_process))
        services = [
            start_service(n, namespace, env, workdir) for n in ("validation", "feature_store")
        ]
        try:
            platform_s = time_pipeline(
                settings.kafka_bootstrap_servers, f"{namespace}.data.raw",
                f"{namespace}.data.features", payloads,
            )  # fmt: skip
            store_url = services[1].url
            entities = sorted({key.decode() for key, _ in payloads})[:1000]
            with httpx.Client(timeout=10) as client:
                ours = latencies(
                    lambda e: client.get(f"{store_url}/features/loans/{e}").raise_for_status(),
                    entities, args.lookups,
                )  # fmt: skip
                frame = online_vectors(store_url, entities)
                feast, feast_url = start_feast(frame, workdir)
                try:
                    names = [f"features:{c}" for c in frame.columns
                             if c not in ("applicant_id", "event_timestamp")]  # fmt: skip
                    theirs = latencies(
                        lambda e: client.post(
                            f"{feast_url}/get-online-features",
                            json={"features": names, "entities": {"applicant_id": [e]}},
                        ).raise_for_status(),
                        entities, args.lookups,
                    )  # fmt: skip
                finally:
                    feast.terminate()
                    feast.wait(30)
        finally:
            for service in services:
                service.stop()
    report(args, relay_s, floor_s, platform_s, ours, theirs, len(frame.columns) - 2)


def report(
    args: argparse.Namespace, relay_s: float, floor_s: float, platform_s: float,
    ours: list[float], theirs: list[float], feature_count: int,
) -> None:  # fmt: skip
    n = args.records - 1
    print(f"bench-data: {args.records} Agrawal loan records, 3 partitions, one run")
    print(f"{'throughput':58} {'records/s':>10}")
    print(f"{'raw confluent-kafka relay, 2 hops (raw->mid->out)':58} {n / relay_s:>10.0f}")
    print(f"{'floor: confluent-kafka relay -> bare faust relay':58} {n / floor_s:>10.0f}")
    print(
        f"{'platform: raw -> validation -> feature store -> features':58} {n / platform_s:>10.0f}"
    )
    print(f"ratio platform/relay = {relay_s / platform_s:.2f} (target >= 0.50)")
    print(
        f"ratio floor/relay = {relay_s / floor_s:.2f}: the most any pipeline with a faust "
        "stage reaches here"
    )
    print(
        f"online lookup, {args.lookups} sequential HTTP requests, {feature_count} numeric features"
    )
    print(f"{'store':40} {'p50 ms':>8} {'p99 ms':>8}")
    for label, samples in (("feature store (GET /features)", ours),
                           (f"Feast {FEAST_VERSION} SQLite (feast serve)", theirs)):  # fmt: skip
        print(f"{label:40} {percentile(samples, 50):>8.2f} {percentile(samples, 99):>8.2f}")


if __name__ == "__main__":
    main()
