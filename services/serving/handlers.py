"""What serving consumes and publishes.

It consumes models.lifecycle: a ModelPromoted or ModelRolledBack naming a model's champion
(or challenger, in shadow mode) swaps that version in (services/serving/loading.py), for any
model, including one serving has never heard of (unless MLOPS_SERVING_MODELS leaves it out);
the other lifecycle events (ModelRegistered, ModelRejected, ModelDeployed) are read and left
alone. The handler emits nothing itself; a version actually swapped in is announced as a
ModelDeployed on models.lifecycle (`deployed_event`, keyed "<model>:<version>:deployed:<instance>"
so compaction keeps every instance's deployment beside the version's promotion), in the trace
of the promotion it followed.

It publishes serving.predictions from the request path (PUBLISHES): one PredictionServed per
record scored, keyed by the record id when the record has one (so predictions land on the
partition of their labels, which data.labels keys by record id), else by the request id.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from services.serving.domain.served import Scored
from services.serving.domain.slots import Change, Verdict
from shared.events.envelope import Event
from shared.events.models import (
    ModelDeployed,
    ModelPromoted,
    ModelRegistered,
    ModelRejected,
    ModelRolledBack,
    PredictionServed,
)
from shared.events.records import FieldValue
from shared.kafka.consumer import Emit, Handler, MessageInfo
from shared.kafka.routes import Route

SOURCE: Final = "serving"
CONSUMES: Final = "models.lifecycle"
PREDICTIONS: Final = "serving.predictions"
PUBLISHES: Final = (PREDICTIONS,)
LIFECYCLE: Final = CONSUMES
LIFECYCLE_EVENTS: Final = (
    ModelRegistered,
    ModelPromoted,
    ModelRejected,
    ModelRolledBack,
    ModelDeployed,
)


class Loader(Protocol):
    def apply(self, change: Change) -> Verdict | None: ...


@dataclass(frozen=True)
class Deps:
    loader: Loader
    serves: Callable[[str], bool]
    aliases: Collection[str]


def change_of(event: Event[Any]) -> Change | None:
    """The alias change a lifecycle event makes, if it makes one."""
    data = event.data
    if isinstance(data, ModelPromoted | ModelRolledBack):
        return Change(
            model=data.model_name,
            alias=data.alias,
            version=data.version,
            artifact=data.artifact,
            event_id=event.id,
            rollback=isinstance(data, ModelRolledBack),
        )
    return None


def deployed_event(change: Change, instance: str) -> Emit:
    """The ModelDeployed announcing that `instance` serves the change's version now."""
    payload = ModelDeployed(
        model_name=change.model,
        version=change.version,
        alias=change.alias,
        instance=instance,
        artifact=change.artifact,
        cause_event_id=change.event_id,
        deployed_at=datetime.now(UTC),
    )
    key = f"{change.model}:{change.version}:deployed:{instance}"
    return Emit(LIFECYCLE, Event.create(payload, source=SOURCE, subject=change.model), key=key)


def swap_model(deps: Deps) -> Handler:
    def handle(event: Event[Any], info: MessageInfo) -> None:
        change = change_of(event)
        if change is not None and change.alias in deps.aliases and deps.serves(change.model):
            deps.loader.apply(change)

    return handle


def routes(deps: Deps) -> list[Route]:
    return [Route(CONSUMES, LIFECYCLE_EVENTS, swap_model(deps), emits=())]


@dataclass(frozen=True, slots=True)
class LoggedPrediction:
    """One scored record, as the prediction log publishes it."""

    request_id: str
    model: str
    version: int
    dataset: str
    record_id: str | None
    entity: str | None
    features: dict[str, FieldValue]
    scored: Scored
    latency_ms: float
    served_at: datetime
    shadow: bool = False


def log_prediction(logged: LoggedPrediction) -> Emit:
    """The PredictionServed event of one scored record."""
    payload = PredictionServed(
        request_id=logged.request_id,
        model_name=logged.model,
        version=logged.version,
        dataset=logged.dataset,
        record_id=logged.record_id,
        entity=logged.entity,
        features=logged.features,
        prediction=logged.scored.prediction,
        probabilities=logged.scored.probabilities,
        latency_ms=logged.latency_ms,
        shadow=logged.shadow,
        served_at=logged.served_at,
    )
    key = logged.record_id or logged.request_id
    return Emit(PREDICTIONS, Event.create(payload, source=SOURCE, subject=key), key=key)
