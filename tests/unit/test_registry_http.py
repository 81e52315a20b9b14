"""The registry's use cases and HTTP API on an in-memory SQLite database, with a fake publisher
standing in for Kafka (the integration tests run the same paths against the real broker)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from pydantic import SecretStr

from services.registry.adapters.database import create_registry_engine, migrate
from services.registry.domain.errors import PublishFailed
from services.registry.domain.events import derived_id
from services.registry.domain.policy import PromotionPolicy
from services.registry.http import RegistryApi, install
from services.registry.lifecycle import Registry
from shared.events import Event
from shared.events.models import (
    ArtifactRef,
    BaselineEvaluation,
    Evaluation,
    ModelTrained,
    TrainingLineage,
    TrainingTrigger,
)

ALICE_KEY = "alice-0123456789abcdef"
ALICE = {"X-API-Key": ALICE_KEY}


def trained(
    score: float,
    baseline: tuple[int, float] | None = None,
    run: str = "run-1",
    model: str = "loans",
) -> Event[ModelTrained]:
    payload = ModelTrained(
        model_name=model,
        run_id=run,
        estimator="sklearn.ensemble.HistGradientBoostingClassifier",
        params={"max_depth": 3, "learning_rate": 0.1},
        seed=42,
        artifact=ArtifactRef(
            uri=f"s3://models/{model}/{run}.skops", sha256="ab" * 32, size_bytes=1
        ),
        evaluation=Evaluation(metrics={"roc_auc": score}, primary_metric="roc_auc", holdout="20%"),
        baseline=BaselineEvaluation(version=baseline[0], metrics={"roc_auc": baseline[1]})
        if baseline
        else None,
        lineage=TrainingLineage(
            dataset="loans",
            spec_version=1,
            spec_fingerprint="f" * 16,
            offsets=[],
            training_set_sha256="cd" * 32,
            rows=100,
            holdout_rows=20,
            feature_columns=["salary", "age"],
            code_version="abc123",
            trigger=TrainingTrigger(kind="manual", requested_by="bob"),
        ),
        trained_at=datetime.now(UTC),
    )
    return Event.create(payload, source="training", subject=model)


class FakePublisher:
    """Records what would go to Kafka; `down` makes it fail like an unreachable broker."""

    def __init__(self) -> None:
        self.published: list[Event[Any]] = []
        self.down = False

    def __call__(self, events: Any) -> None:
        if self.down:
            raise PublishFailed("Kafka did not confirm the lifecycle event (broker down)")
        self.published.extend(events)


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


def make_registry(manual_approval: bool = False) -> Registry:
    engine = create_registry_engine("sqlite://")
    migrate(engine)
    return Registry(engine, PromotionPolicy(margin=0.0, manual_approval=manual_approval))


@pytest.fixture
def registry() -> Registry:
    return make_registry()


@pytest.fixture
def client(registry: Registry, publisher: FakePublisher) -> Iterator[TestClient]:
    app = FastAPI()
    install(app, RegistryApi(registry, publisher, {"alice": SecretStr(ALICE_KEY)}))
    with TestClient(app) as test_client:
        yield test_client


def test_a_redelivered_model_trained_registers_once_and_gets_the_same_events(
    registry: Registry,
) -> None:
    event = trained(0.8)
    first = registry.register_trained(event)
    again = registry.register_trained(event)
    assert [e.type for e in first] == ["mlops.ModelRegistered", "mlops.ModelPromoted"]
    assert [e.to_json_bytes() for e in again] == [e.to_json_bytes() for e in first]
    assert first[0].id == derived_id(event.id, "mlops.ModelRegistered")
    assert all(e.causationid == event.id for e in first)
    with registry.unit() as repo:
        model = repo.model("loans")
        assert model is not None
        assert [v.version for v in repo.versions(model)] == [1]


def test_reads_show_versions_aliases_and_lineage(client: TestClient, registry: Registry) -> None:
    registry.register_trained(trained(0.8))
    registry.register_trained(trained(0.9, baseline=(1, 0.8), run="run-2"))
    assert client.get("/models").json()[0]["aliases"] == {"champion": 2}
    versions = client.get("/models/loans/versions").json()
    assert [(v["version"], v["aliases"]) for v in versions] == [(1, []), (2, ["champion"])]
    champion = client.get("/models/loans/aliases/champion").json()
    assert champion["version"]["artifact"]["uri"] == "s3://models/loans/run-2.skops"
    lineage = client.get("/models/loans/versions/2/lineage").json()
    assert lineage["lineage"]["trigger"]["requested_by"] == "bob"
    compared = client.get("/models/loans/compare", params={"a": 1, "b": 2}).json()
    assert compared["primary_metric"]["better"] == "b"
    assert compared["metrics"]["roc_auc"]["a"] == 0.8


def test_the_lineage_document_carries_the_trace_of_each_decision(
    client: TestClient, registry: Registry
) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("models.trained process") as span:
        registry.register_trained(trained(0.8))
        trace_id = format(span.get_span_context().trace_id, "032x")
    registry.register_trained(trained(0.9, baseline=(1, 0.8), run="run-2"))

    document = client.get("/lineage/loans/1").json()

    assert document["training"]["trace_id"] == trace_id
    assert document["trigger"]["kind"] == "manual" and document["trigger"]["event"] is None
    assert [(d["action"], d["trace_id"]) for d in document["decisions"]] == [
        ("registered", trace_id),
        ("promoted", trace_id),
        ("promoted", None),  # v2 took the alias from it, outside any trace
    ]
    assert document["deployments"] == []
    assert client.get("/lineage/loans/3").status_code == 404


def test_unknown_things_are_404_with_what_exists(client: TestClient, registry: Registry) -> None:
    registry.register_trained(trained(0.8))
    assert "models: loans" in client.get("/models/nope").json()["detail"]
    assert "versions are 1..1" in client.get("/models/loans/versions/7").json()["detail"]
    answer = client.get("/models/loans/aliases/challenger")
    assert answer.status_code == 404
    assert "aliases: champion" in answer.json()["detail"]


def test_changes_without_an_api_key_are_401_and_with_a_wrong_one_403(
    client: TestClient, registry: Registry
) -> None:
    registry.register_trained(trained(0.8))
    body = {"version": 1, "reason": "try"}
    missing = client.put("/models/loans/aliases/prod", json=body)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "ApiKey"
    wrong = client.put("/models/loans/aliases/prod", json=body, headers={"X-API-Key": "x" * 20})
    assert wrong.status_code == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/models/loans/aliases/champion"),
        ("POST", "/models/loans/rollback"),
        ("POST", "/models/loans/versions/1/approve"),
        ("PUT", "/models/loans/tags/team"),
        ("PUT", "/models/loans/versions/1/tags/team"),
        ("DELETE", "/models/loans/tags/team"),
    ],
)
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"version": "x", "extra": 1}', "application/json"),
        (b"{not json", "application/json"),
        (b"version=1", "text/plain"),
        (b"x" * 2_000_000, "application/json"),
    ],
)
def test_a_change_is_refused_for_its_key_before_its_body_is_looked_at(
    client: TestClient, registry: Registry, method: str, path: str, body: bytes, content_type: str
) -> None:
    registry.register_trained(trained(0.8))
    headers = {"content-type": content_type}
    missing = client.request(method, path, content=body, headers=headers)
    assert missing.status_code == 401, missing.text
    assert missing.json() == {"detail": "changes need an API key in the X-API-Key header"}
    wrong = client.request(method, path, content=body, headers={**headers, "X-API-Key": "nope"})
    assert wrong.status_code == 403, wrong.text


@pytest.mark.parametrize(
    "path",
    [
        "/lineage/loans/1180591620717411303424",
        "/models/loans/versions/2147483648",
        "/models/loans/versions/2147483648/lineage",
        "/models/loans/audit?after=1180591620717411303424",
        "/models/loans/compare?a=1&b=1180591620717411303424",
        "/models/loans/compare?a=-1180591620717411303424&b=1",
    ],
)
def test_numbers_beyond_the_columns_are_422_not_500(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 422, answer.text


def test_setting_an_alias_publishes_model_promoted_decided_by_the_key_owner(
    client: TestClient, registry: Registry, publisher: FakePublisher
) -> None:
    registry.register_trained(trained(0.8))
    answer = client.put(
        "/models/loans/aliases/prod", json={"version": 1, "reason": "go"}, headers=ALICE
    )
    assert answer.status_code == 200, answer.text
    (event,) = publisher.published
    assert (event.data.alias, event.data.version, event.data.decided_by) == ("prod", 1, "alice")
    assert answer.json()["event_id"] == event.id
    audit = client.get("/models/loans/audit").json()
    assert (audit[-1]["action"], audit[-1]["actor"], audit[-1]["reason"]) == (
        "alias_set",
        "alice",
        "go",
    )
    again = client.put(
        "/models/loans/aliases/prod", json={"version": 1, "reason": "go"}, headers=ALICE
    )
    assert again.json()["changed"] is False
    assert len(publisher.published) == 1


def test_when_kafka_does_not_confirm_the_answer_is_503_and_nothing_is_kept(
    client: TestClient, registry: Registry, publisher: FakePublisher
) -> None:
    registry.register_trained(trained(0.8))
    registry.register_trained(trained(0.9, baseline=(1, 0.8), run="run-2"))
    audit_before = client.get("/models/loans/audit").json()
    publisher.down = True
    answer = client.put(
        "/models/loans/aliases/champion", json={"version": 1, "reason": "back"}, headers=ALICE
    )
    assert answer.status_code == 503
    assert "Kafka did not confirm" in answer.json()["detail"]
    assert client.get("/models/loans/aliases/champion").json()["version"]["version"] == 2
    assert client.get("/models/loans/audit").json() == audit_before


def test_rollback_goes_to_the_previous_champion_and_refuses_when_there_is_none(
    client: TestClient, registry: Registry, publisher: FakePublisher
) -> None:
    registry.register_trained(trained(0.8))
    refused = client.post("/models/loans/rollback", json={"reason": "bad"}, headers=ALICE)
    assert refused.status_code == 409
    assert "no earlier holder" in refused.json()["detail"]
    registry.register_trained(trained(0.9, baseline=(1, 0.8), run="run-2"))
    answer = client.post("/models/loans/rollback", json={"reason": "bad"}, headers=ALICE)
    assert answer.status_code == 200, answer.text
    (event,) = publisher.published
    assert event.type == "mlops.ModelRolledBack"
    assert (event.data.version, event.data.from_version) == (1, 2)
    assert client.get("/models/loans/aliases/champion").json()["version"]["version"] == 1


def test_approval_promotes_the_waiting_challenger(publisher: FakePublisher) -> None:
    registry = make_registry(manual_approval=True)
    app = FastAPI()
    install(app, RegistryApi(registry, publisher, {"alice": SecretStr(ALICE_KEY)}))
    client = TestClient(app)
    outputs = registry.register_trained(trained(0.8))
    assert (outputs[1].data.alias, outputs[1].data.reason) == (
        "challenger",
        "no champion yet; waiting for approval",
    )
    assert client.get("/models/loans/aliases/champion").status_code == 404
    answer = client.post("/models/loans/versions/1/approve", headers=ALICE)
    assert answer.status_code == 200, answer.text
    (event,) = publisher.published
    assert (event.data.alias, event.data.decided_by, event.data.reason) == (
        "champion",
        "alice",
        "approved by alice",
    )
    assert client.get("/models/loans").json()["aliases"] == {"champion": 1}
    again = client.post("/models/loans/versions/1/approve", json={"reason": "x"}, headers=ALICE)
    assert again.status_code == 409
    assert "not waiting for approval" in again.json()["detail"]


def test_tags_on_models_and_versions(client: TestClient, registry: Registry) -> None:
    registry.register_trained(trained(0.8))
    assert client.put("/models/loans/tags/team", json={"value": "risk"}, headers=ALICE).is_success
    put = client.put("/models/loans/versions/1/tags/reviewed", json={"value": "yes"}, headers=ALICE)
    assert put.is_success
    assert client.get("/models/loans").json()["tags"] == {"team": "risk"}
    assert client.get("/models/loans/versions/1").json()["tags"] == {"reviewed": "yes"}
    assert client.delete("/models/loans/tags/team", headers=ALICE).is_success
    assert client.delete("/models/loans/tags/team", headers=ALICE).status_code == 404
    assert client.get("/models/loans/audit").json()[-1]["action"] == "tag_deleted"


@pytest.mark.parametrize(
    "body",
    [{"version": 0, "reason": "x"}, {"version": 1}, {"version": 1, "reason": ""}, {"v": 1}],
)
def test_bad_alias_requests_are_422(client: TestClient, registry: Registry, body: Any) -> None:
    registry.register_trained(trained(0.8))
    assert client.put("/models/loans/aliases/prod", json=body, headers=ALICE).status_code == 422


def test_a_bad_model_name_or_alias_is_422(client: TestClient) -> None:
    assert client.get("/models/Not A Name").status_code == 422
    assert client.get("/models/loans/aliases/UPPER").status_code == 422


def test_the_champion_cannot_be_approved_again(client: TestClient, registry: Registry) -> None:
    registry.register_trained(trained(0.8))
    body = {"version": 1, "reason": "also the challenger"}
    assert client.put("/models/loans/aliases/challenger", json=body, headers=ALICE).is_success
    answer = client.post("/models/loans/versions/1/approve", headers=ALICE)
    assert answer.status_code == 409
    assert "champion already" in answer.json()["detail"]


def test_a_nan_score_is_kept_as_text_and_never_promoted(
    client: TestClient, registry: Registry
) -> None:
    registry.register_trained(trained(0.8))
    outputs = registry.register_trained(trained(math.nan, baseline=(1, 0.8), run="run-2"))
    assert outputs[1].type == "mlops.ModelRejected"
    assert "not a finite number" in outputs[1].data.reason
    version = client.get("/models/loans/versions/2").json()
    assert version["evaluation"]["metrics"]["roc_auc"] == "NaN"
