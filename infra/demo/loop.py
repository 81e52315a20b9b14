"""Driving the closed loop from outside, as a client would: a first model, then a steady
stream of loan applications (ingested), /predict requests for each, and labels a little later,
with River's Agrawal classification function switched at a known point; and a watcher of the
events the platform publishes on the way (drift, retraining command, trained, lifecycle).

Used by `make demo` (infra/demo/__main__.py) and by tests/e2e/test_closed_loop.py.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from confluent_kafka import Consumer, KafkaError

from infra.processes import RunningService, wait_for
from shared.datasets.sources import Record, agrawal_records

DATASET = "loans"
ENTITIES = 10**6  # about one applicant per application: no history to aggregate
# Agrawal's features never change here, only its labels: feature detectors stricter than the
# default (ADWIN delta 0.002 raised a rare false alarm on one of six features in a few
# thousand values) keep feature monitoring on without a spurious retrain before the switch.
FEATURE_DETECTORS = '{"loans": {"feature": {"kind": "adwin", "params": {"delta": 1e-05}}}}'
WATCHED = ("monitoring.drift", "training.requests", "models.trained", "models.lifecycle")


@dataclass(frozen=True)
class Urls:
    ingestion: str
    feature_store: str
    training: str
    registry: str
    serving: str
    monitoring: str


# --- the first model ---------------------------------------------------------------------


class StartService(Protocol):
    def __call__(self, name: str, wait_ready: bool = True, **extra: str) -> RunningService: ...


def start_platform(
    start: StartService,
    namespace: str,
    monitoring: Mapping[str, str],
    serve_only: str | None = None,
    replicas: Mapping[str, int] | None = None,
) -> dict[str, RunningService]:
    """Starts the closed loop's services with `start`, each after those it calls, with what a
    short loop needs: SQL schemas of the namespace's own, offline files flushed every second
    (a drift retrain reads the latest rows), no data-volume retraining. Serving serves every
    model that gets a champion (only `serve_only` when given); it is ready before any has one.
    `replicas` runs a service as that many processes (each its MLOPS_INSTANCE, as the stack
    names them); the first one's is the service returned and called."""
    counts = replicas or {}

    def start_all(name: str, **extra: str) -> RunningService:
        count = counts.get(name, 1)
        if count == 1:
            return start(name, **extra)
        first, *_ = [
            start(name, MLOPS_INSTANCE=f"{name}-{n}", **extra) for n in range(1, count + 1)
        ]
        return first

    registry = start_all("registry", MLOPS_REGISTRY_DATABASE_SCHEMA=f"reg_{namespace}")
    features = start_all("feature_store", MLOPS_FEATURE_STORE_OFFLINE_FLUSH_S="1")
    started = {"registry": registry, "feature_store": features}
    started["ingestion"] = start_all("ingestion")
    started["validation"] = start_all("validation")
    started["training"] = start_all(
        "training",
        MLOPS_TRAINING_FEATURE_STORE_URL=features.url,
        MLOPS_TRAINING_REGISTRY_URL=registry.url,
        MLOPS_TRAINING_DATABASE_SCHEMA=f"train_{namespace}",
        MLOPS_TRAINING_RETRAIN_EVERY_LABELS="1000000",
    )
    restriction = {"MLOPS_SERVING_MODELS": json.dumps([serve_only])} if serve_only else {}
    started["serving"] = start_all(
        "serving",
        MLOPS_SERVING_REGISTRY_URL=registry.url,
        MLOPS_SERVING_FEATURE_STORE_URL=features.url,
        **restriction,
    )
    started["monitoring"] = start_all(
        "monitoring", MLOPS_MONITORING_REGISTRY_URL=registry.url, **monitoring
    )
    return started


def ingest(
    client: httpx.Client,
    urls: Urls,
    records: list[Record],
    labels: list[dict],
    dataset: str = DATASET,
) -> None:
    for first in range(0, len(records), 500):
        answer = client.post(
            f"{urls.ingestion}/datasets/{dataset}/records",
            json={"records": records[first : first + 500]},
        )
        answer.raise_for_status()
    for first in range(0, len(labels), 1000):
        answer = client.post(
            f"{urls.ingestion}/datasets/{dataset}/labels",
            json={"labels": labels[first : first + 1000]},
        )
        answer.raise_for_status()


