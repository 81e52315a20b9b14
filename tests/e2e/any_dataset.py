"""The closed loop for a dataset the platform has never seen, driven as a new user would.

A `Scenario` names a record source and how its spec is inferred; `NewDataset` runs it through
the running services of a namespace: spec inferred from a sample and registered over HTTP,
the sample uploaded as a CSV file (labels inside it, or posted as feedback), a first training
asked for at once (training waits for its data), then a steady stream (ingested, one
/predict each, labels with the record or a second later) with a shift injected at a known
index. Nothing here knows a shipped dataset: the scenario says everything.
"""

from __future__ import annotations

import io
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pandas as pd

from infra.demo.loop import Urls
from shared.datasets.infer import infer_spec, spec_to_yaml
from shared.datasets.sources import Record
from shared.datasets.spec import DatasetSpec

Source = Callable[..., Iterator[tuple[Record, Any]]]


@dataclass(frozen=True)
class Scenario:
    name: str
    """Dataset and model name."""
    source: Source
    """source(count, seed=, start=, start_index=, **{shift_option: index})."""
    shift_option: str
    entity_key: str
    event_time: str
    record_id: str
    label: str
    arrival: str
    primary_metric: str
    """The documented edit of the inferred spec: the metric promotion compares."""
    seed: int = 7

    @property
    def label_in_record(self) -> bool:
        return self.arrival == "with_record"


def infer_from_sample(scenario: Scenario, sample: list[tuple[Record, Any]]) -> DatasetSpec:
    """What a user does: infer a spec from a sample holding the label, then the one
    documented edit (the promotion metric)."""
    frame = pd.DataFrame([{**record, scenario.label: label} for record, label in sample])
    inferred = infer_spec(
        frame,
        name=scenario.name,
        entity_key=scenario.entity_key,
        event_time=scenario.event_time,
        record_id=scenario.record_id,
        label=scenario.label,
        label_arrival=scenario.arrival,  # type: ignore[arg-type]
    )
    model = inferred.model.model_copy(update={"primary_metric": scenario.primary_metric})
    return DatasetSpec.model_validate({**inferred.model_dump(), "model": model.model_dump()})


@dataclass
class Labelled:
    """When a record's label was acknowledged by ingestion, and the record's event time."""

    record_id: str
    event_time: datetime
    acknowledged_at: datetime


@dataclass
class StreamStats:
    sent: int = 0
    sent_after_shift: int = 0
    requests: int = 0
    failed_requests: int = 0
    failures: deque[str] = field(default_factory=lambda: deque(maxlen=5))
    versions: dict[int, int] = field(default_factory=dict)
    errors_by_phase: dict[str, list[float]] = field(
        default_factory=lambda: {"before": [], "during": [], "after": []}
    )
    labelled: list[Labelled] = field(default_factory=list)


class NewDataset:
    """One scenario against the running services."""

    def __init__(self, scenario: Scenario, urls: Urls, client: httpx.Client) -> None:
        self.scenario = scenario
        self.urls = urls
        self.client = client
        self.next_index = 0
        self.stats = StreamStats()
        self.lock = threading.Lock()
        self.first_version: int | None = None

    # --- from nothing to a first model ----------------------------------------------------

    def rows(self, count: int, start: datetime, **shift: int) -> list[tuple[Record, Any]]:
        scenario = self.scenario
        rows = list(
            scenario.source(
                count, seed=scenario.seed, start=start, start_index=self.next_index, **shift
            )
        )
        self.next_index += count
        return rows

    def register_spec(self, sample: list[tuple[Record, Any]]) -> DatasetSpec:
        spec = infer_from_sample(self.scenario, sample)
        answer = self.client.post(
            f"{self.urls.ingestion}/datasets",
            content=spec_to_yaml(spec),
            headers={"content-type": "application/yaml"},
        )
        assert answer.status_code in (200, 201), answer.text
        return spec

    def upload(self, sample: list[tuple[Record, Any]]) -> None:
        """The sample as a CSV file; feedback labels posted once the file is in."""
        scenario = self.scenario
        frame = pd.DataFrame([record for record, _ in sample])
        buffer = io.BytesIO(frame.to_csv(index=False).encode())
        answer = self.client.post(
            f"{self.urls.ingestion}/datasets/{scenario.name}/files",
            files={"file": (f"{scenario.name}.csv", buffer, "text/csv")},
        )
        assert answer.status_code == 202, answer.text
        if not scenario.label_in_record:
            labels = [
                {"record_id": record[scenario.record_id], "label": label}
                for record, label in sample
            ]
            self.post_labels(labels)

    def post_labels(self, labels: list[dict[str, Any]]) -> None:
        for first in range(0, len(labels), 1000):
            answer = self.client.post(
                f"{self.urls.ingestion}/datasets/{self.scenario.name}/labels",
                json={"labels": labels[first : first + 1000]},
            )
            assert answer.status_code == 202, answer.text

    def train(self, reason: str) -> str:
        answer = self.client.post(
            f"{self.urls.training}/train",
            json={
                "model_name": self.scenario.name,
                "dataset": self.scenario.name,
                "reason": reason,
            },
        )
        assert answer.status_code == 202, answer.text
        return str(answer.json()["command_id"])

    def run_outcome(self, command_id: str) -> dict[str, Any] | None:
        """The run's ModelTrained or TrainingFailed event, once it has one."""
        answer = self.client.get(f"{self.urls.training}/runs/{command_id}")
        if answer.status_code != 200:
            return None
        body = answer.json()
        return body if body.get("type") in ("mlops.ModelTrained", "mlops.TrainingFailed") else None

    def champion_version(self) -> int | None:
        answer = self.client.get(
            f"{self.urls.registry}/models/{self.scenario.name}/aliases/champion"
        )
        return int(answer.json()["version"]["version"]) if answer.status_code == 200 else None

    def predict(self, record: Record) -> httpx.Response:
        features = {k: v for k, v in record.items() if k != self.scenario.label}
        return self.client.post(
            f"{self.urls.serving}/predict",
            json={"model": self.scenario.name, "records": [features]},
        )

    def served_version(self, record: Record) -> int | None:
        answer = self.predict(record)
        return int(answer.json()["version"]) if answer.status_code == 200 else None


