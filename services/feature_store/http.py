"""The feature store's HTTP API: online lookups and point-in-time training sets.

GET  /features/{dataset}/{entity}       -> the entity's latest vector, 404 if unknown
POST /features/{dataset}/batch          {"entities": [...]} -> {"found": [...], "missing": [...]}
POST /training-sets                     {"dataset": ..., "until": ISO time?} -> 201, where the
                                        Parquet set is, its rows, columns, lineage and
                                        coverage (how far the offline store was written)
GET  /training-sets/coverage            -> {"coverage": [{"topic", "partition", "offset"}]}:
                                        per topic partition, the next offset not yet in the
                                        offline store (data.validated, data.features,
                                        data.labels), so a trainer can wait for its data
POST /training-sets/rebuild             {"dataset", "offsets": [{"topic", "partition",
                                        "first_offset", "last_offset"}], "cut_off": ISO?}
                                        -> 200, the training set a lineage names rebuilt from
                                        Kafka alone (exactly the data.labels ranges, and the
                                        data.features events of the records in the
                                        data.validated ranges) as Parquet; header
                                        X-Rebuild-Summary: JSON counts of what was read.
                                        404 dataset/spec unknown in the lineage's namespace;
                                        410 a range no longer stored; 422 ranges that cannot
                                        be rebuilt; 429 a rebuild already runs; 503 Kafka
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from confluent_kafka import KafkaException
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from services.feature_store.adapters.kafka_ranges import KafkaUnavailable, RangesGone
from services.feature_store.adapters.online import OnlineStore, OnlineVector
from services.feature_store.adapters.rebuilt_sets import Busy, RebuiltSets, UnknownSpec
from services.feature_store.adapters.training_sets import NoTrainingData, TrainingSets
from services.feature_store.domain.rebuild import UnrebuildableLineage
from services.feature_store.domain.training_sets import coverage_json
from shared.datasets.registry import UnknownDataset
from shared.events.models import OffsetRange

PARQUET = "application/vnd.apache.parquet"
SUMMARY_HEADER = "X-Rebuild-Summary"


class BatchLookup(BaseModel):
    entities: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        min_length=1, description="Entity keys to look up."
    )


class TrainingSetRequest(BaseModel):
    dataset: str = Field(min_length=1, max_length=200)
    until: datetime | None = Field(
        None, description="Only records and labels known by then (ISO 8601; no offset is UTC)."
    )


class RebuildRequest(BaseModel):
    dataset: str = Field(min_length=1, max_length=200)
    offsets: list[OffsetRange] = Field(
        min_length=1,
        max_length=10_000,
        description="The lineage's ranges: data.validated and data.labels of one namespace.",
    )
    cut_off: datetime | None = Field(
        None, description="The lineage's cut-off: labels and records known by then only."
    )


@dataclass(frozen=True)
class HttpDeps:
    online: OnlineStore
    training_sets: TrainingSets
    known_dataset: Callable[[str], None]
    """Raises UnknownDataset for a dataset no spec names."""
    max_lookup_entities: int
    rebuilt_sets: RebuiltSets | None = None


def get_deps(request: Request) -> HttpDeps:
    """The store's dependencies, put on the app by `install`."""
    return request.app.state.feature_store


Deps = Annotated[HttpDeps, Depends(get_deps)]


def install(app: FastAPI, deps: HttpDeps) -> None:
    app.state.feature_store = deps
    app.include_router(features_router())


def features_router() -> APIRouter:
    router = APIRouter(tags=["features"])

    @router.get("/features/{dataset}/{entity}")
    async def entity_features(dataset: str, entity: str, deps: Deps) -> Response:
        """The latest feature vector of one entity (its record's values and aggregates)."""
        # A cache hit is answered on the event loop; SQL is read on the thread pool.
        cached = deps.online.cache.rendered(dataset, entity, _render)
        if cached is not None:
            return Response(cached, media_type="application/json")
        _require_dataset(deps, dataset)
        vector = await run_in_threadpool(deps.online.get, dataset, entity)
        if vector is None:
            raise HTTPException(
                404, f"no features for entity {entity!r} of dataset {dataset!r} (yet)"
            )
        return Response(_render(vector), media_type="application/json")

    @router.post("/features/{dataset}/batch")
    def batch_features(dataset: str, body: BatchLookup, deps: Deps) -> dict[str, Any]:
        """The latest vectors of many entities; the ones the store does not know are listed
        under "missing"."""
        _require_dataset(deps, dataset)
        wanted = list(dict.fromkeys(body.entities))
        if len(wanted) > deps.max_lookup_entities:
            raise HTTPException(
                422,
                f"{len(wanted)} entities asked; at most {deps.max_lookup_entities} per request",
            )
        found = deps.online.get_many(dataset, wanted)
        return {
            "dataset": dataset,
            "found": [found[entity].as_json() for entity in wanted if entity in found],
            "missing": [entity for entity in wanted if entity not in found],
        }

    @router.get("/training-sets/coverage")
    def training_set_coverage(deps: Deps) -> dict[str, Any]:
        """How far the offline store is written: what a training set asked now would hold."""
        return {"coverage": coverage_json(deps.training_sets.coverage())}

    @router.post("/training-sets", status_code=201)
    def create_training_set(body: TrainingSetRequest, deps: Deps) -> dict[str, Any]:
        """Joins each label with its record's features as they were at the record's event
        time, writes the set as Parquet to MinIO, and answers with its location, rows,
        columns and the exact Kafka offset ranges it was built from."""
        _require_dataset(deps, body.dataset)
        until = body.until
        if until is not None and until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        try:
            written = deps.training_sets.create(body.dataset, until)
        except NoTrainingData as error:
            raise HTTPException(422, str(error)) from None
        return written.as_json()

    @router.post(
        "/training-sets/rebuild",
        response_class=Response,
        responses={200: {"content": {PARQUET: {}}, "description": "The set, as Parquet."}},
    )
    def rebuild_training_set(body: RebuildRequest, deps: Deps) -> Response:
        """The training set a lineage names, rebuilt from Kafka alone: the labels of its
        data.labels ranges and the features the store computed (data.features) for the
        records of its data.validated ranges, joined point in time up to its cut-off."""
        if deps.rebuilt_sets is None:
            raise HTTPException(501, "this feature store does not rebuild training sets")
        cut_off = body.cut_off
        if cut_off is not None and cut_off.tzinfo is None:
            cut_off = cut_off.replace(tzinfo=UTC)
        try:
            rebuilt = deps.rebuilt_sets.rebuild(body.dataset, body.offsets, cut_off)
        except UnknownSpec as error:
            raise HTTPException(404, str(error)) from None
        except RangesGone as error:
            raise HTTPException(410, f"no longer in Kafka: {error}") from None
        except UnrebuildableLineage as error:
            raise HTTPException(422, str(error)) from None
        except Busy as error:
            raise HTTPException(429, str(error)) from None
        except (KafkaUnavailable, TimeoutError) as error:
            raise HTTPException(503, str(error)) from None
        except KafkaException as error:
            raise HTTPException(503, f"Kafka: {error.args[0]}") from None
        summary = json.dumps(rebuilt.summary.as_json(), separators=(",", ":"))
        return Response(rebuilt.parquet, media_type=PARQUET, headers={SUMMARY_HEADER: summary})

    return router


def _render(vector: OnlineVector) -> bytes:
    return json.dumps(vector.as_json(), separators=(",", ":")).encode()


def _require_dataset(deps: HttpDeps, dataset: str) -> None:
    try:
        deps.known_dataset(dataset)
    except UnknownDataset as error:
        raise HTTPException(404, str(error)) from None
