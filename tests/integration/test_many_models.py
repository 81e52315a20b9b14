"""A model set of 210 models over three datasets, registered, served and monitored in one test
(issue 14, acceptance criterion 3), against the real broker, MinIO and real service processes.

The three shipped datasets differ in task and label arrival: loans (classification, labels
later as feedback), friedman (regression, feedback) and breast_cancer (classification, the
label inside the record). Each dataset's spec is registered in the test's namespace; a few
pipelines per dataset are fitted the way training fits them (its frame, pipeline, holdout
evaluation and data-quality lineage), and 70 models per dataset are registered from them
through models.trained, where the real registry makes each v1 champion.

The real serving process runs with MLOPS_SERVING_MODEL_MEMORY_MB set so that only a handful
of models fit, and the real monitoring process reads the same namespace (lineages from the
test's registry). Single-record requests go to every model, several each, from a few threads,
each about a record of its own: every request must succeed, the models' bytes never exceed
the limit, and models are evicted and loaded again on request. Then the labels arrive as the
platform delivers them: LabelRecorded on data.labels for the feedback datasets, RecordValidated
carrying the label on data.validated for breast_cancer (sent before the requests, as a record
is ingested before it is scored). Monitoring must report every model, with what was served and
labelled counted and its live metric (accuracy, or MAE and RMSE) equal to what the answers and
labels give, and hold a fixed amount of state per model (two detectors, nothing left waiting
in the label join).

A second, small test has two models of one dataset score the same records: each record's
label joins both predictions (it once joined only the last one, and the other was lost).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from sklearn.pipeline import Pipeline

from services.training.domain.fitting import evaluate, fit_pipeline, split_frame
from services.training.domain.lineage import data_quality, feature_definitions
from shared.artifacts import store_model
from shared.datasets.sources import (
    Record,
    agrawal_records,
    breast_cancer_records,
    friedman_records,
)
from shared.datasets.spec import DatasetSpec, shipped_specs
from shared.events import Event
from shared.events.models import (
    ArtifactRef,
    Evaluation,
    ModelTrained,
    OffsetRange,
    PredictionServed,
    TrainingLineage,
    TrainingTrigger,
)
from shared.events.records import LabelRecorded, RecordValidated, SourcePosition
from shared.kafka.producer import OutgoingMessage
from tests.integration import test_serving_service
from tests.integration.test_serving_many_models import (
    MemoryWatch,
    get_json,
    largest_retained_size,
    metric_sum,
    wait_for_champions,
)
from tests.integration.test_serving_service import Platform
from tests.services import RunningService, start_service
from tests.waiting import wait_until

platform = test_serving_service.platform  # the fixture: a namespace, bucket and registry

MODELS_PER_DATASET = 70
REQUESTS_PER_MODEL = 3
DISTINCT_PER_DATASET = 2
FITTING = 4
WORKERS = 3
TRAINING_ROWS = 500
START = datetime(2024, 1, 1, tzinfo=UTC)
SPECS = {spec.name: spec for spec in shipped_specs()}


@dataclass(frozen=True)
class ModelSet:
    """The models of one dataset: its spec, its record source, its models' name prefix."""

    spec: DatasetSpec
    source: Callable[..., Iterator[tuple[Record, Any]]]
    prefix: str

    @property
    def task(self) -> str:
        assert self.spec.label is not None
        return self.spec.label.task

    @property
    def arrival(self) -> str:
        assert self.spec.label is not None
        return self.spec.label.arrival

    @property
    def label_in_record(self) -> bool:
        return self.arrival == "with_record"

    def names(self) -> list[str]:
        return [f"{self.prefix}{index:03d}" for index in range(MODELS_PER_DATASET)]


MODEL_SETS = (
    ModelSet(SPECS["loans"], agrawal_records, "loans_"),
    ModelSet(SPECS["friedman"], friedman_records, "friedman_"),
    ModelSet(SPECS["breast_cancer"], breast_cancer_records, "cancer_"),
)


@dataclass(frozen=True)
class Fitted:
    """A pipeline fitted as training fits one, with what its ModelTrained records."""

    pipeline: Pipeline
    evaluation: Evaluation
    features: list[str]
    rows: int
    holdout_rows: int
    data_quality: dict[str, Any]


