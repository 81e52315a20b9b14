"""The feature store's HTTP API over fakes: lookups, clear refusals, training-set requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.feature_store.adapters.online import OnlineVector
from services.feature_store.adapters.training_sets import NoTrainingData
from services.feature_store.domain.lookup_cache import LookupCache
from services.feature_store.http import HttpDeps, install
from shared.datasets.registry import UnknownDataset

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def vector(entity: str) -> OnlineVector:
    return OnlineVector(
        dataset="loans", entity=entity, record_id=f"r-{entity}", event_time=T0, spec_version=2,
        features={"loan": 1.5, "applications_1h": 3}, source_topic="ns.data.validated",
        source_partition=1, source_offset=9,
    )  # fmt: skip


@dataclass
class FakeOnline:
    vectors: dict[str, OnlineVector]
    asked: list[list[str]] = field(default_factory=list)
    cache: LookupCache[OnlineVector] = field(default_factory=lambda: LookupCache(0, 0))

    def get(self, dataset: str, entity: str) -> OnlineVector | None:
        return self.vectors.get(entity)

    def get_many(self, dataset: str, entities: list[str]) -> dict[str, OnlineVector]:
        self.asked.append(entities)
        return {e: self.vectors[e] for e in entities if e in self.vectors}


@dataclass
class FakeSet:
    def as_json(self) -> dict[str, Any]:
        return {"uri": "s3://b/k.parquet", "rows": 3}


@dataclass
class FakeTrainingSets:
    asked: list[tuple[str, datetime | None]] = field(default_factory=list)

    def create(self, dataset: str, until: datetime | None) -> FakeSet:
        self.asked.append((dataset, until))
        if until is not None and until.year < 2000:
            raise NoTrainingData(f"no labelled record of {dataset!r} up to {until.isoformat()}")
        return FakeSet()

    def coverage(self) -> dict[tuple[str, int], int]:
        return {("ns.data.validated", 1): 42, ("ns.data.labels", 0): 7}


def known(name: str) -> None:
    if name != "loans":
        raise UnknownDataset(name, ["loans"])


def client(online: FakeOnline, sets: FakeTrainingSets, limit: int = 3) -> TestClient:
    app = FastAPI()
    install(app, HttpDeps(online, sets, known, limit))  # type: ignore[arg-type]
    return TestClient(app)


def test_a_cached_vector_answers_a_lookup_without_reading_the_store() -> None:
    online = FakeOnline({})
    online.cache = LookupCache(10, 60)
    online.cache.put([vector("alice")])
    api = client(online, FakeTrainingSets())
    found = api.get("/features/loans/alice")
    assert found.status_code == 200
    assert found.json()["record_id"] == "r-alice"
    assert found.json()["source"] == {"topic": "ns.data.validated", "partition": 1, "offset": 9}
    assert api.get("/features/loans/bob").status_code == 404


def test_an_entity_lookup_answers_its_latest_vector_or_a_clear_404() -> None:
    api = client(FakeOnline({"alice": vector("alice")}), FakeTrainingSets())
    found = api.get("/features/loans/alice")
    assert found.status_code == 200
    assert found.json() == {
        "dataset": "loans", "entity": "alice", "record_id": "r-alice",
        "event_time": "2024-05-01T00:00:00+00:00", "spec_version": 2,
        "features": {"loan": 1.5, "applications_1h": 3},
        "source": {"topic": "ns.data.validated", "partition": 1, "offset": 9},
    }  # fmt: skip
    unknown_entity = api.get("/features/loans/bob")
    assert unknown_entity.status_code == 404
    assert (
        unknown_entity.json()["detail"] == "no features for entity 'bob' of dataset 'loans' (yet)"
    )
    unknown_dataset = api.get("/features/cars/alice")
    assert unknown_dataset.status_code == 404
    assert unknown_dataset.json()["detail"] == "unknown dataset 'cars'; known: loans"


def test_a_batch_lookup_answers_found_and_missing_in_the_order_asked_once_each() -> None:
    online = FakeOnline({"alice": vector("alice"), "carol": vector("carol")})
    api = client(online, FakeTrainingSets())
    answer = api.post("/features/loans/batch", json={"entities": ["carol", "bob", "alice", "bob"]})
    assert answer.status_code == 200
    assert [f["entity"] for f in answer.json()["found"]] == ["carol", "alice"]
    assert answer.json()["missing"] == ["bob"]
    assert online.asked == [["carol", "bob", "alice"]]


def test_a_batch_lookup_refuses_empty_oversized_and_malformed_requests() -> None:
    api = client(FakeOnline({}), FakeTrainingSets(), limit=3)
    assert api.post("/features/loans/batch", json={"entities": []}).status_code == 422
    assert api.post("/features/loans/batch", json={"entities": [""]}).status_code == 422
    assert api.post("/features/loans/batch", json={"ids": ["a"]}).status_code == 422
    too_many = api.post("/features/loans/batch", json={"entities": ["a", "b", "c", "d"]})
    assert too_many.status_code == 422
    assert "at most 3" in too_many.json()["detail"]
    assert api.post("/features/cars/batch", json={"entities": ["a"]}).status_code == 404


def test_a_training_set_request_is_answered_with_201_and_until_without_offset_is_utc() -> None:
    sets = FakeTrainingSets()
    api = client(FakeOnline({}), sets)
    answer = api.post("/training-sets", json={"dataset": "loans", "until": "2024-06-01T12:00:00"})
    assert answer.status_code == 201
    assert answer.json() == {"uri": "s3://b/k.parquet", "rows": 3}
    assert sets.asked == [("loans", datetime(2024, 6, 1, 12, tzinfo=UTC))]


def test_a_training_set_without_data_or_dataset_is_refused_with_the_reason() -> None:
    api = client(FakeOnline({}), FakeTrainingSets())
    empty = api.post("/training-sets", json={"dataset": "loans", "until": "1990-01-01T00:00:00Z"})
    assert empty.status_code == 422
    assert "no labelled record of 'loans'" in empty.json()["detail"]
    assert api.post("/training-sets", json={"dataset": "cars"}).status_code == 404
    assert api.post("/training-sets", json={"until": "2024-01-01"}).status_code == 422
    assert api.post("/training-sets", json={"dataset": "loans", "until": "soon"}).status_code == 422


def test_the_coverage_says_how_far_the_offline_store_is_written() -> None:
    answer = client(FakeOnline({}), FakeTrainingSets()).get("/training-sets/coverage")
    assert answer.status_code == 200
    assert answer.json() == {
        "coverage": [
            {"topic": "ns.data.labels", "partition": 0, "offset": 7},
            {"topic": "ns.data.validated", "partition": 1, "offset": 42},
        ]
    }
