"""Training's HTTP API.

POST /train            {"model_name", "dataset", "reason", "params"?, "seed"?}
                       -> 202 {"command_id", ...}: a TrainModel (trigger manual) confirmed
                       on training.requests; requested_by is the X-Requested-By header, or
                       "http". 404: unknown dataset; 503: Kafka did not confirm.
GET  /runs/{command_id} the ModelTrained event of a finished command (404: not finished)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Header, HTTPException, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.training.handlers import SOURCE
from shared.events.envelope import Event
from shared.events.models import MODEL_NAME, ModelTrained, TrainingTrigger, TrainModel
from shared.kafka.producer import DeliveryError

DEFAULT_REQUESTER = "http"


class Publisher(Protocol):
    topic: str

    def publish(self, command: Event[TrainModel]) -> None: ...


class FinishedRuns(Protocol):
    def finished(self, command_id: str) -> Event[ModelTrained] | None: ...


KnownDataset = Callable[[str], bool]


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = Field(pattern=MODEL_NAME, description="The model to train (registry name).")
    dataset: str = Field(min_length=1, max_length=200, description="Its dataset spec's name.")
    reason: str = Field("", max_length=2000, description="Why; kept in the model's lineage.")
    params: dict[str, Any] = Field(default_factory=dict, description="Overrides of the spec's.")
    seed: int | None = Field(None, ge=0, description="Default: the service's default seed.")


def training_router(
    publisher: Publisher, known_dataset: KnownDataset, runs: FinishedRuns
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
        }
        return JSONResponse(answer, status_code=202)

    @router.get("/runs/{command_id}")
    def run(command_id: str) -> Response:
        """The ModelTrained event a command's run emitted, as it went to models.trained."""
        trained = runs.finished(command_id)
        if trained is None:
            raise HTTPException(404, f"no finished run for command {command_id!r}")
        return Response(trained.to_json_bytes(), media_type="application/json")

    return router
