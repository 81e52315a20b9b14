"""Serving against the real broker and MinIO, with the real registry beside it.

Each test gets its own topic namespace, MinIO bucket and registry database (SQLite), registers
the loans spec on <namespace>.data.specs, trains small scikit-learn pipelines on Agrawal
records, stores them with shared.artifacts.store_model and registers them by publishing
ModelTrained on <namespace>.models.trained (the registry makes v1 champion by itself; later
versions, without a baseline score, are registered and not promoted). Promotions are then
real ModelPromoted events the test publishes on <namespace>.models.lifecycle. Both services
run as `python -m services.<name>` on free ports, serving with no model setting unless a test
restricts it.

Other datasets: breast_cancer (the shipped spec, label with the record) and a regression spec
the tests declare on scikit-learn's diabetes table, each registered in the test's namespace.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from confluent_kafka.admin import AdminClient
from minio import Minio
from sklearn.datasets import load_diabetes
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline

from shared.artifacts import split_uri, store_model
from shared.datasets.registry import SpecRegistry
from shared.datasets.sources import agrawal_records, breast_cancer_records
from shared.datasets.spec import DatasetSpec, FeatureSpec, LabelSpec, shipped_specs
from shared.events import Event
from shared.events.models import (
    ArtifactRef,
    Evaluation,
    ModelPromoted,
    ModelTrained,
    OffsetRange,
    PredictionServed,
    TrainingLineage,
    TrainingTrigger,
)
from shared.kafka.config import client_config, producer_config
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.kafka.topics import TopicCatalog
from shared.settings import PlatformSettings
from shared.storage import minio_client
from tests.bench.serving_pipeline import FEATURE_COLUMNS, loans_pipeline, training_frame
from tests.bench.serving_stack import loans_trained, register_loans_spec
from tests.integration.kafka_helpers import read_all, unique_name
from tests.services import RunningService, free_port, namespace_topics, start_service
from tests.waiting import wait_until

MODEL = "loans"
ALICE_KEY = "alice-" + uuid.uuid4().hex
START = datetime(2024, 1, 1, tzinfo=UTC)


def loans_records(count: int, seed: int) -> list[dict[str, Any]]:
    return [record for record, _ in agrawal_records(count, seed=seed, start=START)]


def train(seed: int, max_iter: int = 30) -> Pipeline:
    pairs = list(agrawal_records(2000, seed=seed, start=START))
    frame = training_frame([record for record, _ in pairs])
    return loans_pipeline(seed, max_iter).fit(frame, [label for _, label in pairs])


@dataclass
class Platform:
    """One test's namespace, bucket, registry and serving processes."""

    namespace: str
    settings: PlatformSettings
    env: dict[str, str]
    logs: Path
    minio: Minio
    bucket: str
    producer: EventProducer = field(init=False)
    registry: RunningService | None = None
    serving: RunningService | None = None
    registered: int = 0

    def __post_init__(self) -> None:
        self.producer = EventProducer(producer_config(self.settings, "serving-test"))

    def topic(self, name: str) -> str:
        return TopicCatalog.load().name(name, self.namespace)

    def register_spec(self) -> None:
        assert register_loans_spec(self.settings, self.topic("data.specs"), self.producer) == 1

    def register_dataset(self, spec: DatasetSpec) -> int:
        """Registers any spec on the namespace's data.specs; returns its version."""
        specs = SpecRegistry(
            client_config(self.settings, "serving-tests"), self.topic("data.specs"), "tests"
        )
        return specs.register(spec, self.producer).version

    def register_model(self, trained: Event[ModelTrained]) -> None:
        """Publishes a ModelTrained and waits until the registry lists the new version."""
        assert self.registry is not None
        name = trained.data.model_name
        url = f"{self.registry.url}/models/{name}/versions"
        before = httpx.get(url, timeout=10)
        count = len(before.json()) if before.status_code == 200 else 0
        self.producer.publish_confirmed(
            [OutgoingMessage.for_event(self.topic("models.trained"), trained, key=name)]
        )

        def registered() -> bool:
            answer = httpx.get(url, timeout=10)
            return answer.status_code == 200 and len(answer.json()) > count

        wait_until(registered, what=f"the registry to register a version of {name}")

    def start_registry(self) -> RunningService:
        database = f"sqlite:///{self.logs / 'registry.sqlite'}"
        keys = json.dumps({"alice": ALICE_KEY})
        env = {
            **self.env,
            "MLOPS_REGISTRY_DATABASE_URL": database,
            "MLOPS_REGISTRY_API_KEYS": keys,
        }
        (self.logs / "registry").mkdir()
        self.registry = start_service("registry", self.namespace, env, self.logs / "registry")
        return self.registry

    def serving_env(self, **settings: str) -> dict[str, str]:
        """Serving's environment: no model setting (every model) unless `models=` is given."""
        assert self.registry is not None
        env = {
            **{k: v for k, v in self.env.items() if k != "MLOPS_SERVING_MODELS"},
            "MLOPS_SERVING_REGISTRY_URL": self.registry.url,
            "MLOPS_SERVING_FEATURE_STORE_URL": f"http://127.0.0.1:{free_port()}",
        }
        env.update({f"MLOPS_SERVING_{name.upper()}": value for name, value in settings.items()})
        return env

    def start_serving(self, **settings: str) -> RunningService:
        (self.logs / "serving").mkdir(exist_ok=True)
        env = self.serving_env(**settings)
        self.serving = start_service("serving", self.namespace, env, self.logs / "serving")
        return self.serving

    def store(self, model: Any, name: str) -> ArtifactRef:
        return store_model(self.minio, model, self.bucket, f"{MODEL}/{name}.skops")

    def upload(self, data: bytes, name: str) -> ArtifactRef:
        """Any bytes as an artifact, with their correct sha256."""
        key = f"{MODEL}/{name}"
        self.minio.put_object(self.bucket, key, io.BytesIO(data), len(data))
        return ArtifactRef(
            uri=f"s3://{self.bucket}/{key}",
            sha256=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
        )

    def register(self, artifact: ArtifactRef) -> int:
        """Publishes ModelTrained and waits until the registry has the new version."""
        assert self.registry is not None
        self.registered += 1
        run = f"run-{self.registered}"
        event = loans_trained(artifact, run, self.namespace, FEATURE_COLUMNS)
        self.producer.publish_confirmed(
            [OutgoingMessage.for_event(self.topic("models.trained"), event, key=MODEL)]
        )
        url = f"{self.registry.url}/models/{MODEL}/versions"
        count = self.registered

        def registered() -> bool:
            answer = httpx.get(url, timeout=10)
            return answer.status_code == 200 and len(answer.json()) >= count

        wait_until(registered, what=f"the registry to register v{count}", timeout_s=60)
        return count

    def promote(self, version: int, artifact: ArtifactRef, alias: str = "champion") -> None:
        promoted = ModelPromoted(
            model_name=MODEL,
            version=version,
            alias=alias,
            artifact=artifact,
            reason="serving test",
            decided_by="serving-test",
        )
        event = Event.create(promoted, source="registry", subject=MODEL)
        self.producer.publish_confirmed(
            [OutgoingMessage.for_event(self.topic("models.lifecycle"), event, f"{MODEL}:{version}")]
        )

    def predict(
        self, records: list[dict[str, Any]], model: str = MODEL, **headers: str
    ) -> httpx.Response:
        assert self.serving is not None
        return httpx.post(
            f"{self.serving.url}/predict",
            json={"model": model, "records": records},
            headers=headers,
            timeout=30,
        )

    def ready(self) -> httpx.Response:
        assert self.serving is not None
        return httpx.get(f"{self.serving.url}/ready", timeout=10)

    def metric(self, name: str, **labels: str) -> float:
        assert self.serving is not None
        text = httpx.get(f"{self.serving.url}/metrics", timeout=10).text
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
            if match and ",".join(sorted(match.group(1).split(","))) == wanted:
                return float(match.group(2))
        return 0.0

    def predictions_logged(self, expected: int) -> list[Event[PredictionServed]]:
        messages = read_all(
            self.settings.kafka_bootstrap_servers,
            self.topic("serving.predictions"),
            expected,
            timeout_s=60,
        )
        return [Event[PredictionServed].model_validate_json(m.value()) for m in messages]