def fit(model_set: ModelSet, seed: int, max_iter: int) -> Fitted:
    """Training's own steps on the dataset's rows: typed frame, time split, the spec's
    pipeline (max_iter overridden to keep it quick), holdout metrics and lineage."""
    spec = model_set.spec
    assert spec.label is not None
    rows = model_set.source(TRAINING_ROWS, seed=seed, start=START)
    raw = pd.DataFrame([{**record, spec.label.name: label} for record, label in rows])
    split = split_frame(raw, spec, None, min_rows=50, holdout_fraction=0.2)
    fitted = fit_pipeline(spec.model, {"max_iter": max_iter}, seed, split.training, split.split)
    metric, _ = spec.model.metric_for(model_set.task)
    evaluation = evaluate(fitted.pipeline, split.training, split.split, metric, spec.model)
    return Fitted(
        pipeline=fitted.pipeline,
        evaluation=evaluation,
        features=split.training.features,
        rows=len(split.training.frame),
        holdout_rows=len(split.split.holdout),
        data_quality=data_quality(split.training, split.split),
    )


def model_trained(
    platform: Platform,
    name: str,
    model_set: ModelSet,
    spec_version: int,
    fitted: Fitted,
    artifact: ArtifactRef,
) -> Event[ModelTrained]:
    """ModelTrained as training publishes it (no baseline: the registry promotes v1)."""
    payload = ModelTrained(
        model_name=name,
        run_id=f"run-{name}-1",
        estimator=type(fitted.pipeline.named_steps["model"]).__name__,
        params={},
        seed=7,
        artifact=artifact,
        evaluation=fitted.evaluation,
        lineage=TrainingLineage(
            dataset=model_set.spec.name,
            spec_version=spec_version,
            spec_fingerprint="many-models-test",
            offsets=[
                OffsetRange(
                    topic=platform.topic("data.features"),
                    partition=0,
                    first_offset=0,
                    last_offset=1,
                )
            ],
            training_set_sha256="ef" * 32,
            rows=fitted.rows,
            holdout_rows=fitted.holdout_rows,
            feature_columns=fitted.features,
            feature_definitions=feature_definitions(model_set.spec, fitted.features),
            data_quality=fitted.data_quality,
            code_version="many-models-test",
            trigger=TrainingTrigger(kind="manual", requested_by="many-models-test"),
        ),
        trained_at=datetime.now(UTC),
    )
    return Event.create(payload, source="training", subject=name)


def register_model_set(
    platform: Platform, fitted: dict[str, list[Fitted]], spec_versions: dict[str, int]
) -> list[str]:
    """Every model's artifact in MinIO and its ModelTrained on models.trained; waits until the
    registry holds a champion for each. Returns the models' names."""
    names: list[str] = []
    jobs: list[tuple[str, ModelSet, Fitted]] = []
    for model_set in MODEL_SETS:
        for index, name in enumerate(model_set.names()):
            jobs.append(
                (name, model_set, fitted[model_set.spec.name][index % DISTINCT_PER_DATASET])
            )
            names.append(name)

    def stored(job: tuple[str, ModelSet, Fitted]) -> OutgoingMessage:
        name, model_set, one = job
        key = f"{name}/v1.skops"
        artifact = store_model(platform.minio, one.pipeline, platform.bucket, key)
        event = model_trained(
            platform, name, model_set, spec_versions[model_set.spec.name], one, artifact
        )
        return OutgoingMessage.for_event(platform.topic("models.trained"), event, key=name)

    with ThreadPoolExecutor(4) as pool:
        messages = list(pool.map(stored, jobs))
    platform.producer.publish_confirmed(messages, timeout=60)
    assert platform.registry is not None
    registry = platform.registry.url

    def champions() -> int:
        models = httpx.get(f"{registry}/models", timeout=30).json()
        return sum("champion" in m["aliases"] for m in models if m["name"] in set(names))

    wait_until(
        lambda: champions() == len(names),
        what=f"the registry to promote {len(names)} champions",
        timeout_s=180,
        interval_s=0.5,
    )
    return names


@dataclass(frozen=True)
class Job:
    """One single-record request, and the record's true label."""

    model: str
    model_set: ModelSet
    record: Record
    record_id: str
    label: Any


def request_jobs() -> list[Job]:
    """REQUESTS_PER_MODEL requests per model, each about a record of its own (labels join a
    prediction by dataset and record id)."""
    jobs = []
    for number, model_set in enumerate(MODEL_SETS):
        spec = model_set.spec
        assert spec.record_id is not None
        names = model_set.names()
        rows = list(
            model_set.source(len(names) * REQUESTS_PER_MODEL, seed=100 + number, start=START)
        )
        for index, (record, label) in enumerate(rows):
            name = names[index % len(names)]
            jobs.append(Job(name, model_set, record, str(record[spec.record_id]), label))
    return jobs


