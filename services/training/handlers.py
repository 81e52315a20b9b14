"""What training consumes and emits.

    training.requests (TrainModel)  -> models.trained (ModelTrained), one per command
    data.labels (LabelRecorded)     -> training.requests (TrainModel, data_volume) after every
                                       MLOPS_TRAINING_RETRAIN_EVERY_LABELS labels of a dataset

Commands are keyed by model name, so one model trains at a time and its commands queue in
order. A command is trained once: its ModelTrained is kept in SQL by command id, and a
redelivery re-emits that same event (same event id). A refused command (bad estimator,
unknown dataset, too little data) is refused again at once on the runner's retries, without
training, and then goes to the dead-letter topic with the reason.

HTTP publishes TrainModel commands too: PUBLISHES.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from services.training import metrics
from services.training.adapters.errors import DependencyRefused
from services.training.domain.errors import TrainingRefused
from shared.events.envelope import Event
from shared.events.models import MODEL_NAME, ModelTrained, TrainingTrigger, TrainModel
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


class Train(Protocol):
    def train(self, command: Event[TrainModel]) -> ModelTrained: ...


class Runs(Protocol):
    def finished(self, command_id: str) -> Event[ModelTrained] | None: ...
    def record(self, command_id: str, trained: Event[ModelTrained]) -> Event[ModelTrained]: ...


Decide = Callable[[int], Event[TrainModel] | None]


class LabelCounter(Protocol):
    def count(
        self, dataset: str, position: SourcePosition, decide: Decide
    ) -> Event[TrainModel] | None: ...


class RefusalMemory:
    """The last refusals by command id, so the runner's retries of a refused command fail at
    once instead of fetching and training again."""

    def __init__(self, size: int = 1000) -> None:
        self._size = size
        self._refusals: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, command_id: str, refusal: Exception) -> None:
        with self._lock:
            self._refusals[command_id] = f"{type(refusal).__name__}: {refusal}"
            while len(self._refusals) > self._size:
                self._refusals.popitem(last=False)

    def recall(self, command_id: str) -> str | None:
        with self._lock:
            return self._refusals.get(command_id)


@dataclass
class Deps:
    trainer: Train
    runs: Runs
    labels: LabelCounter
    retrain_every_labels: int = 5000
    model_name_for: Callable[[str], str] = lambda dataset: dataset
    refusals: RefusalMemory = field(default_factory=RefusalMemory)


class CommandRefused(TrainingRefused):
    """A command refused earlier, refused again without another attempt."""


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


def train_model(deps: Deps) -> Handler:
    def handle(event: Event[Any], info: MessageInfo) -> list[Emit]:
        command: TrainModel = event.data
        done = deps.runs.finished(event.id)
        if done is not None:
            log.info(
                "command %s was trained already (run %s): re-emitting", event.id, done.data.run_id
            )
            metrics.RUNS.labels(command.model_name, "redelivered").inc()
            return [Emit(TRAINED, done, key=done.data.model_name)]
        refused = deps.refusals.recall(event.id)
        if refused is not None:
            raise CommandRefused(refused)
        try:
            with metrics.RUN_SECONDS.labels(command.model_name).time():
                payload = deps.trainer.train(event)
        except (TrainingRefused, DependencyRefused) as refusal:
            log.error("command %s for %s refused: %s", event.id, command.model_name, refusal)
            metrics.RUNS.labels(command.model_name, "refused").inc()
            deps.refusals.remember(event.id, refusal)
            raise
        kept = deps.runs.record(event.id, trained_event(event, payload))
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
