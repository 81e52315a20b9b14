"""What monitoring consumes and emits.

    data.validated (RecordValidated)      -> feature detectors (each numeric feature)
    serving.predictions (PredictionServed) -> prediction detector; waits for its label
    data.labels (LabelRecorded)           -> joined with its prediction: error detector

A drift found on any signal becomes a DriftDetected on monitoring.drift (keyed by model name)
and a decision of the retraining policy, kept in SQL; a "trigger" decision publishes a
TrainModel (trigger kind "drift", event_id the DriftDetected's id) on training.requests.

Detector, join and policy state live in memory (one consumer thread; HTTP reads under the
lock); a restart starts them afresh from the group's committed offsets. DriftDetected ids
derive from the message that raised them, so a redelivery re-emits the same id.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from services.monitoring.domain.monitor import Found, Monitor, Served
from services.monitoring.domain.policy import Decision, RetrainPolicy
from shared.events.envelope import Event, utc_now
from shared.events.models import DriftDetected, PredictionServed, TrainingTrigger, TrainModel
from shared.events.records import LabelRecorded, RecordValidated
from shared.kafka.consumer import Emit, Handler, MessageInfo
from shared.kafka.routes import Route

log = logging.getLogger(__name__)

SOURCE: Final = "monitoring"
DRIFT: Final = "monitoring.drift"
COMMANDS: Final = "training.requests"
EMITS: Final = (DRIFT, COMMANDS)
_IDS = uuid.UUID("0c6f4f1e-3b7a-4d55-9a0e-2f8c1d7b6a41")


class History(Protocol):
    """Where drifts, decisions and performance snapshots are kept (SQL in production)."""

    def record_drift(self, event: Event[DriftDetected]) -> None: ...
    def record_decision(self, decision: Decision, command_id: str | None) -> None: ...
    def record_performance(self, at: float, rows: list[dict[str, Any]]) -> None: ...
    def recent_drifts(self, limit: int) -> list[dict[str, Any]]: ...
    def recent_decisions(self, limit: int) -> list[dict[str, Any]]: ...
    def performance_history(self, limit: int) -> list[dict[str, Any]]: ...


@dataclass
class Deps:
    monitor: Monitor
    policy: RetrainPolicy
    history: History
    history_every: int = 100
    clock: Callable[[], float] = time.time
    lock: threading.Lock = field(default_factory=threading.Lock)
    _since_snapshot: int = 0


def routes(deps: Deps) -> list[Route]:
    return [
        Route("data.validated", (RecordValidated,), observe_record(deps), emits=EMITS),
        Route("serving.predictions", (PredictionServed,), observe_prediction(deps), emits=EMITS),
        Route("data.labels", (LabelRecorded,), observe_label(deps), emits=EMITS),
    ]


def observe_record(deps: Deps) -> Handler:
    def handle(event: Event[Any], info: MessageInfo) -> list[Emit]:
        record: RecordValidated = event.data
        with deps.lock:
            found = deps.monitor.observe_record(record.dataset, record.values, record.event_time)
            return _on_drifts(deps, found, event, info)

    return handle


def observe_prediction(deps: Deps) -> Handler:
    def handle(event: Event[Any], info: MessageInfo) -> list[Emit]:
        served: PredictionServed = event.data
        kept = Served(
            dataset=served.dataset,
            model_name=served.model_name,
            version=served.version,
            record_id=served.record_id,
            prediction=served.prediction,
            shadow=served.shadow,
            served_at=served.served_at,
        )
        with deps.lock:
            found = deps.monitor.observe_prediction(kept, deps.clock())
            return _on_drifts(deps, found, event, info)

    return handle


def observe_label(deps: Deps) -> Handler:
    def handle(event: Event[Any], info: MessageInfo) -> list[Emit]:
        label: LabelRecorded = event.data
        with deps.lock:
            now = deps.clock()
            found, labelled = deps.monitor.observe_label(
                label.dataset, label.record_id, label.label, now
            )
            emits = _on_drifts(deps, found, event, info)
            for served in labelled:
                decision = deps.policy.on_label(served.model_name, now)
                if decision is not None:
                    emits.extend(_decided(deps, decision, served.dataset, None))
            if labelled:
                deps._since_snapshot += 1
                if deps._since_snapshot >= deps.history_every:
                    deps._since_snapshot = 0
                    deps.history.record_performance(now, deps.monitor.performance())
            return emits

    return handle


def _on_drifts(deps: Deps, found: list[Found], cause: Event[Any], info: MessageInfo) -> list[Emit]:
    emits: list[Emit] = []
    for item in found:
        drift = _drift_event(item, cause, info)
        deps.history.record_drift(drift)
        log.info(
            "drift on %s/%s v%s %s at %d",
            item.dataset,
            item.model_name,
            item.model_version,
            item.drift.signal,
            item.drift.position,
        )
        emits.append(Emit(DRIFT, drift, key=item.model_name))
        decision = deps.policy.on_drift(item.model_name, drift.id, deps.clock())
        emits.extend(_decided(deps, decision, item.dataset, drift))
    return emits


def _drift_event(item: Found, cause: Event[Any], info: MessageInfo) -> Event[DriftDetected]:
    drift = item.drift
    payload = DriftDetected(
        dataset=item.dataset,
        model_name=item.model_name,
        model_version=item.model_version,
        signal=drift.signal,
        signal_kind=drift.signal_kind,
        detector=drift.detector,
        detector_params=drift.detector_params,
        position=drift.position,
        detected_at=utc_now(),
        event_time=item.event_time,
        reference=drift.reference,
        current=drift.current,
    )
    event = Event[DriftDetected].create(
        payload, source=SOURCE, subject=item.model_name, caused_by=cause
    )
    where = f"{info.topic}/{info.partition}/{info.offset}/{item.model_version}/{drift.signal}"
    return event.model_copy(update={"id": str(uuid.uuid5(_IDS, where))})


def _decided(
    deps: Deps, decision: Decision, dataset: str, drift: Event[DriftDetected] | None
) -> list[Emit]:
    if decision.action != "trigger":
        deps.history.record_decision(decision, None)
        log.info("retrain %s for %s: %s", decision.action, decision.model_name, decision.reason)
        return []
    command = Event[TrainModel].create(
        TrainModel(
            model_name=decision.model_name,
            dataset=dataset,
            trigger=TrainingTrigger(
                kind="drift", event_id=decision.drift_id, reason=decision.reason
            ),
        ),
        source=SOURCE,
        subject=decision.model_name,
        caused_by=drift,
    )
    deps.history.record_decision(decision, command.id)
    log.info("retrain triggered for %s: %s", decision.model_name, decision.reason)
    return [Emit(COMMANDS, command, key=decision.model_name)]
