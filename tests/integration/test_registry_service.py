"""The registry against the real broker, run as `python -m services.registry`, on SQLite and on
the stack's PostgreSQL (every test runs on both).

Each test gets its own topic namespace and database (a SQLite file, or a PostgreSQL schema
dropped afterwards), publishes ModelTrained events with the shared producer, and reads what
the registry writes to <namespace>.models.lifecycle. Artifacts are well-formed references only:
the registry never loads them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from shared.events import Event
from shared.events.catalog import payload_type
from shared.events.models import (
    ArtifactRef,
    BaselineEvaluation,
    Evaluation,
    ModelTrained,
    OffsetRange,
    TrainingLineage,
    TrainingTrigger,
)
from shared.kafka.config import producer_config
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.kafka.topics import TopicCatalog
from shared.settings import PlatformSettings
from tests.integration.conftest import Database
from tests.integration.kafka_helpers import committed_total, read_all, unique_name
from tests.services import RunningService, free_port, namespace_topics, start_service
from tests.waiting import wait_until

ALICE_KEY = "alice-" + uuid.uuid4().hex
ALICE = {"X-API-Key": ALICE_KEY}
MODEL = "loans"


def trained(
    score: float,
    baseline: tuple[int, float] | None = None,
    run: str = "run-1",
    namespace: str = "mlops",
    other_metrics: dict[str, float] | None = None,
    model: str = MODEL,
) -> Event[ModelTrained]:
    """A complete ModelTrained as training would publish it (the artifact is never loaded)."""
    payload = ModelTrained(
        model_name=model,
        run_id=run,
        estimator="sklearn.ensemble.HistGradientBoostingClassifier",
        params={"max_depth": 3, "learning_rate": 0.1},
        seed=42,
        artifact=ArtifactRef(
            uri=f"s3://models/{model}/{run}/model.skops",
            sha256=uuid.uuid4().hex * 2,
            size_bytes=48_213,
            trusted_types=["sklearn.ensemble._hist_gradient_boosting.binning._BinMapper"],
        ),
        evaluation=Evaluation(
            metrics={"roc_auc": score, "accuracy": 0.8, **(other_metrics or {})},
            primary_metric="roc_auc",
            holdout="last 20% by event time",
        ),
        baseline=BaselineEvaluation(version=baseline[0], metrics={"roc_auc": baseline[1]})
        if baseline
        else None,
        lineage=TrainingLineage(
            dataset="loans",
            spec_version=1,
            spec_fingerprint="9f2c4e1a",
            offsets=[
                OffsetRange(
                    topic=f"{namespace}.data.features", partition=0, first_offset=0, last_offset=999
                )
            ],
            training_set_sha256="cd" * 32,
            rows=800,
            holdout_rows=200,
            feature_columns=["salary", "age", "loan"],
            library_versions={"scikit-learn": "1.5.2"},
            code_version="0123abcd",
            trigger=TrainingTrigger(kind="manual", requested_by="bob"),
        ),
        trained_at=datetime.now(UTC),
    )
    return Event.create(payload, source="training", subject=model)


@dataclass
class Lifecycle:
    key: str
    event: Event[Any]


@dataclass
class Platform:
    """One test's namespace and database, and the registry processes started on them."""

    namespace: str
    bootstrap: str
    settings: PlatformSettings
    env: dict[str, str]
    logs: Path
    producer: EventProducer = field(init=False)
    services: list[RunningService] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.producer = EventProducer(producer_config(self.settings, "registry-test"))

    def topic(self, name: str) -> str:
        return TopicCatalog.load().name(name, self.namespace)

    def start(self, **settings: str) -> RunningService:
        env = {**self.env, "MLOPS_REGISTRY_API_KEYS": json.dumps({"alice": ALICE_KEY})}
        env.update({f"MLOPS_REGISTRY_{name.upper()}": value for name, value in settings.items()})
        logs = self.logs / f"registry-{len(self.services)}"
        logs.mkdir()
        service = start_service("registry", self.namespace, env, logs)
        self.services.append(service)
        return service

    def publish(self, *events: Event[ModelTrained]) -> None:
        topic = self.topic("models.trained")
        self.producer.publish_confirmed(
            OutgoingMessage.for_event(topic, event, key=event.data.model_name) for event in events
        )

    def lifecycle(self, expected: int) -> list[Lifecycle]:
        """The first `expected` lifecycle messages, and a check that no more were written."""
        topic = self.topic("models.lifecycle")
        messages = read_all(self.bootstrap, topic, expected, timeout_s=60)
        assert self.lifecycle_end() == expected, "more lifecycle events than expected"
        return [Lifecycle(m.key().decode(), decode(m.value())) for m in messages]

    def lifecycle_end(self) -> int:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": unique_name("end")})
        try:
            partition = TopicPartition(self.topic("models.lifecycle"), 0)
            return consumer.get_watermark_offsets(partition, timeout=10)[1]
        finally:
            consumer.close()

    def wait_handled(self, count: int, group: str | None = None) -> None:
        """Until the registry committed `count` models.trained offsets."""
        group = group or f"{self.namespace}.registry"
        topic = self.topic("models.trained")
        partitions = TopicCatalog.load()["models.trained"].partitions
        wait_until(
            lambda: committed_total(self.bootstrap, group, topic, partitions) >= count,
            what=f"the registry to commit {count} models.trained offsets",
            timeout_s=60,
            interval_s=0.5,
        )


