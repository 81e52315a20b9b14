"""Benchmark of the platform at scale (issue 14), in one run against the local stack.

    make bench-scale     (or: python -m tests.bench.bench_scale --parts registry serving)

1. Registry: GET p50/p99 of its read routes with 1,000 models x 5 versions registered
   (tests/bench/scale_registry.py). Target: p99 under 50 ms.
2. Serving: p50/p99 and memory (process RSS, GET /memory) with 200 champions requested at
   random, once with a model memory limit that fits all of them, once with one that fits 50
   (evictions counted) (scale_serving.py). Target: the models' memory within the limit.
3. Monitoring: process CPU per 1,000 events with 1 vs 200 monitored models over three
   datasets (scale_monitoring.py). Target: the 200-model figure within 1.5x of the 1-model one.
4. Data plane: records/s raw -> validation -> feature store -> data.features with 1 vs 2
   replicas of each (scale_data.py). No target: the figures say what a second replica buys.

Every service runs as a real process in a namespace of its own, beside the stack's. The
figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.bench import scale_data, scale_monitoring, scale_registry, scale_serving
from tests.bench.scale_stats import (
    Column,
    format_ratio,
    mib,
    ratio,
    table,
    verdict,
    weighted_mean,
)

PARTS = ("registry", "serving", "monitoring", "data")
REGISTRY_P99_MS = 50.0
MONITORING_RATIO = 1.5


def registry_report(result: scale_registry.RegistryResult) -> list[str]:
    total = result.models * result.versions
    columns = [Column("route", 34), Column("requests", 8), Column("p50 ms", 8),
               Column("p99 ms", 8), Column("max ms", 8), Column("body bytes", 11)]  # fmt: skip
    rows = [
        [
            r.route,
            str(r.requests),
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.max_ms:.1f}",
            f"{r.body_bytes:,}",
        ]
        for r in result.routes
    ]
    slow = [f"{r.route} {r.p99_ms:.1f} ms" for r in result.routes if r.p99_ms >= REGISTRY_P99_MS]
    met = len(result.routes) - len(slow)
    return [
        f"1. registry reads: {result.models:,} models x {result.versions} versions ({total:,} "
        f"versions, registered from models.trained at {result.registered_per_s:.0f}/s), "
        f"up to {result.requests} sequential requests per route (at least 100, "
        f"{scale_registry.BUDGET_S:.0f} s at most), random model and version",
        *table(columns, rows),
        f"target: p99 under {REGISTRY_P99_MS:.0f} ms: met on {met} of {len(result.routes)} "
        "routes" + (f"; NOT met on {'; '.join(slow)}" if slow else ""),
    ]


def serving_report(result: scale_serving.ServingResult) -> list[str]:
    columns = [Column("memory limit", 22), Column("req/s", 6), Column("p50 ms", 7),
               Column("p99 ms", 7), Column("errors", 6), Column("most loaded", 11),
               Column("most used", 10), Column("evictions", 9), Column("cold loads", 10),
               Column("RSS ready", 10), Column("RSS after", 10), Column("RSS peak", 10)]  # fmt: skip
    rows = []
    for run in result.runs:
        load = run.load
        rows.append([
            f"{run.label} ({mib(run.limit_bytes)})", f"{load['rps']:.0f}",
            f"{load['p50_ms']:.1f}", f"{load['p99_ms']:.1f}", str(load["errors"]),
            str(run.most_loaded), mib(run.most_used_bytes), str(run.evictions),
            str(run.cold_loads), mib(run.rss_ready), mib(run.rss_after), mib(run.rss_peak),
        ])  # fmt: skip
    within = all(run.most_used_bytes <= run.limit_bytes for run in result.runs)
    return [
        f"2. serving: {result.models} champions (loans pipelines; the largest retains "
        f"{mib(result.model_bytes)} loaded), single-record POST /predict from "
        f"{result.concurrency} connections for {result.seconds:.0f} s after a 2 s warm-up, "
        f"each request to one of the {result.models} models at random",
        *table(columns, rows),
        "most loaded / most used: GET /memory sampled every 0.5 s (models' retained bytes); "
        "RSS: the process (/proc VmRSS after the load, VmHWM peak)",
        f"target: the models' memory within the configurable limit: {verdict(within)}",
    ]


def monitoring_report(runs: list[scale_monitoring.MonitoringRun], models: int) -> list[str]:
    columns = [Column("models", 32), Column("events", 7), Column("CPU s", 6),
               Column("CPU ms / 1,000 events", 21), Column("events/s", 9),
               Column("labels joined", 13), Column("idle CPU ms/s", 13)]  # fmt: skip
    rows = [
        [f"{r.models} ({', '.join(r.datasets)})", f"{r.events:,}", f"{r.cpu_s:.2f}",
         f"{r.cpu_ms_per_1000:.0f}", f"{r.events / r.elapsed_s:.0f}", f"{r.joined:,}",
         f"{r.idle_cpu_per_s * 1000:.1f}"]
        for r in runs
    ]  # fmt: skip
    *singles, many = runs
    alone = {r.datasets[0]: r.cpu_ms_per_1000 for r in singles}
    shares = scale_monitoring.event_shares(scale_monitoring.spread_models(models))
    reference = weighted_mean(alone, shares)
    cost = ratio(many.cpu_ms_per_1000, reference)
    first = singles[0]
    return [
        f"3. monitoring: process CPU per 1,000 events (PredictionServed + LabelRecorded, half "
        f"each), {many.events:,} events per case, one monitoring process per case",
        *table(columns, rows),
        "CPU: user + system from the first publish until its consumer groups committed every event, "
        "minus the idle rate measured for 5 s before; events/s over the same span",
        f"one model, weighted by each dataset's share of the {many.models} models' events: "
        f"{reference:.0f} ms per 1,000 events",
        f"ratio {many.models} models / one model = {format_ratio(many.cpu_ms_per_1000, reference)}"
        f" (target <= {MONITORING_RATIO}x: {verdict(cost <= MONITORING_RATIO)}); "
        f"against one {first.datasets[0]} model alone: "
        f"{format_ratio(many.cpu_ms_per_1000, first.cpu_ms_per_1000)}",
    ]


def data_report(runs: list[scale_data.DataRun]) -> list[str]:
    columns = [Column("replicas of validation and feature store", 42), Column("seconds", 8),
               Column("records/s", 10), Column("x 1 replica", 11)]  # fmt: skip
    base = runs[0].records_per_s
    rows = [
        [str(r.replicas), f"{r.seconds:.1f}", f"{r.records_per_s:.0f}",
         format_ratio(r.records_per_s, base)]
        for r in runs
    ]  # fmt: skip
    return [
        f"4. data plane: {runs[0].records:,} Agrawal loan records raw -> validation -> feature "
        "store -> data.features (3 partitions), from the first produce to the last features "
        "message",
        *table(columns, rows),
    ]


def run_part(part: str, args: argparse.Namespace, logs: Path) -> list[str]:
    folder = logs / part
    folder.mkdir()
    if part == "registry":
        result = scale_registry.run(args.models, args.versions, args.requests, folder)
        return registry_report(result)
    if part == "serving":
        served = scale_serving.run(
            args.serving_models, args.fitting, args.concurrency, args.seconds, folder
        )
        return serving_report(served)
    if part == "monitoring":
        runs = scale_monitoring.run(args.monitored_models, args.predictions, folder)
        return monitoring_report(runs, args.monitored_models)
    return data_report(scale_data.run(args.records, folder))


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--models", type=int, default=1000, help="registry: models")
    parser.add_argument("--versions", type=int, default=5, help="registry: versions per model")
    parser.add_argument("--requests", type=int, default=300, help="registry: per route")
    parser.add_argument("--serving-models", type=int, default=200)
    parser.add_argument("--fitting", type=int, default=50, help="serving: models the limit fits")
    parser.add_argument("--concurrency", type=int, default=4, help="serving: connections")
    parser.add_argument("--seconds", type=float, default=15.0, help="serving: load per run")
    parser.add_argument("--monitored-models", type=int, default=200)
    parser.add_argument(
        "--predictions", type=int, default=10_000, help="monitoring: predictions (and labels)"
    )
    parser.add_argument("--records", type=int, default=20_000, help="data plane: records")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    started = time.monotonic()
    logs = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    failed: list[str] = []
    print(f"bench-scale ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores)")
    for part in args.parts:
        print(f"[{part}] ...", flush=True)
        try:
            lines = run_part(part, args, logs)
        except Exception as error:
            failed.append(part)
            lines = [f"{part}: FAILED: {type(error).__name__}: {error}"]
        print("\n" + "\n".join(lines) + "\n", flush=True)
    load = os.getloadavg()
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    print(
        f"bench-scale took {minutes} min {seconds} s; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    if failed:
        print(f"logs of the services kept in {logs} (failed: {', '.join(failed)})")
    else:
        shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    main()
