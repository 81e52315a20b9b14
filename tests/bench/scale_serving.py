"""bench-scale, part 2: serving with many champions, within a memory limit.

As tests/integration/test_serving_many_models.py does (its helpers are reused): MODELS real
scikit-learn pipelines (a few distinct fitted ones) are stored in MinIO as skops artifacts and
registered through models.trained; the registry makes each v1 champion and serving (a
process in a namespace of its own) loads them. Two runs of the same load (bench-serving's
load generator in its own process, single-record POST /predict, each request to a model drawn
at random among all of them):
1. MLOPS_SERVING_MODEL_MEMORY_MB fits every model (each requested once before: all loaded);
2. it fits FITTING of them: the others are evicted and loaded again on request.
Memory: the process's resident set (/proc VmRSS now, VmHWM the peak) and serving's own
GET /memory account (bytes retained by the loaded models against the limit)."""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka.admin import AdminClient

from shared.settings import PlatformSettings
from shared.storage import minio_client
from tests.bench.bench_serving import run_load
from tests.bench.scale_common import child_env, namespace, process_memory
from tests.integration.test_serving_many_models import (
    DISTINCT_MODELS,
    largest_retained_size,
    model_name,
    register_many,
    wait_for_champions,
)
from tests.integration.test_serving_service import Platform, loans_records, train

MIB = 1_048_576


@dataclass(frozen=True)
class ServingRun:
    label: str
    limit_bytes: int
    fits: int
    load: dict[str, Any]
    loaded_before: int
    most_loaded: int
    most_used_bytes: int
    evictions: int
    cold_loads: int
    rss_ready: int
    rss_after: int
    rss_peak: int


@dataclass(frozen=True)
class ServingResult:
    models: int
    model_bytes: int
    concurrency: int
    seconds: float
    runs: list[ServingRun]


@contextmanager
def serving_platform(settings: PlatformSettings, logs: Path) -> Iterator[Platform]:
    """test_serving_service's fixture, outside pytest: a namespace, a bucket, the loans spec."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    minio = minio_client(settings)
    bucket = f"scale-{uuid.uuid4().hex[:12]}"
    minio.make_bucket(bucket)
    try:
        with namespace(admin, settings, "scalesrv") as ns:
            platform = Platform(ns, settings, child_env(settings), logs, minio, bucket)
            try:
                platform.register_spec()
                yield platform
            finally:
                for service in (platform.serving, platform.registry):
                    if service is not None:
                        service.stop()
    finally:
        for item in minio.list_objects(bucket, recursive=True):
            minio.remove_object(bucket, item.object_name)
        minio.remove_bucket(bucket)


def memory_view(platform: Platform) -> dict[str, Any]:
    assert platform.serving is not None
    view: dict[str, Any] = httpx.get(f"{platform.serving.url}/memory", timeout=30).json()
    return view


class Sampler:
    """GET /memory twice a second until stopped: the most models and bytes seen loaded."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.most_loaded = 0
        self.most_used = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            view = memory_view(self.platform)
            self.most_loaded = max(self.most_loaded, len(view["loaded"]))
            self.most_used = max(self.most_used, view["used_bytes"])


def request_bodies(names: list[str], count: int) -> list[dict[str, Any]]:
    draw = random.Random(11)
    records = loans_records(50, seed=60)
    return [
        {"model": draw.choice(names), "records": [records[n % len(records)]]} for n in range(count)
    ]


def warm_every_model(platform: Platform, names: list[str]) -> None:
    records = loans_records(1, seed=61)
    for name in names:
        answer = platform.predict(records, model=name)
        answer.raise_for_status()


def measure(
    platform: Platform, label: str, limit: int, fits: int, bodies: Path, load: tuple[int, float]
) -> ServingRun:
    assert platform.serving is not None
    pid = platform.serving.process.pid
    before = memory_view(platform)
    with Sampler(platform) as sampler:
        result = run_load(f"{platform.serving.url}/predict", bodies, load[0], load[1], 2.0)
    after = memory_view(platform)
    memory = process_memory(pid)
    return ServingRun(
        label=label,
        limit_bytes=limit,
        fits=fits,
        load=result,
        loaded_before=len(before["loaded"]),
        most_loaded=max(sampler.most_loaded, len(after["loaded"])),
        most_used_bytes=max(sampler.most_used, after["used_bytes"]),
        evictions=after["evictions"] - before["evictions"],
        cold_loads=after["loads"] - before["loads"],
        rss_ready=0,
        rss_after=memory["VmRSS"],
        rss_peak=memory["VmHWM"],
    )


def start_serving(platform: Platform, limit: int) -> int:
    """Starts serving with a limit in bytes; returns its resident set once ready."""
    platform.start_serving(model_memory_mb=f"{limit / MIB:.6f}")
    assert platform.serving is not None
    return process_memory(platform.serving.process.pid)["VmRSS"]


def run(models: int, fitting: int, concurrency: int, seconds: float, logs: Path) -> ServingResult:
    settings = PlatformSettings()
    with serving_platform(settings, logs) as platform:
        platform.start_registry()
        fitted = [train(seed=seed, max_iter=10 + 5 * seed) for seed in range(DISTINCT_MODELS)]
        size = largest_retained_size(fitted)
        names = [model_name(index) for index in range(models)]
        bodies = logs / "bodies.json"
        bodies.write_text(json.dumps(request_bodies(names, 4000)))
        runs = []
        for fits in (models, fitting):
            limit = fits * size + size // 2
            rss_ready = start_serving(platform, limit)
            if not runs:
                print(f"  registering {models} models through MinIO and the registry ...")
                register_many(platform, models)
            wait_for_champions(platform, names)
            if fits == models:
                warm_every_model(platform, names)
            label = "all fit" if fits == models else f"{fits} fit"
            print(f"  serving load, {label} ...", flush=True)
            measured = measure(platform, label, limit, fits, bodies, (concurrency, seconds))
            runs.append(replace(measured, rss_ready=rss_ready))
            assert platform.serving is not None
            platform.serving.stop()
            platform.serving = None
    return ServingResult(models, size, concurrency, seconds, runs)