@dataclass
class Requests:
    """Single-record POST /predict, one job after the other per thread."""

    url: str
    predictions: dict[str, Any] = field(default_factory=dict)
    """record id -> the prediction served."""
    failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, jobs: list[Job]) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            for job in jobs:
                self.send(client, job)

    def send(self, client: httpx.Client, job: Job) -> None:
        try:
            answer = client.post("/predict", json={"model": job.model, "records": [job.record]})
            body = answer.json()
        except (httpx.HTTPError, ValueError) as error:
            with self._lock:
                self.failures.append(f"{job.model}: {type(error).__name__}: {error}")
            return
        with self._lock:
            answered = [p.get("record_id") for p in body.get("predictions", [])]
            if answer.status_code != 200 or body.get("model") != job.model:
                self.failures.append(f"{job.model}: {answer.status_code} {answer.text[:300]}")
            elif answered != [job.record_id]:
                self.failures.append(f"{job.model}: answered {answered} for {job.record_id}")
            else:
                self.predictions[job.record_id] = body["predictions"][0]["prediction"]


def with_record_labels(
    platform: Platform, jobs: list[Job], spec_version: int
) -> list[OutgoingMessage]:
    """RecordValidated as validation publishes it for each record, its label inside."""
    messages = []
    for offset, job in enumerate(jobs):
        spec = job.model_set.spec
        features = {f.name for f in spec.features}
        record = RecordValidated(
            dataset=spec.name,
            spec_version=spec_version,
            record_id=job.record_id,
            entity=str(job.record[spec.entity_key]),
            event_time=datetime.fromisoformat(str(job.record[spec.event_time])),
            values={name: value for name, value in job.record.items() if name in features},
            label=job.label,
            source=SourcePosition(topic=platform.topic("data.raw"), partition=0, offset=offset),
        )
        event = Event.create(record, source="validation", subject=record.entity)
        topic = platform.topic("data.validated")
        messages.append(OutgoingMessage.for_event(topic, event, key=record.entity))
    return messages


def feedback_labels(platform: Platform, jobs: list[Job]) -> list[OutgoingMessage]:
    """LabelRecorded as ingestion publishes a label posted later, keyed by record id."""
    messages = []
    for job in jobs:
        label = LabelRecorded(
            dataset=job.model_set.spec.name,
            record_id=job.record_id,
            label=job.label,
            labelled_at=datetime.now(UTC),
            entity=str(job.record[job.model_set.spec.entity_key]),
        )
        event = Event.create(label, source="ingestion", subject=job.record_id)
        topic = platform.topic("data.labels")
        messages.append(OutgoingMessage.for_event(topic, event, key=job.record_id))
    return messages


def start_monitoring(platform: Platform) -> RunningService:
    """Monitoring in the test's namespace: lineages from the test's registry (when it runs),
    its history in a SQLite file of the test's own."""
    logs = platform.logs / "monitoring"
    logs.mkdir()
    registry = platform.registry.url if platform.registry is not None else "http://127.0.0.1:9"
    extra = {
        "MLOPS_MONITORING_REGISTRY_URL": registry,
        "MLOPS_MONITORING_DATABASE_URL": f"sqlite:///{logs / 'monitoring.sqlite'}",
    }
    return start_service("monitoring", platform.namespace, platform.env, logs, extra_env=extra)


