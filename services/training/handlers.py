"""What training consumes and emits.

    training.requests (TrainModel)  -> models.trained: ModelTrained, or TrainingFailed with
                                       its reason; one outcome per command, keyed by model
    data.labels (LabelRecorded)     -> training.requests (TrainModel, data_volume) after every
                                       MLOPS_TRAINING_RETRAIN_EVERY_LABELS labels of a dataset

Commands are keyed by model name, so a model's commands queue in order on one partition; and a
run holds its model's lease in SQL while it fits (services.training.exclusive), so one model
trains at a time across replicas, also while a partition moves between them. A command is
handled once: its outcome is kept in SQL by command id, and a redelivery
re-emits that same event (same event id). A command that cannot be trained as asked (bad
estimator, unknown dataset, nothing labelled) ends at once in TrainingFailed "refused"; one
whose dependencies keep failing (feature store, MinIO down) ends after its attempts, and one
whose data did not reach the offline store within the wait ends at once, in TrainingFailed
"failed". Either way its requester sees it (GET /runs/{command_id}, `mlops train --wait`).

HTTP publishes TrainModel commands too: PUBLISHES.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol

from services.training import metrics
from services.training.adapters.errors import DependencyRefused
from services.training.domain.errors import DataNotArrived, TrainingRefused
from services.training.exclusive import Held, LeaseLost, ModelBusy
from shared.events.envelope import Event
from shared.events.models import (
    MODEL_NAME,
    ModelTrained,
    TrainingFailed,
    TrainingTrigger,
    TrainModel,
)
from shared.events.records import LabelRecorded, SourcePosition
from shared.kafka.consumer import Emit, Handler, MessageInfo
from shared.kafka.routes import Route

log = logging.getLogger(__name__)

SOURCE: Final = "training"
COMMANDS: Final = "training.requests"
LABELS: Final = "data.labels"
TRAINED: Final = "models.trained"
PUBLISHES: Final = (COMMANDS,)
_IDS = uuid.UUID("6f1d3c52-8a47-4f0e-9b8e-5a2f0c7d1e93")  # uuid5 namespace of derived ids

Outcome = Event[ModelTrained] | Event[TrainingFailed]


class Train(Protocol):
    def train(self, command: Event[TrainModel]) -> ModelTrained: ...


class Runs(Protocol):
    def finished(self, command_id: str) -> Outcome | None: ...
    def record(self, command_id: str, outcome: Outcome) -> Outcome: ...


Decide = Callable[[int], Event[TrainModel] | None]


class LabelCounter(Protocol):
    def count(
        self, dataset: str, position: SourcePosition, decide: Decide
    ) -> Event[TrainModel] | None: ...


class Exclusion(Protocol):
    def hold(self, model_name: str, command_id: str) -> AbstractContextManager[Held]: ...


class RunningCommands:
    """The commands being handled now, and since when: GET /runs answers 202 for them."""

    def __init__(self) -> None:
        self._started: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def start(self, command_id: str) -> None:
        with self._lock:
            self._started[command_id] = datetime.now(UTC)

    def finish(self, command_id: str) -> None:
        with self._lock:
            self._started.pop(command_id, None)

    def started(self, command_id: str) -> datetime | None:
        with self._lock:
            return self._started.get(command_id)


@dataclass
class Deps:
    trainer: Train
    runs: Runs
    labels: LabelCounter
    exclusion: Exclusion
    """One run of a model at a time, across replicas."""
    retrain_every_labels: int = 5000
    model_name_for: Callable[[str], str] = lambda dataset: dataset
    attempts: int = 5
    """Tries of a command whose dependencies fail, before it ends as failed."""
    first_backoff_s: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    running: RunningCommands = field(default_factory=RunningCommands)


def derived_id(*parts: str) -> str:
    """A deterministic event id: the same input gives the same output event, every time."""
    return str(uuid.uuid5(_IDS, "/".join(parts)))


def trained_event(command: Event[TrainModel], trained: ModelTrained) -> Event[ModelTrained]:
    """The ModelTrained of a command: id derived from the command's, its correlation carried."""
    return Event[ModelTrained](
        id=derived_id("model-trained", command.id),
        source=SOURCE,
        type=ModelTrained.event_type,
        subject=trained.model_name,
        correlationid=command.correlationid or command.id,
        causationid=command.id,
        data=trained,
    )


def failed_event(
    command: Event[TrainModel], outcome: Literal["refused", "failed"], error: Exception
) -> Event[TrainingFailed]:
    """The TrainingFailed of a command: id derived from the command's, its correlation
    carried, the error's message as the reason."""
    request = command.data
    failed = TrainingFailed(
        model_name=request.model_name,
        dataset=request.dataset,
        command_id=command.id,
        trigger=request.trigger,
        outcome=outcome,
        reason=str(error).strip() or type(error).__name__,
        error=type(error).__name__,
        failed_at=datetime.now(UTC),
    )
    return Event[TrainingFailed](
        id=derived_id("training-failed", command.id),
        source=SOURCE,
        type=TrainingFailed.event_type,
        subject=request.model_name,
        correlationid=command.correlationid or command.id,
        causationid=command.id,
        data=failed,
    )