@pytest.fixture
def platform(
    settings: PlatformSettings, admin: AdminClient, subprocess_env: dict[str, str], tmp_path: Path
) -> Iterator[Platform]:
    namespace = unique_name("srv")
    minio = minio_client(settings)
    bucket = f"serving-{uuid.uuid4().hex[:12]}"
    minio.make_bucket(bucket)
    with namespace_topics(admin, namespace):
        running = Platform(namespace, settings, subprocess_env, tmp_path, minio, bucket)
        try:
            running.register_spec()
            yield running
        finally:
            for service in (running.serving, running.registry):
                if service is not None:
                    service.stop()
            for item in minio.list_objects(bucket, recursive=True):
                minio.remove_object(bucket, item.object_name)
            minio.remove_bucket(bucket)


@pytest.fixture
def serving_v1(platform: Platform) -> tuple[Platform, ArtifactRef]:
    """The registry with v1 as champion, and serving started on it."""
    platform.start_registry()
    first = platform.store(train(seed=1), "v1")
    platform.register(first)
    platform.start_serving()
    return platform, first


def test_the_champion_answers_and_every_prediction_is_logged(
    serving_v1: tuple[Platform, ArtifactRef],
) -> None:
    platform, first = serving_v1
    records = loans_records(3, seed=42)

    answer = platform.predict(records, **{"X-Request-ID": "req-1"})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model"], body["version"], body["request_id"]) == (MODEL, 1, "req-1")
    assert [p["record_id"] for p in body["predictions"]] == [r["application_id"] for r in records]
    for prediction in body["predictions"]:
        assert prediction["prediction"] in (0, 1)
        assert set(prediction["probabilities"]) == {"0", "1"}
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0)
        assert (prediction["model"], prediction["version"]) == (MODEL, 1)
    logged = platform.predictions_logged(3)
    assert sorted(e.data.record_id or "" for e in logged) == sorted(
        r["application_id"] for r in records
    )
    for event in logged:
        assert (event.data.request_id, event.data.version, event.data.shadow) == ("req-1", 1, False)
        assert event.data.dataset == "loans"
        assert set(event.data.features) == set(FEATURE_COLUMNS)
    served = httpx.get(f"{platform.serving.url}/models", timeout=10).json()  # type: ignore[union-attr]
    assert served[0]["champion"]["artifact"]["sha256"] == first.sha256


