"""Training's HTTP API.

POST /train            {"model_name", "dataset", "reason", "params"?, "seed"?, "since"?}
                       -> 202 {"command_id", ...}: a TrainModel (trigger manual) confirmed
                       on training.requests; requested_by is the X-Requested-By header, or
                       "http"; since (ISO time): train on records from then on only.
                       404: unknown dataset; 422: since in the future; 503: Kafka did not
                       confirm.
GET  /runs/{command_id} the outcome of a finished command as it went to models.trained:
                       200 with its ModelTrained, or its TrainingFailed ("outcome":
                       refused/failed, "reason"); 202 {"status": "running"} while it is
                       being handled; 404 when unknown or not started yet

Reproductions: rebuild a registered version from the Kafka offsets of its lineage (the
feature store rebuilds the training set), retrain it with its recorded estimator, params
and seed, and compare. Asynchronous: one runs at a time, in a worker of the replica asked;
kept in SQL, so every replica answers for every one.
POST /reproductions    {"model": "loans", "version": 3} or {"model": "loans", "latest": true}
                       (+ "lineage": {...}: rebuild from this lineage instead, compared with
                       the version) -> 202 {"id", "model", "version", "status": "running",
                       "started_at"}; 404 unknown model/version; 422 bad body; 429 the queue
                       is full; 503 registry or feature store unreachable; 502 the
                       registry's answer unusable
GET  /reproductions/{id}  {"id", "model", "version", "status": running|identical|differs|
                       failed, "checks": [{"name", "recorded", "reproduced", "same",
                       "difference"}], "reason", "notes", "summary", "started_at",
                       "finished_at"}; 404 unknown id (or forgotten: the newest are kept)
GET  /reproductions?model=&limit=  the newest first (in SQL: kept across restarts)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Header, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.training.adapters.errors import DependencyRefused, DependencyUnavailable
from services.training.adapters.registry import UnknownVersion
from services.training.handlers import SOURCE
from services.training.reproducer import Job, QueueFull, ReproductionWorker
from shared.events.envelope import Event
from shared.events.models import (
    MODEL_NAME,
    ModelTrained,
    TrainingFailed,
    TrainingLineage,
    TrainingTrigger,
    TrainModel,
)
from shared.kafka.producer import DeliveryError

DEFAULT_REQUESTER = "http"


class Publisher(Protocol):
    topic: str

    def publish(self, command: Event[TrainModel]) -> None: ...


class FinishedRuns(Protocol):
    def finished(self, command_id: str) -> Event[ModelTrained] | Event[TrainingFailed] | None: ...


class Running(Protocol):
    def started(self, command_id: str) -> datetime | None: ...


KnownDataset = Callable[[str], bool]


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = Field(pattern=MODEL_NAME, description="The model to train (registry name).")
    dataset: str = Field(min_length=1, max_length=200, description="Its dataset spec's name.")
    reason: str = Field("", max_length=2000, description="Why; kept in the model's lineage.")
    params: dict[str, Any] = Field(default_factory=dict, description="Overrides of the spec's.")
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="Default: the service's default seed."
    )
    since: datetime | None = Field(
        None,
        description="Train only on records whose event time is at or after this (ISO 8601; "
        "no offset is UTC). Default: all the data.",
    )

    @field_validator("since")
    @classmethod
    def _since_is_past(cls, since: datetime | None) -> datetime | None:
        if since is None:
            return None
        since = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
        if since > datetime.now(UTC):
            raise ValueError(f"since {since.isoformat()} lies in the future")
        return since


def training_router(
    publisher: Publisher,
    known_dataset: KnownDataset,
    runs: FinishedRuns,
    running: Running | None = None,
) -> APIRouter:
    router = APIRouter(tags=["training"])

    @router.post("/train", status_code=202)
    def train(
        body: TrainRequest,
        x_requested_by: Annotated[str | None, Header(max_length=200)] = None,
    ) -> JSONResponse:
        """Asks for a training run: the command goes through Kafka like every other trigger."""
        try:
            known = known_dataset(body.dataset)
        except Exception as error:
            raise HTTPException(503, f"the dataset specs could not be read: {error}") from None
        if not known:
            raise HTTPException(404, f"unknown dataset {body.dataset!r}: register its spec first")
        command = Event.create(
            TrainModel(
                model_name=body.model_name,
                dataset=body.dataset,
                trigger=TrainingTrigger(
                    kind="manual",
                    reason=body.reason,
                    requested_by=x_requested_by or DEFAULT_REQUESTER,
                    since=body.since,
                ),
                params=body.params,
                seed=body.seed,
            ),
            source=SOURCE,
            subject=body.model_name,
        )
        try:
            publisher.publish(command)
        except DeliveryError as error:
            raise HTTPException(503, f"Kafka did not confirm the command: {error}") from None
        answer = {
            "command_id": command.id,
            "model_name": body.model_name,
            "dataset": body.dataset,
            "topic": publisher.topic,
            "since": body.since.isoformat() if body.since else None,
        }
        return JSONResponse(answer, status_code=202)

    @router.get("/runs/{command_id}")
    def run(command_id: str) -> Response:
        """The outcome a command's run emitted (ModelTrained or TrainingFailed), as it went to
        models.trained; 202 while the command is being handled."""
        outcome = runs.finished(command_id)
        if outcome is not None:
            return Response(outcome.to_json_bytes(), media_type="application/json")
        started = running.started(command_id) if running is not None else None
        if started is not None:
            answer = {
                "command_id": command_id,
                "status": "running",
                "started_at": started.isoformat(),
            }
            return JSONResponse(answer, status_code=202)
        raise HTTPException(404, f"no finished run for command {command_id!r}")

    return router


class Versions(Protocol):
    def latest_version(self, model_name: str) -> int: ...
    def version(self, model_name: str, version: int) -> dict[str, Any]: ...


class ReproduceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(pattern=MODEL_NAME, description="The registered model.")
    version: int | None = Field(None, ge=1, le=2**31 - 1, description="The version to reproduce...")
    latest: bool = Field(False, description="...or its newest version.")
    lineage: dict[str, Any] | None = Field(
        None,
        description="Rebuild from this lineage instead of the version's (e.g. `mlops lineage` "
        "output, edited); the result is still compared with the version.",
    )

    @model_validator(mode="after")
    def _version_or_latest(self) -> ReproduceRequest:
        if (self.version is None) == (not self.latest):
            raise ValueError('give "version" or "latest": true, not both and not neither')
        return self


def lineage_of(document: Any) -> TrainingLineage:
    """The lineage in a document: a bare lineage, or a version/`mlops lineage` answer holding
    one under "lineage" (ValueError when it holds none)."""
    if isinstance(document, dict) and isinstance(document.get("lineage"), dict):
        document = document["lineage"]
    try:
        return TrainingLineage.model_validate(document)
    except ValidationError as error:
        raise ValueError(f"not a training lineage: {str(error).splitlines()[0]}") from None


def reproductions_router(
    worker: ReproductionWorker, registry: Versions, feature_store_ping: Callable[[], None]
) -> APIRouter:
    router = APIRouter(tags=["reproductions"])
    reproductions = worker.reproductions

    @router.post("/reproductions", status_code=202)
    def reproduce(body: ReproduceRequest) -> JSONResponse:
        """Rebuilds a registered version from the Kafka offsets of its lineage, retrains it
        with its recorded estimator, params and seed, and compares: poll
        GET /reproductions/{id} for `identical`, `differs` or `failed`."""
        try:
            number = body.version or registry.latest_version(body.model)
            record = registry.version(body.model, number)
        except UnknownVersion as unknown:
            raise HTTPException(404, str(unknown)) from None
        except DependencyUnavailable as error:
            raise HTTPException(503, f"the registry could not be asked: {error}") from None
        except DependencyRefused as error:
            raise HTTPException(502, f"the registry's answer is unusable: {error}") from None
        try:
            lineage = lineage_of(body.lineage if body.lineage is not None else record)
        except ValueError as error:
            where = "the lineage given" if body.lineage is not None else "the version's record"
            raise HTTPException(422, f"{where}: {error}") from None
        try:
            feature_store_ping()
        except Exception as error:
            raise HTTPException(
                503, f"the feature store is unreachable: {type(error).__name__}: {error}"
            ) from None
        item = reproductions.start(body.model, number)
        try:
            worker.submit(Job(item.id, body.model, number, record, lineage))
        except QueueFull as full:
            reproductions.failed(item.id, str(full))
            raise HTTPException(429, str(full)) from None
        answer = {
            "id": item.id,
            "model": item.model,
            "version": item.version,
            "status": item.status,
            "started_at": item.started_at.isoformat(),
        }
        return JSONResponse(answer, status_code=202)

    @router.get("/reproductions/{reproduction_id}")
    def reproduction(reproduction_id: str) -> dict[str, Any]:
        """A reproduction: `running`, or its outcome with every check."""
        item = reproductions.get(reproduction_id)
        if item is None:
            raise HTTPException(404, f"no reproduction {reproduction_id!r} (or forgotten)")
        return item.as_json()

    @router.get("/reproductions")
    def recent_reproductions(
        model: Annotated[str | None, Query(max_length=100)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
    ) -> list[dict[str, Any]]:
        """The newest reproductions first, whichever replica ran them."""
        return [item.as_json() for item in reproductions.recent(model, limit)]

    return router
