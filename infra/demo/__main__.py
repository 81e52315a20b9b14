"""`make demo`: the closed loop, live, in about five minutes.

Starts the seven services in a namespace of the demo's own (beside the ones `make up` runs:
those keep production's retraining policy, a 30-minute cooldown among others, which a demo
cannot wait for), trains a first model on Agrawal loan applications, then streams
applications at a steady rate with their labels a second later and one /predict request
each, switches the Agrawal classification function at a known point, and shows live what
happens: drift detected, one retrain on the data since the drift, promotion against the
champion on post-drift data, hot-swap in serving. Ends with a report of `key=value` lines.

A console (services/console) runs beside the demo's services, on their namespace: its URL is
printed at the start and at the end (DEMO_CONSOLE_PORT, default CONSOLE_PORT + 100, 8100, or
a free port when that one is taken: the stack's own console, on CONSOLE_PORT, shows the stack's
namespace). Run from a terminal, the demo keeps its
services and console up after the report until Enter is pressed, to look around.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.live import Live
from rich.table import Table

from infra.demo.loop import (
    FEATURE_DETECTORS,
    EventWatcher,
    LoopStream,
    Seen,
    StreamPlan,
    StreamStats,
    Urls,
    start_platform,
    trace_in_jaeger,
    train_first_model,
)
from infra.processes import (
    RunningService,
    drop_namespace_state,
    free_port,
    namespace_topics,
    start_service,
)
from shared.settings import PlatformSettings

MODEL = "loans"
SEED = 7
console = Console()


@dataclass(frozen=True)
class DemoConfig:
    first_model_records: int = 1000
    rate: float = 40.0
    before_switch: int = 1200
    after_redeploy: int = 1000
    label_delay_s: float = 1.0
    min_labels_after_drift: int = 400
    deadline_s: float = 540.0


def monitoring_env(config: DemoConfig) -> dict[str, str]:
    return {
        "MLOPS_MONITORING_LABEL_WAIT_S": "10",
        "MLOPS_MONITORING_DEBOUNCE_S": "600",
        "MLOPS_MONITORING_COOLDOWN_S": "600",
        "MLOPS_MONITORING_MIN_LABELS_AFTER_DRIFT": str(config.min_labels_after_drift),
        "MLOPS_MONITORING_MAX_RETRAINS_PER_HOUR": "2",
        "MLOPS_MONITORING_DETECTORS": FEATURE_DETECTORS,
    }


@contextmanager
def platform(
    settings: PlatformSettings, namespace: str, logs: Path, config: DemoConfig
) -> Iterator[dict[str, RunningService]]:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    admin.list_topics(timeout=10)
    env = {**os.environ, "MLOPS_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    env["PYTHONUNBUFFERED"] = "1"
    services: dict[str, RunningService] = {}

    def start(
        name: str, wait_ready: bool = True, port: int | None = None, **extra: str
    ) -> RunningService:
        with console.status(f"starting {name}"):
            services[name] = start_service(
                name, namespace, env, logs, extra_env=extra, wait_ready=wait_ready, port=port
            )
        console.log(f"{name} up on {services[name].url}")
        return services[name]

    with namespace_topics(admin, namespace):
        try:
            started = start_platform(start, namespace, monitoring_env(config))
            urls = {name: service.url for name, service in started.items()}
            start(
                "console",
                port=demo_console_port(),
                MLOPS_CONSOLE_SERVICE_URLS=json.dumps(urls),
                MLOPS_CONSOLE_POLL_INTERVAL_S="2",
            )
            yield services
        finally:
            with console.status("stopping the demo's services"):
                for service in reversed(list(services.values())):
                    service.stop()
            if settings.database_url is not None:
                url = settings.database_url.get_secret_value()
                drop_namespace_state(url, namespace)


@dataclass
class Progress:
    """What the loop has shown so far, from the watcher's events."""

    first_version: int
    drift: Seen | None = None
    command: Seen | None = None
    trained: Seen | None = None
    promoted: Seen | None = None
    rejected: Seen | None = None

    def update(self, watcher: EventWatcher) -> None:
        self.drift = self.drift or next(iter(watcher.drifts()), None)
        self.command = self.command or next(iter(watcher.drift_commands()), None)
        if self.command is not None and self.trained is None:
            trained = watcher.caused_by("mlops.ModelTrained", self.command.event["id"])
            self.trained = trained[0] if trained else None
        if self.trained is not None and self.promoted is None:
            promoted = watcher.caused_by("mlops.ModelPromoted", self.trained.event["id"])
            rejected = watcher.caused_by("mlops.ModelRejected", self.trained.event["id"])
            self.promoted = promoted[0] if promoted else None
            self.rejected = rejected[0] if rejected else None

    @property
    def new_version(self) -> int | None:
        return int(self.promoted.data["version"]) if self.promoted else None

    def state(self, stats: StreamStats) -> str:
        if self.rejected is not None:
            return f"retrained version rejected: {self.rejected.data['reason']}"
        if self.new_version and (stats.version or 0) >= self.new_version:
            return f"serving v{self.new_version} (redeployed after the drift)"
        if self.promoted is not None:
            return f"v{self.new_version} promoted; serving swapping"
        if self.trained is not None:
            return "retrained; registry deciding"
        if self.command is not None:
            return "retraining on the data since the drift"
        if self.drift is not None:
            return f"DRIFT detected ({self.drift.data['signal']}); waiting for labels"
        if stats.switched_at is not None:
            return "concept switched; no drift detected yet"
        return "stable"


