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
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Header, HTTPException, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.training.handlers import SOURCE
from shared.events.envelope import Event
from shared.events.models import (
    MODEL_NAME,
    ModelTrained,
    TrainingFailed,
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
