"""POST /train publishes a manual TrainModel and answers 202 with its id (a window asked for
goes into its trigger); GET /runs/{id} answers the outcome of a finished command (ModelTrained
or TrainingFailed), 202 while it runs, 404 when unknown."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.training.adapters.database import create_training_engine
from services.training.adapters.runs import SqlRuns
from services.training.domain.errors import EstimatorRefused
from services.training.handlers import RunningCommands, failed_event, trained_event
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


def client(
    publisher: RecordingPublisher,
    runs: SqlRuns | None = None,
    running: RunningCommands | None = None,
) -> TestClient:
    app = FastAPI()
    runs = runs or SqlRuns(create_training_engine("sqlite://"), "ns")
    app.include_router(training_router(publisher, lambda name: name == "loans", runs, running))
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
        "since": None,
    }
    assert command.data.trigger.kind == "manual"
    assert command.data.trigger.since is None
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


def test_a_window_asked_for_goes_into_the_trigger_and_a_naive_time_is_utc() -> None:
    publisher = RecordingPublisher()
    body = {"model_name": "loans", "dataset": "loans", "since": "2024-05-01T12:00:00"}
    answer = client(publisher).post("/train", json=body)
    assert answer.status_code == 202, answer.text
    [command] = publisher.published
    assert command.data.trigger.since == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert answer.json()["since"] == "2024-05-01T12:00:00+00:00"


def test_a_window_starting_in_the_future_is_refused() -> None:
    publisher = RecordingPublisher()
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    answer = client(publisher).post(
        "/train", json={"model_name": "loans", "dataset": "loans", "since": later}
    )
    assert answer.status_code == 422 and "lies in the future" in answer.text
    assert publisher.published == []


def test_a_failed_run_is_answered_with_its_outcome_and_reason() -> None:
    runs = SqlRuns(create_training_engine("sqlite://"), "ns")
    command = train_command()
    refusal = EstimatorRefused("estimator 'os.system' is not a scikit-learn class")
    event = runs.record(command.id, failed_event(command, "refused", refusal))
    answer = client(RecordingPublisher(), runs).get(f"/runs/{command.id}")
    assert answer.status_code == 200
    assert answer.content == event.to_json_bytes()
    body = answer.json()
    assert body["type"] == "mlops.TrainingFailed"
    assert (body["data"]["outcome"], body["data"]["error"]) == ("refused", "EstimatorRefused")
    assert "os.system" in body["data"]["reason"]


def test_a_command_being_handled_is_202_running() -> None:
    running = RunningCommands()
    running.start("c-1")
    http = client(RecordingPublisher(), running=running)
    answer = http.get("/runs/c-1")
    assert answer.status_code == 202
    assert answer.json()["status"] == "running"
    running.finish("c-1")
    assert http.get("/runs/c-1").status_code == 404