def decode(value: bytes) -> Event[Any]:
    kind = payload_type(json.loads(value)["type"])
    return Event[kind].model_validate_json(value)  # type: ignore[valid-type]


@pytest.fixture
def database_env(sql_database: Database) -> dict[str, str]:
    """The registry's database settings: a SQLite file, or a PostgreSQL schema of its own."""
    env = {"MLOPS_REGISTRY_DATABASE_URL": sql_database.url}
    if sql_database.schema is not None:
        env["MLOPS_REGISTRY_DATABASE_SCHEMA"] = sql_database.schema
    return env


@pytest.fixture
def platform(
    settings: PlatformSettings,
    admin: AdminClient,
    bootstrap: str,
    subprocess_env: dict[str, str],
    database_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[Platform]:
    namespace = unique_name("reg")
    with namespace_topics(admin, namespace):
        running = Platform(
            namespace, bootstrap, settings, {**subprocess_env, **database_env}, tmp_path
        )
        try:
            yield running
        finally:
            for service in running.services:
                service.stop()


def get_json(service: RunningService, path: str) -> Any:
    answer = httpx.get(f"{service.url}{path}", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def versions_registered(service: RunningService, count: int) -> Callable[[], bool]:
    def probe() -> bool:
        answer = httpx.get(f"{service.url}/models/{MODEL}/versions", timeout=10)
        return answer.status_code == 200 and len(answer.json()) >= count

    return probe


def test_a_model_trained_on_kafka_is_registered_and_becomes_the_first_champion(
    platform: Platform,
) -> None:
    service = platform.start()
    event = trained(0.88, namespace=platform.namespace)
    platform.publish(event)

    registered, promoted = platform.lifecycle(2)
    assert (registered.key, promoted.key) == (f"{MODEL}:1", f"{MODEL}:1")
    assert registered.event.type == "mlops.ModelRegistered"
    assert registered.event.data.artifact == event.data.artifact
    assert promoted.event.type == "mlops.ModelPromoted"
    assert promoted.event.data.alias == "champion"
    assert promoted.event.data.decided_by == "policy"
    for output in (registered, promoted):
        assert output.event.causationid == event.id
        assert output.event.correlationid == event.correlationid

    champion = get_json(service, f"/models/{MODEL}/aliases/champion")["version"]
    assert champion["version"] == 1
    assert champion["artifact"]["sha256"] == event.data.artifact.sha256
    assert champion["source_event_id"] == event.id
    lineage = get_json(service, f"/models/{MODEL}/versions/1/lineage")
    assert lineage["lineage"]["offsets"][0]["last_offset"] == 999
    audit = get_json(service, f"/models/{MODEL}/audit")
    assert [entry["action"] for entry in audit] == ["registered", "promoted"]
    assert all(len(entry["trace_id"] or "") == 32 for entry in audit)


def test_a_worse_challenger_is_registered_not_promoted_and_the_audit_says_why(
    platform: Platform,
) -> None:
    service = platform.start(promotion_margin="0.005")
    platform.publish(trained(0.880, namespace=platform.namespace))
    wait_until(versions_registered(service, 1), what="v1 registered")
    worse = trained(0.871, (1, 0.880), "run-2", platform.namespace, other_metrics={"f1": 0.5})
    platform.publish(worse)

    outputs = platform.lifecycle(4)
    assert [o.event.type for o in outputs[2:]] == ["mlops.ModelRegistered", "mlops.ModelRejected"]
    rejected = outputs[3].event
    reason = "roc_auc 0.871 does not beat champion v1's 0.880 by the required margin 0.005"
    assert (rejected.data.version, rejected.data.reason) == (2, reason)
    assert outputs[3].key == f"{MODEL}:2"

    audit = get_json(service, f"/models/{MODEL}/audit")
    assert (audit[-1]["action"], audit[-1]["reason"]) == ("rejected", reason)
    assert audit[-1]["caused_by_event_id"] == worse.id
    assert get_json(service, f"/models/{MODEL}/aliases/champion")["version"]["version"] == 1
    compared = get_json(service, f"/models/{MODEL}/compare?a=1&b=2")
    assert compared["primary_metric"]["better"] == "a"
    assert compared["metrics"]["f1"] == {"a": None, "b": 0.5, "b_minus_a": None}


def test_a_redelivered_model_trained_registers_once_and_re_emits_the_same_events(
    platform: Platform,
) -> None:
    service = platform.start()
    event = trained(0.9, namespace=platform.namespace)
    platform.publish(event)
    platform.publish(event)
    platform.wait_handled(2)

    outputs = platform.lifecycle(4)
    first, again = outputs[:2], outputs[2:]
    assert [o.event.id for o in again] == [o.event.id for o in first]
    assert [o.event.to_json_bytes() for o in again] == [o.event.to_json_bytes() for o in first]
    assert [v["version"] for v in get_json(service, f"/models/{MODEL}/versions")] == [1]
    assert len(get_json(service, f"/models/{MODEL}/audit")) == 2


def test_alias_changes_and_rollback_over_http_emit_lifecycle_events(platform: Platform) -> None:
    service = platform.start()
    platform.publish(trained(0.80, namespace=platform.namespace))
    wait_until(versions_registered(service, 1), what="v1 registered")
    platform.publish(trained(0.85, baseline=(1, 0.80), run="run-2", namespace=platform.namespace))
    platform.lifecycle(4)  # v1 registered and promoted, v2 registered and promoted

    manual = httpx.put(
        f"{service.url}/models/{MODEL}/aliases/champion",
        json={"version": 1, "reason": "v2 misbehaves on weekends"},
        headers=ALICE,
        timeout=30,
    )
    assert manual.status_code == 200, manual.text
    rollback = httpx.post(
        f"{service.url}/models/{MODEL}/rollback",
        json={"reason": "the weekend issue was the data"},
        headers=ALICE,
        timeout=30,
    )
    assert rollback.status_code == 200, rollback.text

    promoted, rolled_back = platform.lifecycle(6)[4:]
    assert promoted.event.type == "mlops.ModelPromoted"
    assert (promoted.key, promoted.event.data.previous_version) == (f"{MODEL}:1", 2)
    assert promoted.event.data.decided_by == "alice"
    assert rolled_back.event.type == "mlops.ModelRolledBack"
    assert (rolled_back.event.data.version, rolled_back.event.data.from_version) == (2, 1)
    assert rolled_back.key == f"{MODEL}:2"
    assert rollback.json()["event_id"] == rolled_back.event.id
    assert get_json(service, f"/models/{MODEL}/aliases/champion")["version"]["version"] == 2
    audit = get_json(service, f"/models/{MODEL}/audit")
    assert [(e["action"], e["actor"]) for e in audit[-2:]] == [
        ("alias_set", "alice"),
        ("rolled_back", "alice"),
    ]


def test_with_manual_approval_a_version_waits_as_challenger_until_approved(
    platform: Platform,
) -> None:
    service = platform.start(manual_approval="true")
    platform.publish(trained(0.8, namespace=platform.namespace))
    registered, waiting = platform.lifecycle(2)
    assert registered.event.type == "mlops.ModelRegistered"
    assert (waiting.event.data.alias, waiting.event.data.version) == ("challenger", 1)
    assert httpx.get(f"{service.url}/models/{MODEL}/aliases/champion").status_code == 404

    approved = httpx.post(
        f"{service.url}/models/{MODEL}/versions/1/approve",
        json={"reason": "checked the holdout by hand"},
        headers=ALICE,
        timeout=30,
    )
    assert approved.status_code == 200, approved.text
    promoted = platform.lifecycle(3)[2]
    assert (promoted.event.data.alias, promoted.event.data.decided_by) == ("champion", "alice")
    assert promoted.event.data.reason == "checked the holdout by hand"
    assert get_json(service, f"/models/{MODEL}")["aliases"] == {"champion": 1}


def test_changes_need_a_valid_api_key_and_a_refused_one_emits_nothing(
    platform: Platform,
) -> None:
    service = platform.start()
    platform.publish(trained(0.8, namespace=platform.namespace))
    platform.lifecycle(2)
    body = {"version": 1, "reason": "no key"}
    url = f"{service.url}/models/{MODEL}/aliases/production"

    assert httpx.put(url, json=body, timeout=10).status_code == 401
    wrong = httpx.put(url, json=body, headers={"X-API-Key": "not-" + ALICE_KEY}, timeout=10)
    assert wrong.status_code == 403
    assert platform.lifecycle_end() == 2
    assert httpx.get(f"{service.url}/models/{MODEL}/aliases/production").status_code == 404


def test_with_the_broker_unreachable_a_change_is_503_and_not_kept(platform: Platform) -> None:
    first = platform.start()
    platform.publish(trained(0.80, namespace=platform.namespace))
    wait_until(versions_registered(first, 1), what="v1 registered")
    platform.publish(trained(0.85, baseline=(1, 0.80), run="run-2", namespace=platform.namespace))
    platform.lifecycle(4)
    audit_before = get_json(first, f"/models/{MODEL}/audit")
    first.stop()

    # The same database, but Kafka is a port nobody listens on.
    platform.env["MLOPS_KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{free_port()}"
    cut_off = start_live(platform, publish_timeout_s="2")
    answer = httpx.put(
        f"{cut_off.url}/models/{MODEL}/aliases/champion",
        json={"version": 1, "reason": "back to v1"},
        headers=ALICE,
        timeout=60,
    )
    assert answer.status_code == 503, answer.text
    assert "Kafka did not confirm" in answer.json()["detail"]
    assert get_json(cut_off, f"/models/{MODEL}/aliases/champion")["version"]["version"] == 2
    assert get_json(cut_off, f"/models/{MODEL}/audit") == audit_before
    assert platform.lifecycle_end() == 4


def start_live(platform: Platform, **settings: str) -> RunningService:
    """A registry that cannot reach Kafka is never ready; wait until it answers /live."""
    port = free_port()
    env = {
        **platform.env,
        "MLOPS_NAMESPACE": platform.namespace,
        "MLOPS_REGISTRY_PORT": str(port),
        "MLOPS_REGISTRY_API_KEYS": json.dumps({"alice": ALICE_KEY}),
        **{f"MLOPS_REGISTRY_{name.upper()}": value for name, value in settings.items()},
    }
    log = platform.logs / "registry-cut-off.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.registry"], env=env, stdout=out, stderr=out, text=True
        )
    service = RunningService("registry", port, process, log)
    platform.services.append(service)

    def live() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"registry exited: {service.output()}")
        try:
            return httpx.get(f"{service.url}/live", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(live, what="the cut-off registry to answer /live", timeout_s=60, interval_s=0.5)
    return service
