"""POST /train publishes a manual TrainModel and answers 202 with its id; GET /runs/{id}
answers the ModelTrained of a finished command."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.training.adapters.database import create_training_engine
from services.training.adapters.runs import SqlRuns
from services.training.handlers import trained_event
from services.training.http import training_router
from shared.events.envelope import Event
from shared.events.models import TrainModel
from shared.kafka.producer import DeliveryError
from tests.unit.test_training_handlers import train_command, trained


@dataclass
class RecordingPublisher:
    topic: str = "ns.training.requests"
    published: list[Event[TrainModel]] = field(default_factory=list)
    fail: bool = False

    def publish(self, command: Event[TrainModel]) -> None:
        if self.fail:
            raise DeliveryError("1 of 1 writes failed: broker down")
        self.published.append(command)


def client(publisher: RecordingPublisher, runs: SqlRuns | None = None) -> TestClient:
    app = FastAPI()
    runs = runs or SqlRuns(create_training_engine("sqlite://"), "ns")
    app.include_router(training_router(publisher, lambda name: name == "loans", runs))
    return TestClient(app)


def test_post_train_publishes_a_manual_command_and_answers_its_id() -> None:
    publisher = RecordingPublisher()
    body = {"model_name": "loans", "dataset": "loans", "reason": "weekly", "seed": 7,
            "params": {"max_iter": 50}}  # fmt: skip
    answer = client(publisher).post("/train", json=body, headers={"X-Requested-By": "alice"})
    assert answer.status_code == 202
    [command] = publisher.published
    assert answer.json() == {
        "command_id": command.id,
        "model_name": "loans",
        "dataset": "loans",
        "topic": "ns.training.requests",
    }
    assert command.data.trigger.kind == "manual"
    assert command.data.trigger.requested_by == "alice"
    assert command.data.trigger.reason == "weekly"
    assert (command.data.seed, command.data.params) == (7, {"max_iter": 50})
    assert command.source == "training" and command.subject == "loans"


def test_without_a_header_the_requester_is_http() -> None:
    publisher = RecordingPublisher()
    client(publisher).post("/train", json={"model_name": "loans", "dataset": "loans"})
    assert publisher.published[0].data.trigger.requested_by == "http"


def test_an_unknown_dataset_is_404_and_nothing_is_published() -> None:
    publisher = RecordingPublisher()
    answer = client(publisher).post("/train", json={"model_name": "x", "dataset": "nope"})
    assert answer.status_code == 404
    assert "unknown dataset 'nope'" in answer.json()["detail"]
    assert publisher.published == []


def test_a_bad_request_is_422() -> None:
    publisher = RecordingPublisher()
    for body in (
        {"model_name": "Bad Name", "dataset": "loans"},
        {"model_name": "loans"},
        {"model_name": "loans", "dataset": "loans", "estimator": "os.system"},
        {"model_name": "loans", "dataset": "loans", "seed": -1},
    ):
        assert client(publisher).post("/train", json=body).status_code == 422, body
    assert publisher.published == []


def test_when_kafka_does_not_confirm_the_answer_is_503() -> None:
    answer = client(RecordingPublisher(fail=True)).post(
        "/train", json={"model_name": "loans", "dataset": "loans"}
    )
    assert answer.status_code == 503
    assert "broker down" in answer.json()["detail"]


def test_a_finished_run_is_answered_as_emitted() -> None:
    runs = SqlRuns(create_training_engine("sqlite://"), "ns")
    command = train_command()
    event = runs.record(command.id, trained_event(command, trained(command.id)))
    http = client(RecordingPublisher(), runs)
    answer = http.get(f"/runs/{command.id}")
    assert answer.status_code == 200
    assert answer.content == event.to_json_bytes()
    assert http.get("/runs/unknown").status_code == 404
    assert datetime.fromisoformat(answer.json()["data"]["trained_at"]).tzinfo == UTC