def view(stats: StreamStats, progress: Progress, elapsed: float) -> Table:
    table = Table(title=f"closed loop, {elapsed:.0f}s", show_header=False, min_width=70)
    recent = stats.recent_accuracy
    rows = [
        ("events sent", f"{stats.sent} ({stats.sent_after_switch} after the switch)"),
        ("labels sent / never sent", f"{stats.labels_sent} / {stats.labels_dropped}"),
        ("/predict requests (failed)", f"{stats.requests} ({stats.failed_requests})"),
        ("accuracy, last 200", f"{recent:.3f}" if recent is not None else "-"),
        ("model version answering", f"v{stats.version}" if stats.version else "-"),
        ("drift state", progress.state(stats)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def run(config: DemoConfig, settings: PlatformSettings) -> int:
    started = time.monotonic()
    namespace = f"demo{datetime.now().strftime('%Y%m%d%H%M%S')}"
    logs = Path(".local/demo") / namespace
    logs.mkdir(parents=True, exist_ok=True)
    console.log(f"namespace {namespace}; service logs in {logs}")
    bootstrap = settings.kafka_bootstrap_servers
    with platform(settings, namespace, logs, config) as services:
        urls = Urls(**{n: s.url for n, s in services.items() if n in Urls.__dataclass_fields__})
        print(f"console: {services['console'].url}/", flush=True)
        watcher = EventWatcher(bootstrap, namespace, f"{namespace}.demo").start()
        try:
            with console.status(f"training a first model on {config.first_model_records} records"):
                first, next_index = train_first_model(urls, MODEL, config.first_model_records, SEED)
            console.log(f"v{first} is the champion and serving answers with it")
            switch = next_index + config.before_switch
            plan = StreamPlan(
                model=MODEL,
                seed=SEED,
                start_index=next_index,
                rate=config.rate,
                label_delay_s=config.label_delay_s,
                drift_at=switch,
                drop_label_every=50,
            )
            stream = LoopStream(urls, plan)
            stats, progress = watch(stream, watcher, first, config, started)
            retrains = len({s.event["id"] for s in watcher.drift_commands()})
            expired = expired_predictions(urls)
            outcome = report(stats, progress, stream, retrains, expired, settings, started)
            print(f"console: {services['console'].url}/", flush=True)
            keep_for_a_look()
            return outcome
        finally:
            watcher.stop()


def demo_console_port() -> int:
    """DEMO_CONSOLE_PORT, else CONSOLE_PORT + 100 when free, else any free port."""
    if os.environ.get("DEMO_CONSOLE_PORT"):
        return int(os.environ["DEMO_CONSOLE_PORT"])
    preferred = int(os.environ.get("CONSOLE_PORT") or 8000) + 100
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def keep_for_a_look() -> None:
    """From a terminal, the demo's services and console stay up until Enter is pressed."""
    if not sys.stdin.isatty():
        return
    with suppress(EOFError, KeyboardInterrupt):
        input("the console shows the demo's run; press Enter to stop its services ")


def watch(
    stream: LoopStream,
    watcher: EventWatcher,
    first: int,
    config: DemoConfig,
    started: float,
) -> tuple[StreamStats, Progress]:
    progress = Progress(first_version=first)
    served_new_from: int | None = None
    stream.start()
    try:
        with Live(console=console, refresh_per_second=4) as live:
            while time.monotonic() - started < config.deadline_s:
                stats = stream.snapshot()
                progress.update(watcher)
                live.update(view(stats, progress, time.monotonic() - started))
                if progress.rejected is not None:
                    break
                new = progress.new_version
                if new and (stats.version or 0) >= new and served_new_from is None:
                    served_new_from = stats.sent
                if served_new_from is not None and stats.sent - served_new_from >= (
                    config.after_redeploy
                ):
                    break
                time.sleep(0.25)
    finally:
        stats = stream.stop()
    progress.update(watcher)
    return stats, progress


def report(
    stats: StreamStats,
    progress: Progress,
    stream: LoopStream,
    retrains: int,
    expired: int,
    settings: PlatformSettings,
    started: float,
) -> int:
    def fmt(value: float | None) -> str:
        return f"{value:.3f}" if value is not None else "none"

    drift_time = _event_time(progress.drift)
    served = stats.versions_first_seen.get(progress.new_version or -1)
    trace_id = progress.command.trace_id if progress.command else None
    spans = trace_in_jaeger(settings.jaeger_query_url, trace_id) if trace_id else 0
    lines = {
        "accuracy_before_drift": fmt(stats.phases["before"].accuracy),
        "accuracy_during_drift": fmt(stats.phases["during"].accuracy),
        "drift_detected_after_events": (
            str(stream.sent_after_switch_at(drift_time)) if drift_time else "none"
        ),
        "drift_to_serving_seconds": (
            f"{served - drift_time:.1f}" if served and drift_time else "none"
        ),
        "accuracy_after_redeploy": fmt(stats.phases["after"].accuracy),
        "failed_requests": str(stats.failed_requests),
        "retrains": str(retrains),
        "retraining_trace_id": trace_id or "none",
    }
    console.print()
    for key, value in lines.items():
        print(f"{key}={value}")
    if trace_id:
        where = f"{settings.jaeger_query_url.rstrip('/')}/trace/{trace_id}"
        print(f"# the retraining's trace: {where} ({spans} spans in Jaeger)")
    print(
        f"# {stats.sent} events, {stats.requests} /predict requests, {stats.labels_dropped} "
        f"labels never sent ({expired} predictions expired unlabelled in monitoring so far), "
        f"{time.monotonic() - started:.0f}s"
    )
    ok = (
        progress.promoted is not None
        and served is not None
        and stats.failed_requests == 0
        and retrains == 1
        and spans > 0
    )
    if not ok:
        print("# the loop did not close: see the service logs", file=sys.stderr)
    return 0 if ok else 1


def expired_predictions(urls: Urls) -> int:
    answer = httpx.get(f"{urls.monitoring}/performance", timeout=10)
    return sum(int(row.get("expired", 0)) for row in answer.json().get("models", []))


def _event_time(seen: Seen | None) -> float | None:
    if seen is None:
        return None
    return datetime.fromisoformat(seen.event["time"]).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=DemoConfig.rate)
    parser.add_argument("--before-switch", type=int, default=DemoConfig.before_switch)
    args = parser.parse_args()
    config = DemoConfig(rate=args.rate, before_switch=args.before_switch)
    sys.exit(run(config, PlatformSettings()))


if __name__ == "__main__":
    main()
