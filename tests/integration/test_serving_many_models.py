"""Many champions within a memory limit, against the real broker, MinIO and registry: a
promotion of a loaded model while requests flow over many models fails no request.

Models are stored in MinIO as skops artifacts and registered through models.trained; the
registry makes each v1 champion. Serving runs with MLOPS_SERVING_MODEL_MEMORY_MB set so that
only `FITTING` of them fit (from the retained size of the largest). The helpers here also serve
test_many_models.py (210 models over three datasets, served and monitored).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.serving.domain.sizes import retained_bytes
from shared.artifacts import deserialize, serialize, store_model
from shared.events import Event
from shared.events.models import ArtifactRef, ModelPromoted
from shared.kafka.producer import OutgoingMessage
from tests.bench.serving_pipeline import FEATURE_COLUMNS
from tests.bench.serving_stack import loans_trained
from tests.integration import test_serving_service
from tests.integration.test_serving_service import Platform, loans_records, train
from tests.waiting import wait_until

platform = test_serving_service.platform  # the fixture: a namespace, bucket and registry

FITTING = 4
WORKERS = 3
DISTINCT_MODELS = 4


def model_name(index: int) -> str:
    return f"many{index:04d}"


def store(platform: Platform, model: Any, name: str, version: int) -> ArtifactRef:
    return store_model(platform.minio, model, platform.bucket, f"{name}/v{version}.skops")


def publish_trained(platform: Platform, name: str, artifact: ArtifactRef, run: str) -> None:
    event = loans_trained(artifact, run, platform.namespace, FEATURE_COLUMNS, model_name=name)
    platform.producer.publish_confirmed(
        [OutgoingMessage.for_event(platform.topic("models.trained"), event, key=name)]
    )


def promote(platform: Platform, name: str, version: int, artifact: ArtifactRef) -> None:
    promoted = ModelPromoted(
        model_name=name,
        version=version,
        alias="champion",
        artifact=artifact,
        reason="many-models test",
        decided_by="serving-test",
    )
    event = Event.create(promoted, source="registry", subject=name)
    topic = platform.topic("models.lifecycle")
    platform.producer.publish_confirmed([OutgoingMessage.for_event(topic, event, name)])


def largest_retained_size(models: list[Any]) -> int:
    """What the largest model keeps in memory once loaded from its artifact."""
    sizes = []
    for model in models:
        data, _ = serialize(model)
        sizes.append(retained_bytes(deserialize(data, hashlib.sha256(data).hexdigest())))
    return max(sizes)


def get_json(platform: Platform, path: str) -> Any:
    assert platform.serving is not None
    return httpx.get(f"{platform.serving.url}{path}", timeout=10).json()


def metric_sum(platform: Platform, name: str, **labels: str) -> float:
    """The sum of a metric's samples over the labels not given."""
    assert platform.serving is not None
    text = httpx.get(f"{platform.serving.url}/metrics", timeout=10).text
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(label in line for label in wanted)
    )


