"""Serving's HTTP API.

    POST /predict   {"model": "loans", "records": [{...}, ...]}   inline feature values
                    {"model": "loans", "entities": ["applicant-7"]} features from the online store
    GET  /models    each served model: the versions answering (champion) and shadowing
                    (challenger), or what it still waits for; the champion version assigned,
                    whether it is in memory and its size
    GET  /memory    loaded models' memory: limit, bytes used, each loaded model's size, use
                    and requests in flight, loads, reloads and evictions so far

/predict answers one prediction per record (see domain/answers.py), all by one version;
404 for a model without champion ("no champion for model 'x' yet", whether or not the
registry knows the model), a model MLOPS_SERVING_MODELS leaves out (each answer lists the
models answering), or entities the online store does not know; 422 with every field error
for records or stored features that break the dataset spec; 503 while a model's champion is
known but not loaded here (refused, failed to load, not loaded within
MLOPS_SERVING_MODEL_LOAD_TIMEOUT_S, no room because every loaded model has requests in flight)
or the online store cannot answer. A model not in memory is loaded by its request (lazy.py). An X-Request-ID
header, when sent, becomes the request id (otherwise one is made); the answer carries it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Self

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from services.serving import metrics
from services.serving.adapters.feature_store import FeatureStoreRefused, FeatureStoreUnavailable
from services.serving.domain.answers import errors_body
from services.serving.domain.jobs import InvalidRecords, ScoringFailed
from services.serving.domain.served import ServedModel
from services.serving.domain.slots import (
    CHALLENGER,
    CHAMPION,
    ChampionNotLoaded,
    ModelSlots,
    NoChampion,
    NotServed,
)
from services.serving.memory import ModelMemory
from services.serving.predictions import Predictions, UnknownEntities
from shared.events.models import MODEL_NAME
from shared.events.records import FieldValue

log = logging.getLogger(__name__)

Entity = Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(pattern=MODEL_NAME, description="A served model's name.")
    records: list[dict[str, FieldValue]] | None = Field(
        None, min_length=1, description="Feature values, one object per record."
    )
    entities: list[Entity] | None = Field(
        None, min_length=1, description="Entity keys whose features the online store holds."
    )

    @model_validator(mode="after")
    def _records_or_entities(self) -> Self:
        if (self.records is None) == (self.entities is None):
            raise ValueError("send either records or entities (exactly one of them)")
        return self


class PredictionOut(BaseModel):
    prediction: FieldValue
    probabilities: dict[str, float] = Field(description="Class -> probability (classifiers).")
    model: str
    version: int
    request_id: str
    record_id: str | None = Field(description="The record's id column, when it has one.")
    entity: str | None


class PredictResponse(BaseModel):
    request_id: str
    model: str
    version: int
    predictions: list[PredictionOut]


@dataclass(frozen=True)
class ServingApi:
    """What the routes need; bootstrap puts one on app.state (see `install`)."""

    predictions: Predictions
    slots: ModelSlots
    max_records: int
    memory: ModelMemory | None = None


def install(app: FastAPI, api: ServingApi) -> None:
    app.state.serving_api = api
    app.include_router(router)


async def _api(request: Request) -> ServingApi:
    # async: FastAPI would run a plain function on its thread pool, a hop on every request
    api: ServingApi = request.app.state.serving_api
    return api


ApiDep = Annotated[ServingApi, Depends(_api)]
RequestIdHeader = Annotated[
    str | None, Header(max_length=200, description="Your id for this request (optional).")
]

router = APIRouter(tags=["serving"])


def _refused(reason: str, status: int, body: dict[str, Any], request_id: str) -> JSONResponse:
    metrics.REQUESTS_REFUSED.labels(reason).inc()
    return JSONResponse(body, status, headers={"X-Request-ID": request_id})


def _too_many(where: str, count: int, limit: int) -> dict[str, Any]:
    message = f"{count} {where} in one request; at most {limit}"
    return {"detail": [{"loc": ["body", where], "msg": message, "type": "too_long"}]}


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses={404: {}, 422: {}, 502: {}, 503: {}},
)
async def predict(
    body: PredictRequest, api: ApiDep, x_request_id: RequestIdHeader = None
) -> JSONResponse:
    request_id = x_request_id or str(uuid.uuid4())
    batch = body.records if body.records is not None else body.entities or []
    where = "records" if body.records is not None else "entities"
    if len(batch) > api.max_records:
        return _refused("too_many", 422, _too_many(where, len(batch), api.max_records), request_id)
    try:
        answer = await api.predictions.predict(
            body.model, request_id, records=body.records, entities=body.entities
        )
    except NotServed as error:
        body_ = {"detail": str(error), "served": api.slots.answering()}
        return _refused("not_served", 404, body_, request_id)
    except NoChampion as error:
        body_ = {"detail": str(error), "served": api.slots.answering()}
        return _refused("no_champion", 404, body_, request_id)
    except ChampionNotLoaded as error:
        return _refused("champion_not_loaded", 503, {"detail": str(error)}, request_id)
    except InvalidRecords as error:
        return _refused("invalid_records", 422, errors_body(error.where, error.errors), request_id)
    except ScoringFailed as error:
        return _refused("scoring_failed", 422, {"detail": str(error)}, request_id)
    except UnknownEntities as error:
        body_ = {"detail": str(error), "missing": error.missing}
        return _refused("unknown_entities", 404, body_, request_id)
    except FeatureStoreUnavailable as error:
        return _refused("feature_store_unavailable", 503, {"detail": str(error)}, request_id)
    except FeatureStoreRefused as error:
        return _refused("feature_store_refused", 502, {"detail": str(error)}, request_id)
    return JSONResponse(answer, headers={"X-Request-ID": request_id})


def _describe(served: ServedModel | None) -> dict[str, Any] | None:
    if served is None:
        return None
    card = served.card
    return {
        "version": card.version,
        "dataset": card.dataset,
        "spec_version": card.spec_version,
        "feature_columns": list(card.feature_columns),
        "artifact": card.artifact.model_dump(mode="json"),
        "classes": list(served.classes),
        "loaded_at": served.loaded_at.isoformat(),
    }


@router.get("/models")
def list_models(api: ApiDep) -> list[dict[str, Any]]:
    """Each model serving knows: its champion and challenger as loaded here, or what it
    waits for."""
    models = []
    for slot in api.slots:
        champion = slot.current(CHAMPION)
        assigned = slot.assigned(CHAMPION)
        size = api.memory.size_of((slot.name, CHAMPION)) if api.memory else None
        models.append(
            {
                "model": slot.name,
                "champion": _describe(champion),
                "challenger": _describe(slot.current(CHALLENGER)),
                "waiting_for": slot.waiting_for,
                "champion_version": assigned.version if assigned else None,
                "loaded": champion is not None,
                "size_bytes": size,
            }
        )
    return models


@router.get("/memory")
def memory(api: ApiDep) -> dict[str, Any]:
    """The loaded models' memory against its limit (MLOPS_SERVING_MODEL_MEMORY_MB)."""
    if api.memory is None:
        return {"loaded": []}
    return api.memory.snapshot()
