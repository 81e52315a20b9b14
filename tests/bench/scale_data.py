"""bench-scale, part 4: data-plane records/s with 1 vs 2 replicas of validation and of the
feature store.

For each count, in a namespace of its own (the loans spec registered there): that many
validation processes (one consumer group on data.raw) and feature-store workers (one faust
group on data.validated, each with its own data folder: MLOPS_INSTANCE), started as the local
stack starts replicas. Once both groups are stable with every member holding partitions, the
same RECORDS Agrawal loan records are produced to data.raw (bench-data's payloads and clock:
a one-record warm-up, then from the first produce to the last data.features message)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from services.feature_store.adapters.streaming import FAUST_DATA_ROOT, app_id, changelog_topic
from shared.datasets.registry import SpecRegistry
from shared.datasets.spec import shipped_specs
from shared.kafka.config import client_config, producer_config
from shared.kafka.producer import EventProducer
from shared.settings import PlatformSettings
from tests.bench.bench_data import raw_payloads, time_pipeline
from tests.bench.scale_common import assigned_members, child_env, namespace
from tests.services import RunningService, start_service
from tests.waiting import wait_until

SERVICES = ("validation", "feature_store")


@dataclass(frozen=True)
class DataRun:
    replicas: int
    records: int
    seconds: float

    @property
    def records_per_s(self) -> float:
        return (self.records - 1) / self.seconds


def register_loans(settings: PlatformSettings, ns: str) -> int:
    specs = SpecRegistry(client_config(settings, "bench-scale"), f"{ns}.data.specs", "bench")
    loans = next(spec for spec in shipped_specs() if spec.name == "loans")
    producer = EventProducer(producer_config(settings, "bench-scale"))
    try:
        return specs.register(loans, producer).version
    finally:
        producer.close()


def start_replicas(
    settings: PlatformSettings, ns: str, replicas: int, logs: Path
) -> list[RunningService]:
    started = []
    try:
        for name in SERVICES:
            for replica in range(1, replicas + 1):
                extra = {"MLOPS_INSTANCE": f"{name}-{replica}"}
                started.append(start_service(name, ns, child_env(settings), logs, extra_env=extra))
    except BaseException:
        for service in started:
            service.stop()
        raise
    return started


def wait_for_groups(admin: AdminClient, ns: str, replicas: int) -> None:
    for group in (f"{ns}.validation", app_id(ns)):
        wait_until(
            lambda group=group: assigned_members(admin, group) >= replicas,
            what=f"{replicas} member(s) of {group} holding partitions",
            timeout_s=120,
            interval_s=0.5,
        )


def measure(
    settings: PlatformSettings, admin: AdminClient, replicas: int, records: int, logs: Path
) -> DataRun:
    with namespace(admin, settings, "scaledata") as ns:
        payloads = raw_payloads(records, register_loans(settings, ns))
        services = start_replicas(settings, ns, replicas, logs)
        try:
            wait_for_groups(admin, ns, replicas)
            seconds = time_pipeline(
                settings.kafka_bootstrap_servers, f"{ns}.data.raw", f"{ns}.data.features", payloads
            )
        finally:
            for service in reversed(services):
                service.stop()
            for folder in FAUST_DATA_ROOT.glob(f"{app_id(ns)}-data*"):
                shutil.rmtree(folder, ignore_errors=True)
            admin.delete_topics([changelog_topic(ns)], operation_timeout=10)
    return DataRun(replicas, records, seconds)


def run(records: int, logs: Path) -> list[DataRun]:
    settings = PlatformSettings()
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    runs = []
    for replicas in (1, 2):
        print(f"  data plane, {replicas} replica(s) of each ...", flush=True)
        runs.append(measure(settings, admin, replicas, records, logs))
    return runs