@dataclass
class Traffic:
    """Single-record requests from a few threads, each to the model `pick` names."""

    url: str
    records: list[dict[str, Any]]
    answered: list[tuple[str, int, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, pick: Callable[[int], str], requests: int, worker: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            for sent in range(requests):
                self.send(client, pick(sent), self.records[(worker * 31 + sent) % 50])

    def run_for(self, pick: Callable[[int], str], seconds: float, worker: int) -> None:
        end, sent = time.monotonic() + seconds, 0
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while time.monotonic() < end:
                self.send(client, pick(sent), self.records[(worker * 31 + sent) % 50])
                sent += 1

    def send(self, client: httpx.Client, model: str, record: dict[str, Any]) -> None:
        try:
            answer = client.post("/predict", json={"model": model, "records": [record]})
        except httpx.HTTPError as error:
            with self._lock:
                self.failures.append(f"{model}: {type(error).__name__}: {error}")
            return
        body = answer.json()
        with self._lock:
            if answer.status_code != 200 or body.get("model") != model:
                self.failures.append(f"{model}: {answer.status_code} {answer.text[:300]}")
            else:
                self.answered.append((model, body["version"], time.monotonic()))


class MemoryWatch:
    """Samples /memory until stopped: the most bytes and models seen loaded."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.samples: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.samples.append(get_json(self.platform, "/memory"))


def register_many(platform: Platform, count: int) -> list[Any]:
    """`count` models, each with a champion v1 (one of a few distinct fitted pipelines)."""
    fitted = [train(seed=seed, max_iter=10 + 5 * seed) for seed in range(DISTINCT_MODELS)]
    for index in range(count):
        name = model_name(index)
        artifact = store(platform, fitted[index % DISTINCT_MODELS], name, 1)
        publish_trained(platform, name, artifact, f"run-{name}-1")
    assert platform.registry is not None

    def champions() -> bool:
        models = httpx.get(f"{platform.registry.url}/models", timeout=30).json()  # type: ignore[union-attr]
        return sum("champion" in m["aliases"] for m in models) >= count

    wait_until(champions, what=f"the registry to promote {count} champions", timeout_s=180)
    return fitted


def wait_for_champions(platform: Platform, names: list[str]) -> None:
    """Until serving's /models names v1 as every model's champion (loaded or not)."""

    def all_known() -> bool:
        served = get_json(platform, "/models")
        return sum(m["champion_version"] == 1 for m in served if m["model"] in names) == len(names)

    wait_until(all_known, what=f"serving to know the {len(names)} champions", timeout_s=120)


def test_promoting_a_loaded_model_while_requests_flow_over_many_models_fails_none(
    platform: Platform,
) -> None:
    platform.start_registry()
    fitted = [train(seed=seed, max_iter=10 + 5 * seed) for seed in range(DISTINCT_MODELS)]
    limit = FITTING * largest_retained_size(fitted) + largest_retained_size(fitted) // 2
    platform.start_serving(model_memory_mb=f"{limit / 1_048_576:.6f}")
    count = 12
    register_many(platform, count)
    names = [model_name(index) for index in range(count)]
    wait_for_champions(platform, names)
    hot = names[0]
    second = store(platform, train(seed=9, max_iter=25), hot, 2)
    publish_trained(platform, hot, second, f"run-{hot}-2")
    url = f"{platform.registry.url}/models/{hot}/versions"  # type: ignore[union-attr]
    wait_until(lambda: len(httpx.get(url, timeout=10).json()) == 2, what=f"{hot} v2 registered")
    traffic = Traffic(platform.serving.url, loans_records(50, seed=61))  # type: ignore[union-attr]
    others = names[1:]

    with ThreadPoolExecutor(WORKERS) as pool:
        runs = [
            pool.submit(traffic.run_for, lambda sent: hot, 8.0, 0),
            pool.submit(traffic.run_for, lambda sent: others[sent % len(others)], 8.0, 1),
            pool.submit(traffic.run_for, lambda sent: others[-1 - sent % len(others)], 8.0, 2),
        ]
        wait_until(
            lambda: sum(model == hot for model, _, _ in traffic.answered) >= 20,
            what=f"requests to {hot} before the promotion",
        )
        promote(platform, hot, 2, second)
        wait_until(
            lambda: any(m == hot and v == 2 for m, v, _ in traffic.answered),
            what=f"a v2 answer from {hot}",
        )
        for run in runs:
            run.result()

    assert traffic.failures == []
    hot_answers = [(version, at) for model, version, at in traffic.answered if model == hot]
    assert {version for version, _ in hot_answers} == {1, 2}
    first_v2 = min(at for version, at in hot_answers if version == 2)
    assert [at for version, at in hot_answers if version == 1 and at > first_v2 + 0.5] == []
    assert get_json(platform, "/memory")["evictions"] > 0, "the other models did not thrash"