@dataclass(frozen=True)
class FirstData:
    """What a first model of a dataset is trained on: its labelled records and the field that
    identifies a record (labels arrive later, keyed by it)."""

    dataset: str
    rows: list[tuple[Record, Any]]
    record_id: str


def loans_first_data(count: int, seed: int) -> FirstData:
    """`count` loan applications of the last `count` seconds before now (function 0)."""
    start = datetime.now(UTC) - timedelta(seconds=count + 60)
    rows = list(agrawal_records(count, seed=seed, start=start, entities=ENTITIES))
    return FirstData(DATASET, rows, "application_id")


def champion(client: httpx.Client, urls: Urls, model: str) -> dict[str, Any] | None:
    answer = client.get(f"{urls.registry}/models/{model}/aliases/champion")
    return answer.json() if answer.status_code == 200 else None


def champion_version(client: httpx.Client, urls: Urls, model: str) -> int | None:
    held = champion(client, urls, model)
    return int(held["version"]["version"]) if held else None


def served_version(client: httpx.Client, urls: Urls, model: str, record: Record) -> int | None:
    answer = client.post(f"{urls.serving}/predict", json={"model": model, "records": [record]})
    return int(answer.json()["version"]) if answer.status_code == 200 else None


def train_first_model(
    urls: Urls,
    model: str,
    count: int,
    seed: int,
    timeout_s: float = 300,
    data: FirstData | None = None,
) -> tuple[int, int]:
    """Ingests `count` labelled records (`data`, or loan applications), trains and promotes a
    first version, waits until serving answers with it.
    Returns (that version, the stream index to continue from)."""
    first = data or loans_first_data(count, seed)
    dataset = first.dataset
    records = [record for record, _ in first.rows]
    labels = [{"record_id": r[first.record_id], "label": y} for r, y in first.rows]
    with httpx.Client(timeout=60) as client:
        ingest(client, urls, records, labels, dataset)

        def rows_in_training_set() -> int:
            answer = client.post(f"{urls.feature_store}/training-sets", json={"dataset": dataset})
            return answer.json().get("rows", 0) if answer.status_code in (200, 201) else 0

        wait_for(
            lambda: rows_in_training_set() >= len(records),
            "every labelled record in the feature store",
            timeout_s,
            interval_s=3,
        )
        answer = client.post(
            f"{urls.training}/train",
            json={"model_name": model, "dataset": dataset, "reason": "first model"},
        )
        answer.raise_for_status()
        version = wait_for(
            lambda: champion_version(client, urls, model), "a first champion", timeout_s
        )
        wait_for(
            lambda: served_version(client, urls, model, records[-1]) == version,
            f"serving to answer with v{version}",
            timeout_s,
        )
    return version, count


# --- the stream ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamPlan:
    model: str
    seed: int
    start_index: int
    rate: float = 40.0
    """Applications per second."""
    label_delay_s: float = 1.0
    drift_at: int | None = None
    """Stream index from which labels follow `function_after` (None: stationary)."""
    function_before: int = 0
    function_after: int = 2
    drop_label_every: int | None = None
    """Every n-th label never arrives (None: all arrive)."""
    predict_workers: int = 4


@dataclass
class PhaseScore:
    predicted: int = 0
    correct: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.predicted if self.predicted else None


@dataclass
class StreamStats:
    sent: int = 0
    sent_after_switch: int = 0
    switched_at: float | None = None
    labels_sent: int = 0
    labels_dropped: int = 0
    requests: int = 0
    failed_requests: int = 0
    failures: deque[str] = field(default_factory=lambda: deque(maxlen=5))
    ingest_failures: int = 0
    first_version: int | None = None
    version: int | None = None
    versions_first_seen: dict[int, float] = field(default_factory=dict)
    phases: dict[str, PhaseScore] = field(
        default_factory=lambda: {name: PhaseScore() for name in ("before", "during", "after")}
    )
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=200))

    @property
    def recent_accuracy(self) -> float | None:
        return sum(self.recent) / len(self.recent) if self.recent else None


