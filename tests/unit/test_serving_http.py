"""The HTTP API on a fitted pipeline, with an in-memory online store and prediction log."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sklearn.pipeline import Pipeline

from services.serving.adapters.feature_store import (
    FeatureStoreUnavailable,
    OnlineFeatures,
)
from services.serving.domain.records import InputSchema
from services.serving.domain.served import ModelCard, ServedModel
from services.serving.domain.slots import CHAMPION, Change, ModelSlots
from services.serving.handlers import LoggedPrediction
from services.serving.http import ServingApi, install
from services.serving.predictions import Predictions
from shared.datasets.sources import agrawal_records
from shared.datasets.spec import DatasetSpec, shipped_specs
from shared.events.models import ArtifactRef
from tests.bench.serving_pipeline import FEATURE_COLUMNS, loans_pipeline, training_frame

START = datetime(2024, 1, 1, tzinfo=UTC)
ARTIFACT = ArtifactRef(uri="s3://models/loans/v4.skops", sha256="cd" * 32, size_bytes=10)


def records(count: int, seed: int = 9) -> list[dict[str, Any]]:
    return [row for row, _ in agrawal_records(count, seed=seed, start=START)]


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    pairs = list(agrawal_records(300, seed=1, start=START))
    frame = training_frame([row for row, _ in pairs])
    return loans_pipeline(seed=1, max_iter=5).fit(frame, [label for _, label in pairs])


@dataclass
class InMemoryStore:
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    down: bool = False

    async def lookup(self, dataset: str, entities: list[str]) -> dict[str, OnlineFeatures]:
        if self.down:
            raise FeatureStoreUnavailable("feature store at http://store: ConnectError")
        return {
            e: OnlineFeatures(e, self.features[e], f"rec-{e}")
            for e in entities
            if e in self.features
        }


@dataclass
class ListRecorder:
    entries: list[LoggedPrediction] = field(default_factory=list)

    def record(self, entries: Any) -> None:
        self.entries.extend(entries)


@dataclass
class Api:
    client: TestClient
    slots: ModelSlots
    store: InMemoryStore
    recorder: ListRecorder


def expecting_salary_up_to(maximum: float) -> DatasetSpec:
    """The loans spec with an expected (not hard) maximum on salary."""
    loans = next(s for s in shipped_specs() if s.name == "loans")
    features = [
        f.model_copy(update={"expected_max": maximum}) if f.name == "salary" else f
        for f in loans.features
    ]
    return loans.model_copy(update={"features": features})


@pytest.fixture
def api(pipeline: Pipeline) -> Iterator[Api]:
    slots = ModelSlots()
    card = ModelCard("loans", 4, ARTIFACT, "loans", 1, FEATURE_COLUMNS)
    schema = InputSchema.of(expecting_salary_up_to(100_000), FEATURE_COLUMNS)
    served = ServedModel.build(card, pipeline, schema)
    slots.slot("loans").swap(Change("loans", CHAMPION, 4, ARTIFACT), served)
    slots.slot("fraud")  # known, no champion yet
    slots.slot("churn").not_loaded = "version 2 could not load, retrying: MinIO down"
    store, recorder = InMemoryStore(), ListRecorder()
    app = FastAPI()
    install(app, ServingApi(Predictions(slots, store, recorder, 64), slots, max_records=5))
    with TestClient(app) as client:
        yield Api(client, slots, store, recorder)


def test_records_are_answered_one_prediction_each_by_the_champion(api: Api) -> None:
    rows = records(3)

    answer = api.client.post(
        "/predict", json={"model": "loans", "records": rows}, headers={"X-Request-ID": "abc"}
    )

    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Request-ID"] == "abc"
    body = answer.json()
    assert (body["request_id"], body["model"], body["version"]) == ("abc", "loans", 4)
    assert [p["record_id"] for p in body["predictions"]] == [r["application_id"] for r in rows]
    assert [p["entity"] for p in body["predictions"]] == [r["applicant_id"] for r in rows]
    assert {p["prediction"] for p in body["predictions"]} <= {0, 1}
    logged = api.recorder.entries
    assert [(e.request_id, e.version, e.record_id) for e in logged] == [
        ("abc", 4, r["application_id"]) for r in rows
    ]
    assert logged[0].features["elevel"] == rows[0]["elevel"]
    assert logged[0].scored.probabilities == body["predictions"][0]["probabilities"]


def test_a_request_id_is_made_when_none_is_sent(api: Api) -> None:
    first = api.client.post("/predict", json={"model": "loans", "records": records(1)}).json()
    second = api.client.post("/predict", json={"model": "loans", "records": records(1)}).json()

    assert len(first["request_id"]) == 36
    assert first["request_id"] != second["request_id"]


def test_invalid_records_get_422_with_every_field_error_and_nothing_is_logged(api: Api) -> None:
    good, bad = records(2)
    bad["age"] = "old"

    answer = api.client.post("/predict", json={"model": "loans", "records": [good, bad]})

    assert answer.status_code == 422
    assert answer.json()["detail"] == [
        {
            "loc": ["body", "records", 1, "age"],
            "msg": "expected an integer, got str 'old'",
            "type": "type",
            "input": "old",
        }
    ]
    assert api.recorder.entries == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "loans"}, "send either records or entities"),
        ({"model": "loans", "records": [{}], "entities": ["a"]}, "send either records or entities"),
        ({"model": "loans", "records": []}, "at least 1 item"),
        ({"model": "loans", "records": [{"age": [1, 2]}]}, "valid string"),
        ({"model": "Loans!", "records": [{}]}, "should match pattern"),
    ],
)
def test_malformed_requests_get_422(api: Api, body: dict[str, Any], message: str) -> None:
    answer = api.client.post("/predict", json=body)

    assert answer.status_code == 422
    assert message in str(answer.json()["detail"])


def test_more_records_than_allowed_get_422(api: Api) -> None:
    answer = api.client.post("/predict", json={"model": "loans", "records": records(6)})

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["msg"] == "6 records in one request; at most 5"


@pytest.mark.parametrize("model", ["fraud", "iris"])
def test_a_model_without_champion_or_unknown_gets_404_with_the_reason(api: Api, model: str) -> None:
    answer = api.client.post("/predict", json={"model": model, "records": records(1)})

    assert answer.status_code == 404
    assert answer.json()["detail"] == (
        f"no champion for model {model!r} yet: no version holds the champion alias in the registry"
    )
    assert answer.json()["served"] == ["loans"]


def test_a_known_champion_not_loaded_here_gets_503_with_the_reason(api: Api) -> None:
    answer = api.client.post("/predict", json={"model": "churn", "records": records(1)})

    assert answer.status_code == 503
    assert answer.json()["detail"] == (
        "model 'churn' has a champion that is not loaded here: "
        "version 2 could not load, retrying: MinIO down"
    )


def test_a_model_left_out_by_the_restriction_gets_404(pipeline: Pipeline) -> None:
    slots = ModelSlots(["loans"])
    app = FastAPI()
    install(app, ServingApi(Predictions(slots, InMemoryStore(), ListRecorder(), 64), slots, 5))
    with TestClient(app) as client:
        answer = client.post("/predict", json={"model": "iris", "records": records(1)})

    assert answer.status_code == 404
    assert "MLOPS_SERVING_MODELS restricts serving to loans" in answer.json()["detail"]


def out_of_range_count(feature: str) -> float:
    labels = {"model": "loans", "feature": feature}
    return REGISTRY.get_sample_value("mlops_serving_out_of_expected_range_total", labels) or 0.0


def test_a_value_outside_its_expected_range_is_scored_and_counted_on_both_paths(api: Api) -> None:
    inline, stored = records(2)
    inline["salary"] = stored["salary"] = 140_000.0  # within the hard max 150000
    api.store.features = {"applicant-1": stored}
    before = out_of_range_count("salary")

    by_records = api.client.post("/predict", json={"model": "loans", "records": [inline]})
    by_entity = api.client.post("/predict", json={"model": "loans", "entities": ["applicant-1"]})

    assert (by_records.status_code, by_entity.status_code) == (200, 200), by_entity.text
    assert out_of_range_count("salary") == before + 2


def test_values_beyond_the_hard_range_are_refused_on_both_paths(api: Api) -> None:
    inline, stored = records(2)
    inline["age"] = stored["age"] = 95  # above the hard max 80
    api.store.features = {"applicant-1": stored}

    by_records = api.client.post("/predict", json={"model": "loans", "records": [inline]})
    by_entity = api.client.post("/predict", json={"model": "loans", "entities": ["applicant-1"]})

    assert (by_records.status_code, by_entity.status_code) == (422, 422)
    assert by_records.json()["detail"][0]["loc"] == ["body", "records", 0, "age"]
    assert by_entity.json()["detail"][0]["loc"] == ["body", "entities", 0, "age"]
    assert by_records.json()["detail"][0]["msg"] == by_entity.json()["detail"][0]["msg"]
    assert api.recorder.entries == []


def test_entities_are_scored_on_their_online_features(api: Api) -> None:
    first, second = records(2)
    api.store.features = {"applicant-1": first, "applicant-2": second}

    answer = api.client.post(
        "/predict", json={"model": "loans", "entities": ["applicant-2", "applicant-1"]}
    )

    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [(p["entity"], p["record_id"]) for p in predictions] == [
        ("applicant-2", "rec-applicant-2"),
        ("applicant-1", "rec-applicant-1"),
    ]
    direct = api.client.post("/predict", json={"model": "loans", "records": [second]}).json()
    assert predictions[0]["probabilities"] == direct["predictions"][0]["probabilities"]


def test_unknown_entities_get_404_and_an_unreachable_store_503(api: Api) -> None:
    api.store.features = {"applicant-1": records(1)[0]}

    missing = api.client.post(
        "/predict", json={"model": "loans", "entities": ["applicant-1", "ghost"]}
    )
    assert missing.status_code == 404
    assert missing.json()["missing"] == ["ghost"]

    api.store.down = True
    down = api.client.post("/predict", json={"model": "loans", "entities": ["applicant-1"]})
    assert down.status_code == 503
    assert "ConnectError" in down.json()["detail"]


def test_models_lists_what_answers_and_what_waits(api: Api) -> None:
    models = {m["model"]: m for m in api.client.get("/models").json()}

    assert models["loans"]["champion"]["version"] == 4
    assert models["loans"]["champion"]["artifact"]["sha256"] == ARTIFACT.sha256
    assert models["loans"]["champion"]["classes"] == [0, 1]
    assert models["loans"]["waiting_for"] is None
    assert models["fraud"]["champion"] is None
    assert "no version holds the champion alias" in models["fraud"]["waiting_for"]
    assert models["churn"]["waiting_for"] == "version 2 could not load, retrying: MinIO down"