def expected_rows(jobs: list[Job], predictions: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What monitoring should report per model: counts and the live metric of its answers."""
    expected: dict[str, dict[str, Any]] = {}
    for job in jobs:
        row = expected.setdefault(job.model, {"task": job.model_set.task, "losses": []})
        predicted = predictions[job.record_id]
        if job.model_set.task == "regression":
            row["losses"].append(abs(float(predicted) - float(job.label)))
        else:
            row["losses"].append(0.0 if predicted == job.label else 1.0)
    for row in expected.values():
        losses = row.pop("losses")
        row["count"] = len(losses)
        if row["task"] == "regression":
            row["mae"] = sum(losses) / len(losses)
            row["rmse"] = (sum(loss * loss for loss in losses) / len(losses)) ** 0.5
        else:
            row["accuracy"] = 1.0 - sum(losses) / len(losses)
    return expected


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def test_210_models_over_three_datasets_are_registered_served_within_the_memory_limit_and_monitored(
    platform: Platform,
) -> None:
    began = time.monotonic()
    platform.start_registry()
    spec_versions = {"loans": 1}  # the fixture registered loans
    for model_set in MODEL_SETS[1:]:
        spec_versions[model_set.spec.name] = platform.register_dataset(model_set.spec)
    fitted = {
        model_set.spec.name: [
            fit(model_set, seed=seed, max_iter=8 + 4 * seed) for seed in range(DISTINCT_PER_DATASET)
        ]
        for model_set in MODEL_SETS
    }
    largest = largest_retained_size([one.pipeline for ones in fitted.values() for one in ones])
    limit = FITTING * largest + largest // 2
    platform.start_serving(model_memory_mb=f"{limit / 1_048_576:.6f}")
    monitoring = start_monitoring(platform)
    try:
        names = register_model_set(platform, fitted, spec_versions)
        assert len(names) == len(MODEL_SETS) * MODELS_PER_DATASET >= 200
        wait_for_champions(platform, names)
        warm = get_json(platform, "/memory")
        assert 0 < len(warm["loaded"]) < len(names), "promotions load what fits, and only that"
        # Before a pipeline kind was measured, its size is estimated from its artifact and may
        # be short: loading it then evicts another to stay within the limit.
        assert warm["used_bytes"] <= limit

        jobs = request_jobs()
        in_record = [job for job in jobs if job.model_set.label_in_record]
        later = [job for job in jobs if not job.model_set.label_in_record]
        assert in_record and later
        cancer_version = spec_versions["breast_cancer"]
        platform.producer.publish_confirmed(
            with_record_labels(platform, in_record, cancer_version), timeout=60
        )
        requests = Requests(platform.serving.url)  # type: ignore[union-attr]
        shuffled = random.Random(14).sample(jobs, len(jobs))
        per_worker = [shuffled[worker::WORKERS] for worker in range(WORKERS)]
        watch = MemoryWatch(platform)
        watcher = threading.Thread(target=watch.run)
        watcher.start()
        sending = time.monotonic()
        try:
            with ThreadPoolExecutor(WORKERS) as pool:
                for run in [pool.submit(requests.run, part) for part in per_worker]:
                    run.result()
        finally:
            watch.stop.set()
            watcher.join()
        sent_in = time.monotonic() - sending

        assert requests.failures == [], requests.failures[:5]
        assert len(requests.predictions) == len(jobs)
        assert watch.samples, "no /memory sample"
        over = [s for s in watch.samples if s["used_bytes"] > s["limit_bytes"]]
        assert over == [], f"above the limit: {over[:2]}"
        most_loaded = max(len(s["loaded"]) for s in watch.samples)
        assert most_loaded < len(names)
        memory = get_json(platform, "/memory")
        assert memory["used_bytes"] <= memory["limit_bytes"] <= limit
        assert memory["evictions"] >= len(names) - len(warm["loaded"])
        assert memory["reloads"] > 0, "no model was loaded again after its eviction"
        assert metric_sum(platform, "mlops_serving_evictions_total") == memory["evictions"]
        cold_loads = metric_sum(platform, "mlops_serving_cold_loads_total", outcome="loaded")
        assert cold_loads >= len(names) - len(warm["loaded"])

        platform.producer.publish_confirmed(feedback_labels(platform, later), timeout=60)
        expected = expected_rows(jobs, requests.predictions)

        def every_label_joined() -> dict[str, Any] | None:
            body = httpx.get(f"{monitoring.url}/performance", timeout=30).json()
            labelled = sum(row["labelled"] for row in body["models"])
            return body if labelled >= len(jobs) else None

        performance = wait_until(
            every_label_joined,
            what=f"monitoring to join the {len(jobs)} labels",
            timeout_s=120,
            interval_s=1,
        )
        drift = httpx.get(f"{monitoring.url}/drift", timeout=30).json()
        monitoring_rss = rss_mib(monitoring.process.pid)
    finally:
        monitoring.stop()

    rows = {row["model_name"]: row for row in performance["models"]}
    assert sorted(rows) == sorted(names), "monitoring reports every model, and only those"
    wrong: list[str] = []
    for name, want in expected.items():
        row = rows[name]
        got = (row["model_version"], row["task"], row["served"], row["labelled"], row["expired"])
        if got != (1, want["task"], want["count"], want["count"], 0):
            wrong.append(f"{name}: (version, task, served, labelled, expired) {got}")
        elif want["task"] == "regression":
            if "accuracy" in row or any(
                abs(row[metric] - want[metric]) > 1e-9 for metric in ("mae", "rmse")
            ):
                wrong.append(f"{name}: {row} (expected mae {want['mae']}, rmse {want['rmse']})")
        elif row["accuracy"] != want["accuracy"]:
            wrong.append(f"{name}: accuracy {row['accuracy']}, expected {want['accuracy']}")
    assert wrong == [], wrong[:5]
    join = performance["join"]
    assert join["joined"] == len(jobs)
    assert (join["pending_predictions"], join["pending_labels"]) == (0, 0), join
    assert (join["expired_predictions"], join["expired_labels"]) == (0, 0), join

    per_model: dict[str, list[str]] = {}
    per_dataset: dict[str, int] = {}
    for detector in drift["detectors"]:
        if detector["model_version"] is None:
            per_dataset[detector["dataset"]] = per_dataset.get(detector["dataset"], 0) + 1
        else:
            per_model.setdefault(detector["model_name"], []).append(detector["signal"])
    assert sorted(per_model) == sorted(names)
    assert {tuple(sorted(signals)) for signals in per_model.values()} == {("error", "prediction")}
    for model_set in MODEL_SETS:  # the dataset's features and two rates, whatever the models
        assert per_dataset.get(model_set.spec.name, 0) <= len(model_set.spec.features) + 2
    assert sorted(drift["training_reference"]) == sorted(names), "a lineage read per model"

    took = time.monotonic() - began
    print(
        f"\n{len(names)} models, {len(MODEL_SETS)} datasets "
        f"({', '.join(f'{s.spec.name} {s.task} {s.arrival}' for s in MODEL_SETS)}), "
        f"{len(jobs)} requests in {sent_in:.1f} s (0 failed), limit {limit:,} bytes "
        f"(most loaded {most_loaded}), {memory['loads']} loads, {memory['evictions']} evictions, "
        f"{memory['reloads']} reloads, {len(rows)} monitored ({join['joined']} labels joined, "
        f"{len(drift['drifts'])} drifts), monitoring RSS {monitoring_rss:.0f} MiB, {took:.0f} s"
    )


def test_a_record_scored_by_two_models_of_one_dataset_is_labelled_for_both(
    platform: Platform,
) -> None:
    """Two models of one dataset (loans) score the same records, as a model set of many models
    per dataset may: the label of a record is the ground truth of both predictions."""
    monitoring = start_monitoring(platform)
    rows = list(agrawal_records(20, seed=200, start=START))
    predictions = [
        PredictionServed(
            request_id=f"req-{model}-{record['application_id']}",
            model_name=model,
            version=1,
            dataset="loans",
            record_id=str(record["application_id"]),
            features={},
            prediction=label,
            latency_ms=1.0,
            served_at=datetime.now(UTC),
        )
        for model in ("loans_a", "loans_b")
        for record, label in rows
    ]
    labels = [
        LabelRecorded(
            dataset="loans",
            record_id=str(record["application_id"]),
            label=label,
            labelled_at=datetime.now(UTC),
        )
        for record, label in rows
    ]
    try:
        for name, payloads in (("serving.predictions", predictions), ("data.labels", labels)):
            topic = platform.topic(name)
            platform.producer.publish_confirmed(
                [
                    OutgoingMessage.for_event(topic, Event.create(p, source="test"), p.record_id)
                    for p in payloads
                ],
                timeout=60,
            )

        def all_seen() -> dict[str, Any] | None:
            body = httpx.get(f"{monitoring.url}/performance", timeout=10).json()
            served = sum(row["served"] for row in body["models"])
            waiting = body["join"]["pending_predictions"] + body["join"]["pending_labels"]
            return body if served == len(predictions) and waiting == 0 else None

        performance = wait_until(
            all_seen, what="monitoring to see every prediction and label", timeout_s=60
        )
    finally:
        monitoring.stop()
    rows_by_model = {
        row["model_name"]: (row["served"], row["labelled"], row["expired"])
        for row in performance["models"]
    }
    assert rows_by_model == {"loans_a": (20, 20, 0), "loans_b": (20, 20, 0)}, (
        rows_by_model,
        performance["join"],
    )