class LoopStream:
    """Streams applications at a steady rate until stopped: each one ingested, predicted
    (one /predict request of its own, inline record) and labelled `label_delay_s` later."""

    def __init__(self, urls: Urls, plan: StreamPlan) -> None:
        self.urls = urls
        self.plan = plan
        self.stats = StreamStats()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loop-stream", daemon=True)
        self._client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=16))
        self._pool = ThreadPoolExecutor(plan.predict_workers, thread_name_prefix="predict")
        self._labels: deque[tuple[float, dict[str, Any]]] = deque()
        self._sent_after_switch: list[tuple[float, int]] = []
        self.error: BaseException | None = None

    def start(self) -> LoopStream:
        self._thread.start()
        return self

    def stop(self, flush_labels: bool = True) -> StreamStats:
        self._stop.set()
        self._thread.join(60)
        self._pool.shutdown(wait=True)
        if flush_labels:
            self._send_labels(float("inf"))
        self._client.close()
        if self.error is not None:
            raise RuntimeError(f"the stream failed: {self.error!r}") from self.error
        return self.stats

    def snapshot(self) -> StreamStats:
        with self.lock:
            return copy.deepcopy(self.stats)

    def sent_after_switch_at(self, at: float) -> int:
        """How many applications after the switch had been sent at `at` (time.time())."""
        with self.lock:
            return max((n for t, n in self._sent_after_switch if t <= at), default=0)

    def _applications(self) -> Iterator[tuple[int, Record, int]]:
        plan = self.plan
        rows = agrawal_records(
            10**9,
            seed=plan.seed,
            start=datetime.now(UTC),
            entities=ENTITIES,
            function_before=plan.function_before,
            drift_at=plan.drift_at,
            function_after=plan.function_after,
            start_index=plan.start_index,
        )
        for index, (record, label) in enumerate(rows, start=plan.start_index):
            yield index, record, label

    def _run(self) -> None:
        try:
            self._stream()
        except BaseException as error:  # reported by stop()
            self.error = error

    def _stream(self) -> None:
        began = time.monotonic()
        applications = self._applications()
        sent = 0
        while not self._stop.is_set():
            due = int((time.monotonic() - began) * self.plan.rate) - sent
            batch = [next(applications) for _ in range(max(0, due))]
            if batch:
                self._send(batch)
                sent += len(batch)
            self._send_labels(time.monotonic())
            self._stop.wait(0.05)

    def _send(self, batch: list[tuple[int, Record, int]]) -> None:
        now = datetime.now(UTC).isoformat()
        for _, record, _ in batch:
            record["applied_at"] = now  # event time = the time it is sent
        answer = self._client.post(
            f"{self.urls.ingestion}/datasets/{DATASET}/records",
            json={"records": [record for _, record, _ in batch]},
        )
        drift_at = self.plan.drift_at
        with self.lock:
            if answer.status_code != 202:
                self.stats.ingest_failures += len(batch)
            self.stats.sent += len(batch)
            after = [i for i, _, _ in batch if drift_at is not None and i >= drift_at]
            if after and self.stats.switched_at is None:
                self.stats.switched_at = time.monotonic()
            self.stats.sent_after_switch += len(after)
            if after:
                self._sent_after_switch.append((time.time(), self.stats.sent_after_switch))
        due = time.monotonic() + self.plan.label_delay_s
        for index, record, label in batch:
            self._pool.submit(self._predict, index, record, label)
            every = self.plan.drop_label_every
            if every and index % every == 0:
                with self.lock:
                    self.stats.labels_dropped += 1
                continue
            self._labels.append((due, {"record_id": record["application_id"], "label": label}))

    def _predict(self, index: int, record: Record, label: int) -> None:
        try:
            answer = self._client.post(
                f"{self.urls.serving}/predict", json={"model": self.plan.model, "records": [record]}
            )
            ok = answer.status_code == 200
            body = answer.json() if ok else None
            problem = None if ok else f"{answer.status_code}: {answer.text[:200]}"
        except httpx.HTTPError as error:
            ok, body, problem = False, None, f"{type(error).__name__}: {error}"
        with self.lock:
            self.stats.requests += 1
            if not ok or body is None:
                self.stats.failed_requests += 1
                self.stats.failures.append(str(problem))
                return
            self._score(index, int(body["version"]), body["predictions"][0]["prediction"], label)

    def _score(self, index: int, version: int, prediction: Any, label: int) -> None:
        stats = self.stats
        if stats.first_version is None:
            stats.first_version = version
        stats.version = max(stats.version or version, version)
        stats.versions_first_seen.setdefault(version, time.time())
        correct = int(int(prediction) == label)
        stats.recent.append(correct)
        drifted = self.plan.drift_at is not None and index >= self.plan.drift_at
        phase = "after" if version != stats.first_version else "during" if drifted else "before"
        stats.phases[phase].predicted += 1
        stats.phases[phase].correct += correct

    def _send_labels(self, now: float) -> None:
        due: list[dict[str, Any]] = []
        while self._labels and self._labels[0][0] <= now:
            due.append(self._labels.popleft()[1])
        for first in range(0, len(due), 1000):
            answer = self._client.post(
                f"{self.urls.ingestion}/datasets/{DATASET}/labels",
                json={"labels": due[first : first + 1000]},
            )
            answer.raise_for_status()
        with self.lock:
            self.stats.labels_sent += len(due)