def test_a_bad_record_gets_422_with_every_field_error(
    serving_v1: tuple[Platform, ArtifactRef],
) -> None:
    platform, _ = serving_v1
    good, bad = loans_records(2, seed=43)
    bad.update(age=95, elevel="9", salary="lots")
    del bad["loan"]

    answer = platform.predict([good, bad])

    assert answer.status_code == 422, answer.text
    errors = {(tuple(e["loc"]), e["type"]) for e in answer.json()["detail"]}
    assert errors == {
        (("body", "records", 1, "age"), "range"),
        (("body", "records", 1, "elevel"), "category"),
        (("body", "records", 1, "salary"), "type"),
        (("body", "records", 1, "loan"), "required"),
    }
    unknown = httpx.post(
        f"{platform.serving.url}/predict",  # type: ignore[union-attr]
        json={"model": "churn", "records": [good]},
        timeout=10,
    )
    assert unknown.status_code == 404
    assert unknown.json()["served"] == [MODEL]


def test_hot_swap_under_load_fails_no_request_and_switches_versions(
    serving_v1: tuple[Platform, ArtifactRef],
) -> None:
    platform, _ = serving_v1
    second = platform.store(train(seed=2, max_iter=40), "v2")
    assert platform.register(second) == 2
    load = Load(platform.serving.url, loans_records(200, seed=44))  # type: ignore[union-attr]

    with ThreadPoolExecutor(max_workers=Load.WORKERS) as pool:
        workers = [pool.submit(load.run, worker, 10.0) for worker in range(Load.WORKERS)]
        wait_until(lambda: len(load.done) >= 150, what="load before the promotion", timeout_s=30)
        platform.promote(2, second)
        promoted_at = time.monotonic()
        wait_until(lambda: load.first_seen.get(2), what="a v2 answer", timeout_s=30)
        for worker in workers:
            worker.result()

    duration = max(r.finished for r in load.done) - min(r.started for r in load.done)
    print(f"\n{len(load.done)} requests in {duration:.1f}s ({len(load.done) / duration:.0f}/s)")
    assert load.failures == []
    assert len(load.done) >= 500, "the load did not reach 50 requests/s for 10 s"
    versions = [r.version for r in load.done]
    assert set(versions) == {1, 2}
    switched = load.first_seen[2]
    assert switched > promoted_at
    late_v1 = [r for r in load.done if r.started > switched and r.version == 1]
    assert late_v1 == [], "a request started after v2 answered was answered by v1"

    logged = platform.predictions_logged(len(load.done))
    assert {e.data.request_id: e.data.version for e in logged} == {
        r.request_id: r.version for r in load.done
    }