def error_of(prediction: Any, label: Any, regression: bool) -> float:
    """0/1 loss for a class, absolute residual for a number."""
    if regression:
        return abs(float(prediction) - float(label))
    return float(str(prediction) != str(label) and float(prediction) != float(label))


class ScenarioStream:
    """Streams records at `rate` per second until stopped: each ingested with event time now,
    predicted (inline, one request each) and labelled (in the record, or a second later)."""

    def __init__(self, dataset: NewDataset, rate: float, shift_at: int, regression: bool) -> None:
        self.dataset = dataset
        self.rate = rate
        self.shift_at = shift_at
        self.regression = regression
        self._stop = threading.Event()
        self._pending_labels: deque[tuple[float, Record, Any]] = deque()
        self._thread = threading.Thread(target=self._run, name="scenario-stream", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> ScenarioStream:
        self._thread.start()
        return self

    def stop(self) -> StreamStats:
        self._stop.set()
        self._thread.join(60)
        self._send_labels(float("inf"))
        if self.error is not None:
            raise RuntimeError(f"the stream failed: {self.error!r}") from self.error
        return self.dataset.stats

    def _run(self) -> None:
        try:
            self._stream()
        except BaseException as error:  # reported by stop()
            self.error = error

    def _stream(self) -> None:
        began = time.monotonic()
        sent = 0
        while not self._stop.is_set():
            due = int((time.monotonic() - began) * self.rate) - sent
            if due > 0:
                first = self.dataset.next_index
                rows = self.dataset.rows(
                    due, datetime.now(UTC), **{self.dataset.scenario.shift_option: self.shift_at}
                )
                self._send(list(enumerate(rows, start=first)))
                sent += due
            self._send_labels(time.monotonic())
            self._stop.wait(0.05)

    def _send(self, rows: list[tuple[int, tuple[Record, Any]]]) -> None:
        dataset, scenario = self.dataset, self.dataset.scenario
        now = datetime.now(UTC)
        for _, (record, _) in rows:
            record[scenario.event_time] = now.isoformat()
        answer = dataset.client.post(
            f"{dataset.urls.ingestion}/datasets/{scenario.name}/records",
            json={"records": [record for _, (record, _) in rows]},
        )
        assert answer.status_code == 202, answer.text
        acknowledged = datetime.now(UTC)
        with dataset.lock:
            dataset.stats.sent += len(rows)
            dataset.stats.sent_after_shift += sum(index >= self.shift_at for index, _ in rows)
            if scenario.label_in_record:
                dataset.stats.labelled += [
                    Labelled(str(record[scenario.record_id]), now, acknowledged)
                    for _, (record, _) in rows
                ]
        for index, (record, label) in rows:
            self._predict(index, record, label)
            if not scenario.label_in_record:
                self._pending_labels.append((time.monotonic() + 1.0, record, label))

    def _predict(self, index: int, record: Record, label: Any) -> None:
        dataset = self.dataset
        try:
            answer = dataset.predict(record)
            problem = None if answer.status_code == 200 else f"{answer.status_code}: {answer.text}"
        except httpx.HTTPError as error:
            answer, problem = None, f"{type(error).__name__}: {error}"
        with dataset.lock:
            stats = dataset.stats
            stats.requests += 1
            if answer is None or problem is not None:
                stats.failed_requests += 1
                stats.failures.append(str(problem)[:300])
                return
            body = answer.json()
            version = int(body["version"])
            stats.versions[version] = stats.versions.get(version, 0) + 1
            error = error_of(body["predictions"][0]["prediction"], label, self.regression)
            first = dataset.first_version
            phase = (
                "after" if version != first else "during" if index >= self.shift_at else "before"
            )
            stats.errors_by_phase[phase].append(error)

    def _send_labels(self, now: float) -> None:
        dataset, scenario = self.dataset, self.dataset.scenario
        due: list[tuple[Record, Any]] = []
        while self._pending_labels and self._pending_labels[0][0] <= now:
            _, record, label = self._pending_labels.popleft()
            due.append((record, label))
        if not due:
            return
        dataset.post_labels(
            [{"record_id": record[scenario.record_id], "label": label} for record, label in due]
        )
        acknowledged = datetime.now(UTC)
        with dataset.lock:
            dataset.stats.labelled += [
                Labelled(
                    str(record[scenario.record_id]),
                    datetime.fromisoformat(str(record[scenario.event_time])),
                    acknowledged,
                )
                for record, _ in due
            ]


def labelled_before(
    stats: StreamStats, lock: threading.Lock, moment: datetime, since: datetime | None
) -> int:
    """Records whose label ingestion had acknowledged before `moment`, with an event time at
    or after `since`: every one of them belongs in a retrain decided at `moment`."""
    with lock:
        return sum(
            1
            for item in stats.labelled
            if item.acknowledged_at < moment and (since is None or item.event_time >= since)
        )


def sample_start(count: int) -> datetime:
    """Event times for a sample that ends a minute ago."""
    return datetime.now(UTC) - timedelta(seconds=count + 60)