# --- the events on the way ---------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    topic: str
    event: dict[str, Any]
    headers: dict[str, str]
    received_at: float
    """time.time() when the watcher read it."""

    @property
    def type(self) -> str:
        return str(self.event.get("type"))

    @property
    def data(self) -> dict[str, Any]:
        return self.event.get("data") or {}

    @property
    def trace_id(self) -> str | None:
        parts = self.headers.get("traceparent", "").split("-")
        return parts[1] if len(parts) == 4 else None


class EventWatcher:
    """Reads the loop's topics of a namespace from their beginning, in a thread of its own."""

    def __init__(self, bootstrap: str, namespace: str, group: str) -> None:
        self.topics = {f"{namespace}.{name}": name for name in WATCHED}
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-watcher", daemon=True)

    def start(self) -> EventWatcher:
        self._consumer.subscribe(list(self.topics))
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                if message.error().code() != KafkaError._PARTITION_EOF:
                    time.sleep(0.2)
                continue
            try:
                event = json.loads(message.value())
            except ValueError:
                continue
            headers = {k: (v or b"").decode(errors="replace") for k, v in message.headers() or []}
            seen = Seen(self.topics[message.topic()], event, headers, time.time())
            with self._lock:
                self._seen.append(seen)

    def seen(self, type_: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self._seen if type_ is None or s.type == type_]

    def drifts(self) -> list[Seen]:
        return self.seen("mlops.DriftDetected")

    def drift_commands(self) -> list[Seen]:
        return [
            s
            for s in self.seen("mlops.TrainModel")
            if s.data.get("trigger", {}).get("kind") == "drift"
        ]

    def by_id(self, event_id: str | None) -> Seen | None:
        return next((s for s in self.seen() if s.event.get("id") == event_id), None)

    def caused_by(self, type_: str, event_id: str | None) -> list[Seen]:
        return [s for s in self.seen(type_) if s.event.get("causationid") == event_id]


def trace_in_jaeger(query_url: str, trace_id: str, timeout_s: float = 30) -> int:
    """How many spans Jaeger holds for a trace, once it holds any (0 after the timeout)."""

    def spans() -> int:
        try:
            answer = httpx.get(f"{query_url.rstrip('/')}/api/traces/{trace_id}", timeout=5)
        except httpx.HTTPError:
            return 0
        if answer.status_code != 200:
            return 0
        return sum(len(t.get("spans", [])) for t in answer.json().get("data") or [])

    try:
        return int(wait_for(spans, f"trace {trace_id} in Jaeger", timeout_s, interval_s=2))
    except TimeoutError:
        return 0