@dataclass
class Answered:
    request_id: str
    started: float
    finished: float
    version: int


class Load:
    """Single-record requests from a few threads, back to back, for a while."""

    WORKERS = 4

    def __init__(self, url: str, records: list[dict[str, Any]]) -> None:
        self.url = url
        self.records = records
        self.done: list[Answered] = []
        self.failures: list[str] = []
        self.first_seen: dict[int, float] = {}
        self._lock = threading.Lock()

    def run(self, worker: int, seconds: float) -> None:
        end = time.monotonic() + seconds
        with httpx.Client(base_url=self.url, timeout=30) as client:
            sent = 0
            while time.monotonic() < end:
                record = self.records[(worker + sent * self.WORKERS) % len(self.records)]
                self.send(client, f"w{worker}-{sent}", record)
                sent += 1

    def send(self, client: httpx.Client, request_id: str, record: dict[str, Any]) -> None:
        started = time.monotonic()
        try:
            answer = client.post(
                "/predict",
                json={"model": MODEL, "records": [record]},
                headers={"X-Request-ID": request_id},
            )
        except httpx.HTTPError as error:
            with self._lock:
                self.failures.append(f"{request_id}: {type(error).__name__}: {error}")
            return
        finished = time.monotonic()
        body = answer.json()
        named = {p["version"] for p in body.get("predictions", [])} | {body.get("version")}
        with self._lock:
            if answer.status_code != 200 or len(named) != 1:
                self.failures.append(f"{request_id}: {answer.status_code} {answer.text[:200]}")
                return
            version = body["version"]
            self.done.append(Answered(request_id, started, finished, version))
            self.first_seen.setdefault(version, finished)


def test_a_modified_artifact_is_refused_and_the_old_model_keeps_serving(
    serving_v1: tuple[Platform, ArtifactRef],
) -> None:
    platform, _ = serving_v1
    second = platform.store(train(seed=2), "v2")
    platform.register(second)
    bucket, key = split_uri(second.uri)
    original = platform.minio.get_object(bucket, key).read()
    tampered = original[:-16] + bytes(16)
    platform.minio.put_object(bucket, key, io.BytesIO(tampered), len(tampered))

    platform.promote(2, second)

    wait_until(
        lambda: (
            platform.metric(
                "mlops_serving_models_refused_total", model=MODEL, reason="sha256_mismatch"
            )
            == 1
        ),
        what="serving to refuse the modified artifact",
    )
    answer = platform.predict(loans_records(1, seed=45))
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 1
    assert platform.metric("mlops_serving_models_loaded_total", model=MODEL, alias="champion") == 1


class PlantedPayload:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_a_pickle_payload_is_refused_and_never_runs(
    serving_v1: tuple[Platform, ArtifactRef], tmp_path: Path
) -> None:
    platform, _ = serving_v1
    control = tmp_path / "control-marker"
    # Unpickled here, the payload runs: it is live, and only skops stands in its way.
    pickle.loads(pickle.dumps(PlantedPayload(control)))
    assert control.exists()
    marker = tmp_path / "planted-marker"
    planted = platform.upload(pickle.dumps(PlantedPayload(marker)), "v2.skops")
    platform.register(planted)

    platform.promote(2, planted)

    wait_until(
        lambda: (
            platform.metric("mlops_serving_models_refused_total", model=MODEL, reason="not_skops")
            == 1
        ),
        what="serving to refuse the pickle payload",
    )
    assert not marker.exists()
    answer = platform.predict(loans_records(1, seed=46))
    assert (answer.status_code, answer.json()["version"]) == (200, 1)


