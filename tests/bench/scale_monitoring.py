"""bench-scale, part 3: monitoring's CPU per 1,000 events with 1 vs many monitored models.

For each case a monitoring process starts in a namespace of its own (the loans, friedman and
phishing specs registered there, so each dataset's task is known). Once its consumer group
holds the partitions, its idle CPU is measured for a few seconds; then the same number of
PredictionServed (serving.predictions) and LabelRecorded (data.labels) events is published,
in chunks of predictions followed by their labels, keyed by record id as serving and
ingestion key them: all for one model in the first case; spread round robin over MODELS
models of the three datasets (two classification tasks, one regression) in the second.
CPU is the process's user + system time (/proc) from the first publish until its consumer
groups (each group named after the namespace, whatever stages the service chains) have
committed everything they read, minus its idle rate over that time. Predictions are the
label with 15% flipped (classification) or plus Gaussian noise (regression): stationary, as
in the steady state, where every detector still runs on every event."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka.admin import AdminClient

from shared.datasets.registry import SpecRegistry
from shared.datasets.sources import agrawal_records, friedman_records, phishing_records
from shared.datasets.spec import shipped_specs
from shared.events import Event
from shared.events.models import PredictionServed
from shared.events.records import LabelRecorded
from shared.kafka.config import client_config, producer_config
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.kafka.topics import TopicCatalog
from shared.settings import PlatformSettings
from tests.bench.scale_common import NamespaceGroups, child_env, namespace, process_cpu_s
from tests.bench.scale_stats import chunks, net_cpu_s, per_thousand, spread
from tests.services import RunningService, free_port, start_service
from tests.waiting import wait_until

START = datetime(2026, 1, 1, tzinfo=UTC)
DATASETS = ("loans", "friedman", "phishing")
LABELS = {"loans": None, "friedman": None, "phishing": "is_phishing"}
POOL = 1250
CHUNK = 500
IDLE_S = 5.0


@dataclass(frozen=True)
class MonitoringRun:
    models: int
    datasets: tuple[str, ...]
    events: int
    cpu_s: float
    idle_cpu_per_s: float
    elapsed_s: float
    joined: int

    @property
    def cpu_ms_per_1000(self) -> float:
        return per_thousand(self.cpu_s * 1000, self.events)


def record_pools() -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """Records (without their label) and labels of each dataset, POOL of each."""
    pools = {
        "loans": list(agrawal_records(POOL, seed=3, start=START)),
        "friedman": list(friedman_records(POOL, seed=3, start=START)),
        "phishing": list(phishing_records(POOL, seed=3, start=START)),
    }
    return {
        name: [({k: v for k, v in r.items() if k != LABELS[name]}, y) for r, y in rows]
        for name, rows in pools.items()
    }


def predicted(dataset: str, label: Any, draw: random.Random) -> Any:
    if dataset == "friedman":
        return label + draw.gauss(0, 1.0)
    return 1 - label if draw.random() < 0.15 else label


def event_pairs(
    models: list[tuple[str, str]], count: int
) -> Iterator[tuple[Event[PredictionServed], Event[LabelRecorded]]]:
    """`count` predictions spread round robin over (model, dataset), each with its label."""
    pools = record_pools()
    draw = random.Random(5)
    for index, which in enumerate(spread(count, len(models))):
        model, dataset = models[which]
        record, label = pools[dataset][index % POOL]
        record_id = f"{model}-{index}"
        at = START + timedelta(seconds=index)
        served = PredictionServed(
            request_id=f"req-{record_id}",
            model_name=model,
            version=1,
            dataset=dataset,
            record_id=record_id,
            features=record,
            prediction=predicted(dataset, label, draw),
            latency_ms=1.0,
            served_at=at,
        )
        labelled = LabelRecorded(dataset=dataset, record_id=record_id, label=label, labelled_at=at)
        yield (
            Event[PredictionServed].create(served, source="serving"),
            Event[LabelRecorded].create(labelled, source="labels"),
        )


def messages(ns: str, models: list[tuple[str, str]], count: int) -> list[OutgoingMessage]:
    catalog = TopicCatalog.load()
    predictions, labels = catalog.name("serving.predictions", ns), catalog.name("data.labels", ns)
    out: list[OutgoingMessage] = []
    for chunk in chunks(list(event_pairs(models, count)), CHUNK):
        out += [OutgoingMessage.for_event(predictions, p, key=p.data.record_id) for p, _ in chunk]
        out += [OutgoingMessage.for_event(labels, lab, key=lab.data.record_id) for _, lab in chunk]
    return out


def register_specs(settings: PlatformSettings, ns: str, producer: EventProducer) -> None:
    specs = SpecRegistry(client_config(settings, "bench-scale"), f"{ns}.data.specs", "bench")
    for spec in shipped_specs():
        if spec.name in DATASETS:
            specs.register(spec, producer)


def joined(service: RunningService) -> int:
    view = httpx.get(f"{service.url}/performance", timeout=30).json()
    return sum(row["labelled"] for row in view["models"])


def start_monitoring(settings: PlatformSettings, ns: str, logs: Path) -> RunningService:
    extra = {
        # No registry here: lineage fetches fail at once (and are retried in 30 s) in both cases.
        "MLOPS_MONITORING_REGISTRY_URL": f"http://127.0.0.1:{free_port()}",
    }
    return start_service("monitoring", ns, child_env(settings), logs, extra_env=extra)


def measure_case(
    settings: PlatformSettings,
    admin: AdminClient,
    models: list[tuple[str, str]],
    count: int,
    logs: Path,
) -> MonitoringRun:
    with namespace(admin, settings, "scalemon") as ns:
        producer = EventProducer(producer_config(settings, "bench-scale"))
        register_specs(settings, ns, producer)
        outgoing = messages(ns, models, count)
        inputs = (f"{ns}.serving.predictions", f"{ns}.data.labels")
        groups = NamespaceGroups(admin, settings.kafka_bootstrap_servers, ns)
        service = start_monitoring(settings, ns, logs)
        try:
            wait_until(
                lambda: groups.settled(inputs),
                what="monitoring's consumer groups to hold their partitions",
                timeout_s=120,
                interval_s=0.5,
            )
            pid = service.process.pid
            idle_from = process_cpu_s(pid)
            time.sleep(IDLE_S)  # a measurement window, not a wait for something
            idle_rate = (process_cpu_s(pid) - idle_from) / IDLE_S
            cpu_from, started = process_cpu_s(pid), time.perf_counter()
            producer.publish_confirmed(outgoing, timeout=300)
            wait_until(
                lambda: groups.settled(inputs),
                what=f"monitoring's groups to commit all of {len(outgoing)} events",
                timeout_s=900,
                interval_s=0.25,
            )
            cpu_s, elapsed = process_cpu_s(pid) - cpu_from, time.perf_counter() - started
            labelled = joined(service)
        finally:
            service.stop()
            groups.close()
            producer.close()
    return MonitoringRun(
        models=len(models),
        datasets=tuple(sorted({dataset for _, dataset in models})),
        events=len(outgoing),
        cpu_s=net_cpu_s(cpu_s, idle_rate, elapsed),
        idle_cpu_per_s=idle_rate,
        elapsed_s=elapsed,
        joined=labelled,
    )


def spread_models(models: int) -> list[tuple[str, str]]:
    """(model, dataset) of `models` models, round robin over the datasets."""
    return [(f"scale_m{n:04d}", DATASETS[n % len(DATASETS)]) for n in range(models)]


def event_shares(models: list[tuple[str, str]]) -> dict[str, float]:
    """Each dataset's share of the events when they are spread round robin over `models`."""
    counts = Counter(dataset for _, dataset in models)
    return {dataset: count / len(models) for dataset, count in counts.items()}


def run(models: int, predictions: int, logs: Path) -> list[MonitoringRun]:
    """One model of each dataset alone, then `models` models over the datasets."""
    settings = PlatformSettings()
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    singles = [[(f"scale_{dataset}", dataset)] for dataset in DATASETS]
    many = spread_models(models)
    runs = []
    for case in (*singles, many):
        print(f"  monitoring, {len(case)} model(s) ...", flush=True)
        runs.append(measure_case(settings, admin, case, predictions, logs))
    return runs