def run_command(deps: Deps, command: Event[TrainModel]) -> Outcome:
    """Trains a command: its ModelTrained, or its TrainingFailed once it was refused, its data
    did not arrive, or its dependencies failed on every attempt."""
    model = command.data.model_name
    backoff = deps.first_backoff_s
    for attempt in range(1, deps.attempts + 1):
        try:
            with metrics.RUN_SECONDS.labels(model).time():
                return trained_event(command, deps.trainer.train(command))
        except (TrainingRefused, DependencyRefused) as refusal:
            log.error("command %s for %s refused: %s", command.id, model, refusal)
            return failed_event(command, "refused", refusal)
        except DataNotArrived as late:
            log.error("command %s for %s failed: %s", command.id, model, late)
            return failed_event(command, "failed", late)
        except Exception as error:  # a dependency down, or anything a later try may not meet
            if attempt == deps.attempts:
                log.error(
                    "command %s for %s failed after %d attempts: %s: %s",
                    command.id, model, attempt, type(error).__name__, error,
                )  # fmt: skip
                return failed_event(command, "failed", error)
            log.warning(
                "command %s for %s, attempt %d of %d: %s: %s; again in %.1fs",
                command.id, model, attempt, deps.attempts, type(error).__name__, error, backoff,
            )  # fmt: skip
            deps.sleep(backoff)
            backoff *= 2
    raise AssertionError("unreachable: the last attempt returns")


def run_exclusively(deps: Deps, command: Event[TrainModel]) -> Outcome:
    """Runs a command holding its model's lease. Once the lease is held, a command another
    replica finished meanwhile (the partition moved while it ran) gets that outcome back
    instead of a second fit; a command that waited in vain, or lost the lease, fails."""
    model = command.data.model_name
    try:
        with deps.exclusion.hold(model, command.id) as held:
            done = deps.runs.finished(command.id)
            if done is not None:
                log.info("command %s was finished by another replica meanwhile", command.id)
                return done
            outcome = run_command(deps, command)
            held.check()
            return outcome
    except (ModelBusy, LeaseLost) as error:
        log.error("command %s for %s failed: %s", command.id, model, error)
        return failed_event(command, "failed", error)


def train_model(deps: Deps) -> Handler:
    def handle(event: Event[Any], info: MessageInfo) -> list[Emit]:
        command: TrainModel = event.data
        done = deps.runs.finished(event.id)
        if done is not None:
            log.info("command %s was handled already (%s): re-emitting", event.id, done.type)
            metrics.RUNS.labels(command.model_name, "redelivered").inc()
            return [Emit(TRAINED, done, key=done.data.model_name)]
        deps.running.start(event.id)
        try:
            kept = deps.runs.record(event.id, run_exclusively(deps, event))
        finally:
            deps.running.finish(event.id)
        if isinstance(kept.data, TrainingFailed):
            metrics.RUNS.labels(command.model_name, kept.data.outcome).inc()
        else:
            metrics.RUNS.labels(command.model_name, "trained").inc()
            log.info(
                "trained %s run %s: %s",
                command.model_name,
                kept.data.run_id,
                kept.data.evaluation.metrics,
            )
        return [Emit(TRAINED, kept, key=kept.data.model_name)]

    return handle


def retrain_command(
    deps: Deps, label: Event[LabelRecorded], position: SourcePosition, labels: int
) -> Event[TrainModel] | None:
    """The data_volume TrainModel due after a dataset's `labels`-th label, if one is due."""
    every = deps.retrain_every_labels
    if labels % every != 0:
        return None
    dataset = label.data.dataset
    model_name = deps.model_name_for(dataset)
    if not re.match(MODEL_NAME, model_name):
        log.warning("dataset %r has no valid model name (%r): no retraining", dataset, model_name)
        return None
    command = TrainModel(
        model_name=model_name,
        dataset=dataset,
        trigger=TrainingTrigger(
            kind="data_volume",
            event_id=label.id,
            reason=f"{labels} labels of {dataset}: {every} new since the last retraining",
        ),
    )
    return Event[TrainModel](
        id=derived_id("retrain", position.topic, str(position.partition), str(position.offset)),
        source=SOURCE,
        type=TrainModel.event_type,
        subject=model_name,
        correlationid=label.correlationid or label.id,
        causationid=label.id,
        data=command,
    )


def count_label(deps: Deps) -> Handler:
    def handle(event: Event[Any], info: MessageInfo) -> list[Emit]:
        position = SourcePosition(topic=info.topic, partition=info.partition, offset=info.offset)
        command = deps.labels.count(
            event.data.dataset, position, lambda n: retrain_command(deps, event, position, n)
        )
        if command is None:
            return []
        metrics.RETRAINS_TRIGGERED.labels(command.data.dataset).inc()
        log.info(
            "%s: data-volume retraining of %s", command.data.trigger.reason, command.data.model_name
        )
        return [Emit(COMMANDS, command, key=command.data.model_name)]

    return handle


def command_routes(deps: Deps) -> list[Route]:
    return [Route(COMMANDS, (TrainModel,), train_model(deps), emits=(TRAINED,))]


def label_routes(deps: Deps) -> list[Route]:
    return [Route(LABELS, (LabelRecorded,), count_label(deps), emits=(COMMANDS,))]


def routes(deps: Deps) -> list[Route]:
    """Both routes; bootstrap runs them in two consumer groups, so a long training never holds
    up the counting of labels."""
    return command_routes(deps) + label_routes(deps)