def launch_serving(platform: Platform, **settings: str) -> RunningService:
    """Serving started without waiting for /ready (the test looks at /ready itself)."""
    port = free_port()
    log = platform.logs / "serving.log"
    env = {
        **platform.serving_env(**settings),
        "MLOPS_NAMESPACE": platform.namespace,
        "MLOPS_SERVING_PORT": str(port),
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.serving"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    service = RunningService("serving", port, process, log)
    platform.serving = service

    def live() -> bool:
        try:
            return httpx.get(f"{service.url}/live", timeout=2).status_code == 200
        except httpx.TransportError:
            assert process.poll() is None, service.output()
            return False

    wait_until(live, what="serving to answer /live", timeout_s=60, interval_s=0.5)
    return service


BREAST_CANCER = next(spec for spec in shipped_specs() if spec.name == "breast_cancer")
CANCER_COLUMNS = tuple(feature.name for feature in BREAST_CANCER.features)
NO_CHAMPION = "no version holds the champion alias in the registry"


def cancer_records(count: int, seed: int) -> list[tuple[dict[str, Any], int]]:
    return list(breast_cancer_records(count, seed=seed, start=START))


def train_cancer(seed: int) -> HistGradientBoostingClassifier:
    pairs = cancer_records(300, seed=seed)
    frame = pd.DataFrame([{c: r[c] for c in CANCER_COLUMNS} for r, _ in pairs]).astype("float64")
    model = HistGradientBoostingClassifier(max_iter=15, random_state=seed)
    return model.fit(frame, [label for _, label in pairs])


def trained(
    model_name: str,
    dataset: str,
    spec_version: int,
    artifact: ArtifactRef,
    columns: tuple[str, ...],
    metric: str,
) -> Event[ModelTrained]:
    """ModelTrained as training publishes it, for any dataset (v1 becomes champion)."""
    payload = ModelTrained(
        model_name=model_name,
        run_id=f"run-{uuid.uuid4().hex[:8]}",
        estimator="sklearn",
        params={},
        seed=7,
        artifact=artifact,
        evaluation=Evaluation(
            metrics={metric: 0.5},
            primary_metric=metric,
            higher_is_better=metric != "rmse",
            holdout="last 20% by event time",
        ),
        lineage=TrainingLineage(
            dataset=dataset,
            spec_version=spec_version,
            spec_fingerprint="serving-tests",
            offsets=[OffsetRange(topic="t", partition=0, first_offset=0, last_offset=1)],
            training_set_sha256="cd" * 32,
            rows=300,
            holdout_rows=0,
            feature_columns=list(columns),
            code_version="serving-tests",
            trigger=TrainingTrigger(kind="manual", requested_by="serving-tests"),
        ),
        trained_at=datetime.now(UTC),
    )
    return Event.create(payload, source="training", subject=model_name)


def test_with_no_model_setting_and_no_champion_serving_is_ready_and_a_model_promoted_later_is_served(
    platform: Platform,
) -> None:
    platform.start_registry()
    service = platform.start_serving()  # waits for /ready: no champion anywhere is no outage
    pid = service.process.pid
    records = cancer_records(3, seed=5)

    assert platform.ready().status_code == 200, platform.ready().text
    for model in ("cancer", MODEL):
        refused = platform.predict([r for r, _ in records], model=model)
        assert refused.status_code == 404, refused.text
        assert refused.json()["detail"] == f"no champion for model {model!r} yet: {NO_CHAMPION}"

    spec_version = platform.register_dataset(BREAST_CANCER)
    artifact = store_model(platform.minio, train_cancer(seed=1), platform.bucket, "cancer/v1")
    platform.register_model(
        trained("cancer", "breast_cancer", spec_version, artifact, CANCER_COLUMNS, "roc_auc")
    )  # the registry promotes v1 itself: a ModelPromoted for a model serving never saw

    answer = wait_until(
        lambda: (
            (a := platform.predict([r for r, _ in records], model="cancer")).status_code == 200
            and a
        ),
        what="serving to answer for the newly promoted cancer model",
    )
    body = answer.json()
    assert (body["model"], body["version"]) == ("cancer", 1)
    assert [p["record_id"] for p in body["predictions"]] == [r["sample_id"] for r, _ in records]
    assert {p["prediction"] for p in body["predictions"]} <= {0, 1}
    assert service.process.pid == pid and service.process.poll() is None, "no restart"
    assert platform.ready().status_code == 200
    served = {m["model"]: m for m in httpx.get(f"{service.url}/models", timeout=10).json()}
    assert served["cancer"]["champion"]["dataset"] == "breast_cancer"
    logged = platform.predictions_logged(3)
    assert {(e.data.model_name, e.data.dataset) for e in logged} == {("cancer", "breast_cancer")}


def diabetes_spec(bmi_max: float, expected_bmi_max: float | None = None) -> DatasetSpec:
    """A regression spec the test declares on scikit-learn's diabetes table."""
    table = load_diabetes()
    features = [
        FeatureSpec(
            name=name,
            type="numeric",
            min=-1,
            max=bmi_max if name == "bmi" else 1,
            expected_max=expected_bmi_max if name == "bmi" else None,
        )
        for name in table.feature_names
    ]
    return DatasetSpec(
        name="diabetes_progression",
        entity_key="patient_id",
        event_time="seen_at",
        record_id="visit_id",
        features=features,
        label=LabelSpec(name="progression", type="numeric", task="regression"),
    )


DIABETES_COLUMNS = tuple(load_diabetes().feature_names)


def diabetes_records(count: int) -> tuple[list[dict[str, Any]], list[float]]:
    table = load_diabetes()
    records = [
        {
            "patient_id": f"patient-{row}",
            "seen_at": START.isoformat(),
            "visit_id": f"visit-{row}",
            **{
                name: float(value)
                for name, value in zip(DIABETES_COLUMNS, table.data[row], strict=True)
            },
        }
        for row in range(count)
    ]
    return records, [float(y) for y in table.target[:count]]


def out_of_expected_bmi(platform: Platform) -> float:
    return platform.metric(
        "mlops_serving_out_of_expected_range_total", model="progression", feature="bmi"
    )


def test_two_models_of_different_datasets_and_tasks_are_served_at_once_each_by_its_spec_version(
    platform: Platform,
) -> None:
    platform.start_registry()
    platform.register(platform.store(train(seed=1), "v1"))  # loans, classification
    trained_on = platform.register_dataset(diabetes_spec(bmi_max=0.2, expected_bmi_max=0.1))
    latest = platform.register_dataset(diabetes_spec(bmi_max=0.05))  # tighter, not the model's
    assert (trained_on, latest) == (1, 2)
    records, targets = diabetes_records(300)
    frame = pd.DataFrame([{c: r[c] for c in DIABETES_COLUMNS} for r in records])
    regressor = HistGradientBoostingRegressor(max_iter=15, random_state=1).fit(frame, targets)
    artifact = store_model(platform.minio, regressor, platform.bucket, "progression/v1")
    platform.register_model(
        trained("progression", "diabetes_progression", 1, artifact, DIABETES_COLUMNS, "rmse")
    )

    platform.start_serving()  # both champions found at start-up

    loans_answer = platform.predict(loans_records(2, seed=50))
    assert loans_answer.status_code == 200, loans_answer.text
    assert {p["prediction"] for p in loans_answer.json()["predictions"]} <= {0, 1}
    inline = {**records[0], "bmi": 0.15}  # inside v1's hard range, beyond v2's, beyond expected
    counted = (
        "mlops_serving_out_of_expected_range_total",
        {"model": "progression", "feature": "bmi"},
    )
    before = platform.metric(counted[0], **counted[1])
    answer = platform.predict([inline, records[1]], model="progression")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model"], body["version"]) == ("progression", 1)
    values = [p["prediction"] for p in body["predictions"]]
    assert all(isinstance(v, float) for v in values) and len(set(values)) == 2
    assert all(p["probabilities"] == {} for p in body["predictions"])
    assert out_of_expected_bmi(platform) == before + 1
    beyond = platform.predict([{**records[2], "bmi": 0.3}], model="progression")
    assert beyond.status_code == 422
    assert beyond.json()["detail"][0]["loc"] == ["body", "records", 0, "bmi"]
    assert beyond.json()["detail"][0]["type"] == "range"


def test_a_champion_that_cannot_load_makes_serving_not_ready_with_the_reason(
    platform: Platform,
) -> None:
    platform.start_registry()
    service = launch_serving(platform)
    wait_until(lambda: platform.ready().status_code == 200, what="serving ready, no champion")
    spec_version = platform.register_dataset(BREAST_CANCER)
    artifact = store_model(platform.minio, train_cancer(seed=2), platform.bucket, "cancer/v1")
    bucket, key = split_uri(artifact.uri)
    original = platform.minio.get_object(bucket, key).read()
    tampered = original[:-16] + bytes(16)
    platform.minio.put_object(bucket, key, io.BytesIO(tampered), len(tampered))

    platform.register_model(
        trained("cancer", "breast_cancer", spec_version, artifact, CANCER_COLUMNS, "roc_auc")
    )

    def not_ready_reason() -> str | None:
        answer = platform.ready()
        reason: str = answer.json().get("failing", {}).get("champions", "")
        return reason if answer.status_code == 503 and "refused" in reason else None

    reason = wait_until(not_ready_reason, what="/ready to name the refused champion")
    assert reason.startswith("cancer: version 1 was refused (sha256_mismatch)")
    refused = platform.predict([r for r, _ in cancer_records(1, seed=3)], model="cancer")
    assert refused.status_code == 503
    assert "version 1 was refused" in refused.json()["detail"]
    assert service.process.poll() is None


def test_a_model_setting_restricts_serving_to_the_models_it_names(platform: Platform) -> None:
    platform.start_registry()
    platform.start_serving(models=json.dumps([MODEL]))  # ready with no champion
    spec_version = platform.register_dataset(BREAST_CANCER)
    artifact = store_model(platform.minio, train_cancer(seed=1), platform.bucket, "cancer/v1")
    platform.register_model(
        trained("cancer", "breast_cancer", spec_version, artifact, CANCER_COLUMNS, "roc_auc")
    )

    platform.register(platform.store(train(seed=1), "v1"))  # the registry promotes loans v1

    wait_until(
        lambda: platform.predict(loans_records(1, seed=47)).status_code == 200,
        what="serving to load the registry's first loans champion",
    )
    left_out = platform.predict([r for r, _ in cancer_records(1, seed=3)], model="cancer")
    assert left_out.status_code == 404
    assert "MLOPS_SERVING_MODELS restricts serving to loans" in left_out.json()["detail"]
    assert platform.ready().status_code == 200


def test_shadow_mode_logs_the_challengers_predictions_and_answers_with_the_champion(
    platform: Platform,
) -> None:
    platform.start_registry()
    platform.register(platform.store(train(seed=1), "v1"))
    second = platform.store(train(seed=2, max_iter=40), "v2")
    platform.register(second)
    platform.start_serving(shadow="true")
    platform.promote(2, second, alias="challenger")
    wait_until(
        lambda: (
            platform.metric("mlops_serving_models_loaded_total", model=MODEL, alias="challenger")
            == 1
        ),
        what="the challenger to load",
    )

    answer = platform.predict(loans_records(2, seed=48), **{"X-Request-ID": "shadowed"})

    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 1
    logged = platform.predictions_logged(4)
    assert sorted((e.data.version, e.data.shadow) for e in logged) == [
        (1, False),
        (1, False),
        (2, True),
        (2, True),
    ]
    assert {e.data.request_id for e in logged} == {"shadowed"}


def test_a_promotion_and_a_rollback_made_in_the_registry_reach_serving(
    serving_v1: tuple[Platform, ArtifactRef],
) -> None:
    platform, _ = serving_v1
    registry = platform.registry
    assert registry is not None
    platform.register(platform.store(train(seed=2, max_iter=40), "v2"))
    record = loans_records(1, seed=49)

    def answered_by(version: int) -> bool:
        answer = platform.predict(record)
        return answer.status_code == 200 and answer.json()["version"] == version

    promoted = httpx.put(
        f"{registry.url}/models/{MODEL}/aliases/champion",
        json={"version": 2, "reason": "serving test"},
        headers={"X-API-Key": ALICE_KEY},
        timeout=30,
    )
    assert promoted.status_code == 200, promoted.text
    wait_until(lambda: answered_by(2), what="serving to answer with v2")

    rolled_back = httpx.post(
        f"{registry.url}/models/{MODEL}/rollback",
        json={"reason": "v2 misbehaves"},
        headers={"X-API-Key": ALICE_KEY},
        timeout=30,
    )
    assert rolled_back.status_code == 200, rolled_back.text
    assert rolled_back.json()["event_type"] == "mlops.ModelRolledBack"
    wait_until(lambda: answered_by(1), what="serving to answer with v1 again")
    assert platform.metric("mlops_serving_models_loaded_total", model=MODEL, alias="champion") == 3
