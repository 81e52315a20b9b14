"""What monitoring consumes and emits.

    data.validated (RecordValidated)      -> feature detectors (each numeric feature), the
                                             out-of-range and rejection rates; a label carried
                                             by the record is joined like a LabelRecorded
    data.rejected (RecordRejected)        -> the dataset's rejection rate
    serving.predictions (PredictionServed) -> prediction detector; waits for its label
    data.labels (LabelRecorded)           -> joined with its prediction: error detector, the
                                             error against the training holdout's
    models.trained (ModelTrained, TrainingFailed)  -> the outcome of a retrain it triggered
    models.lifecycle (ModelRegistered, ModelPromoted, ModelRejected, ...) -> its version's fate

A retrain's outcome is tied to its decision by the TrainModel's id (ModelTrained.run_id or its
causation id; TrainingFailed.command_id; then the registry's ModelRegistered.run_id, and
ModelPromoted / ModelRejected by model and version). A failed or refused retrain is undone in
the policy (no cooldown, not counted by the breaker) and its episode re-armed. A feature drift
before any model of the dataset served is recorded (decision "ignore"), never a retrain.

A drift found on any signal becomes a DriftDetected on monitoring.drift (keyed by model name)
and a decision of the retraining policy, kept in SQL; a "trigger" decision publishes a
TrainModel (trigger kind "drift", event_id the DriftDetected's id, since its event time) on
training.requests, caused by the episode's DriftDetected (its correlation and causation ids),
also when the label that completes the episode triggers it.

Tracing: a DriftDetected is published in the trace of the message that produced it (the
consumer's span); the retrain decision is a "retrain" span in that same trace, and its
TrainModel is published under it, so one trace runs DriftDetected -> training -> registry ->
serving's swap. When a later message (a label completing the episode) decides the retrain,
the span links to that message's trace.

Two stages, so that several replicas give the results of one: the inputs above are read in
the group <namespace>.monitoring-router and published again on monitoring.inputs keyed by
dataset; that topic is read in the group <namespace>.monitoring, so one replica at a time owns
a dataset's detectors, label join and its models' policies, and a drift episode yields one
decision. models.trained and models.lifecycle are read by every replica in a group of its own.

Detector, join and policy state live in memory (the consumer threads compute under one lock;
HTTP reads under it too), and each monitoring.inputs partition's share of it is checkpointed
in SQL with the offset of the first input it does not hold (checkpoints.py): every
MLOPS_MONITORING_CHECKPOINT_EVERY inputs or CHECKPOINT_INTERVAL_S seconds once their offsets
are stored, and when the partition leaves the replica. A restarted process, or the replica a
partition moved to, restores it on the partition's first input (`deps.gate`) and applies the
inputs between the checkpoint and the committed offset to the state only (`replayer`: their
drifts, decisions and commands were written and published already), so detection goes on as
if uninterrupted. A message is computed once: what it produced (drifts, decisions, commands)
is kept until the SQL writes succeeded, so the runner's retries after a database error write
the same rows (ids derived from the message's position, written once) and never feed the
detectors twice.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, set_span_in_context

from services.monitoring import metrics
from services.monitoring.domain.monitor import Found, Monitor, Served
from services.monitoring.domain.policy import Decision, RetrainPolicy
from services.monitoring.domain.reference import TrainingReferences
from services.monitoring.domain.retrains import Retrain, RetrainResult
from services.monitoring.domain.series import PerformanceSeries
from shared.events.envelope import Event, utc_now
from shared.events.models import (
    DriftDetected,
    ModelDeployed,
    ModelPromoted,
    ModelRegistered,
    ModelRejected,
    ModelRolledBack,
    ModelTrained,
    PredictionServed,
    TrainingFailed,
    TrainingTrigger,
    TrainModel,
)
from shared.events.records import LabelRecorded, RecordRejected, RecordValidated
from shared.kafka.consumer import Emit, Handler, MessageInfo
from shared.kafka.routes import Route

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

SOURCE: Final = "monitoring"
DRIFT: Final = "monitoring.drift"
COMMANDS: Final = "training.requests"
EMITS: Final = (DRIFT, COMMANDS)
_IDS = uuid.UUID("0c6f4f1e-3b7a-4d55-9a0e-2f8c1d7b6a41")


class PartitionGate(Protocol):
    """Says whether an input of monitoring.inputs is applied (False: its partition's state,
    restored from a checkpoint, already holds it); may restore that state first."""

    def admit(self, event: Event[Any], info: MessageInfo) -> bool: ...


class History(Protocol):
    """Where drifts, decisions and performance snapshots are kept (SQL in production)."""

    def record_drift(self, event: Event[DriftDetected]) -> None: ...
    def record_decision(
        self, decision_id: str, decision: Decision, command_id: str | None
    ) -> None: ...
    def record_performance(self, at: float, rows: list[dict[str, Any]]) -> None: ...
    def record_result(self, result: RetrainResult) -> None: ...
    def recent_drifts(self, limit: int) -> list[dict[str, Any]]: ...
    def recent_decisions(self, limit: int) -> list[dict[str, Any]]: ...
    def recent_results(self, limit: int) -> list[dict[str, Any]]: ...
    def performance_history(self, limit: int) -> list[dict[str, Any]]: ...
    def model_performance(self, model: str, per_version: int) -> list[dict[str, Any]]: ...


@dataclass
class Deps:
    monitor: Monitor
    policy: RetrainPolicy
    history: History
    history_every: int = 100
    retrain_since_drift: bool = True
    references: TrainingReferences | None = None
    series: PerformanceSeries | None = None
    """The latest snapshots per version in memory (GET /performance/{model}/history)."""
    clock: Callable[[], float] = time.time
    lock: threading.Lock = field(default_factory=threading.Lock)
    gate: PartitionGate | None = None
    _since_snapshot: int = 0
    _unsaved: dict[tuple[str, int, int], Outcome] = field(default_factory=dict)
    _episode_drifts: OrderedDict[str, tuple[Event[DriftDetected], SpanContext]] = field(
        default_factory=OrderedDict
    )
    _retrains: OrderedDict[str, Retrain] = field(default_factory=OrderedDict)
    _retrain_versions: dict[tuple[str, int], str] = field(default_factory=dict)

    def remember_retrain(self, retrain: Retrain, keep: int = 1000) -> None:
        self._retrains[retrain.command_id] = retrain
        while len(self._retrains) > keep:
            self._retrains.popitem(last=False)

    def retrain(self, *ids: str | None) -> Retrain | None:
        for found in (self._retrains.get(i) for i in ids if i):
            if found is not None:
                return found
        return None

    def remember_drift(self, drift: Event[DriftDetected], keep: int = 1000) -> None:
        """A drift that may start an episode: its trigger, later, is caused by this event (and
        links to the trace it is published in, the current one)."""
        self._episode_drifts[drift.id] = (drift, trace.get_current_span().get_span_context())
        while len(self._episode_drifts) > keep:
            self._episode_drifts.popitem(last=False)

    def episode_drift(self, drift_id: str) -> Event[DriftDetected] | None:
        kept = self._episode_drifts.get(drift_id)
        return kept[0] if kept is not None else None

    def drift_trace(self, drift_id: str) -> SpanContext | None:
        kept = self._episode_drifts.get(drift_id)
        return kept[1] if kept is not None and kept[1].is_valid else None


@dataclass
class Outcome:
    """What one message produced, before it is written to SQL and published."""

    drifts: list[Event[DriftDetected]] = field(default_factory=list)
    decisions: list[tuple[str, Decision, Event[TrainModel] | None]] = field(default_factory=list)
    results: list[RetrainResult] = field(default_factory=list)
    snapshot: tuple[float, list[dict[str, Any]]] | None = None
    retrain_spans: dict[str, SpanContext] = field(default_factory=dict)
    """Command id -> the "retrain" span it is published under (in its drift's trace)."""

    def emits(self) -> list[Emit]:
        out = [Emit(DRIFT, drift, key=drift.data.model_name) for drift in self.drifts]
        out += [
            Emit(COMMANDS, c, key=c.data.model_name, parent=self.retrain_spans.get(c.id))
            for _, _, c in self.decisions
            if c
        ]
        return out


Compute = Callable[[Event[Any], MessageInfo], Outcome]
"""What one input does to the state, and what it produced (to write and publish)."""

INPUTS: Final = "monitoring.inputs"
FORWARDED: Final[tuple[tuple[str, type[Any]], ...]] = (
    ("data.validated", RecordValidated),
    ("serving.predictions", PredictionServed),
    ("data.labels", LabelRecorded),
    ("data.rejected", RecordRejected),
)


def forwarding_routes() -> list[Route]:
    """The first stage: every input again on monitoring.inputs, keyed by its dataset, so that
    one replica (the owner of that partition) holds all of a dataset's state."""
    return [
        Route(topic, (payload,), forward_by_dataset, emits=(INPUTS,))
        for topic, payload in FORWARDED
    ]


def forward_by_dataset(event: Event[Any], info: MessageInfo) -> list[Emit]:
    dataset = event.data.dataset
    return [] if dataset is None else [Emit(INPUTS, event, key=dataset)]


def routes(deps: Deps) -> list[Route]:
    """The second stage: a dataset's records, rejections, predictions and labels, in the
    order of their partition of monitoring.inputs."""
    observers = {payload: _once(deps, compute) for payload, compute in computes(deps).items()}

    def observe(event: Event[Any], info: MessageInfo) -> Any:
        if deps.gate is not None and not deps.gate.admit(event, info):
            return []
        return observers[type(event.data)](event, info)

    return [Route(INPUTS, tuple(observers), observe, emits=EMITS)]


def computes(deps: Deps) -> dict[type[Any], Compute]:
    """What each input does to the state (detectors, join, policy), and what it produced."""
    return {
        RecordValidated: _record_compute(deps),
        PredictionServed: _prediction_compute(deps),
        LabelRecorded: _label_compute(deps),
        RecordRejected: _rejected_compute(deps),
    }


def replayer(deps: Deps) -> Callable[[Event[Any], MessageInfo], None]:
    """Applies an input to the state again without writing or publishing what it produced
    (it was, when the input was first handled): rebuilds the state from a checkpoint. The
    caller holds `deps.lock`."""
    by_payload = computes(deps)

    def replay(event: Event[Any], info: MessageInfo) -> None:
        by_payload[type(event.data)](event, info)

    return replay


def model_routes(deps: Deps) -> list[Route]:
    """Retrain outcomes and lifecycle events, read by every replica (a group of its own):
    only the one that decided a retrain knows it, and every one learns which models serve."""
    return [
        Route(
            "models.trained", (ModelTrained, TrainingFailed), observe_training(deps), emits=EMITS
        ),
        Route(
            "models.lifecycle",
            (ModelRegistered, ModelPromoted, ModelRejected, ModelRolledBack, ModelDeployed),
            observe_lifecycle(deps),
            emits=EMITS,
        ),
    ]


def observe_record(deps: Deps) -> Handler:
    return _once(deps, _record_compute(deps))


def _record_compute(deps: Deps) -> Compute:
    def compute(event: Event[Any], info: MessageInfo) -> Outcome:
        record: RecordValidated = event.data
        found = deps.monitor.observe_record(
            record.dataset, record.values, record.event_time, record.out_of_range
        )
        outcome = _on_drifts(deps, found, event, info, Outcome())
        if record.label is not None:  # spec arrival with_record: the one label path
            _label(deps, outcome, record.dataset, record.record_id, record.label, event, info)
        return outcome

    return compute


def observe_rejected(deps: Deps) -> Handler:
    return _once(deps, _rejected_compute(deps))


def _rejected_compute(deps: Deps) -> Compute:
    def compute(event: Event[Any], info: MessageInfo) -> Outcome:
        rejected: RecordRejected = event.data
        if rejected.dataset is None:
            return Outcome()
        found = deps.monitor.observe_rejected(rejected.dataset, None)
        return _on_drifts(deps, found, event, info, Outcome())

    return compute


def observe_prediction(deps: Deps) -> Handler:
    return _once(deps, _prediction_compute(deps))


def _prediction_compute(deps: Deps) -> Compute:
    def compute(event: Event[Any], info: MessageInfo) -> Outcome:
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
        now = deps.clock()
        found, labelled = deps.monitor.observe_prediction(kept, now)
        if deps.references is not None:
            deps.references.observe(served.model_name, served.version, served.features)
        outcome = _on_drifts(deps, found, event, info, Outcome())
        _count_labelled(deps, outcome, labelled, info, now)
        return outcome

    return compute


def observe_label(deps: Deps) -> Handler:
    return _once(deps, _label_compute(deps))


def _label_compute(deps: Deps) -> Compute:
    def compute(event: Event[Any], info: MessageInfo) -> Outcome:
        label: LabelRecorded = event.data
        outcome = Outcome()
        _label(deps, outcome, label.dataset, label.record_id, label.label, event, info)
        return outcome

    return compute


def _label(
    deps: Deps,
    outcome: Outcome,
    dataset: str,
    record_id: str,
    label: Any,
    event: Event[Any],
    info: MessageInfo,
) -> None:
    """A label, late (LabelRecorded) or carried by its record (RecordValidated): the join, the
    error detectors, performance and the policy's minimum labels see both alike."""
    now = deps.clock()
    found, labelled = deps.monitor.observe_label(dataset, record_id, label, now)
    _on_drifts(deps, found, event, info, outcome)
    _count_labelled(deps, outcome, labelled, info, now)


def _count_labelled(
    deps: Deps, outcome: Outcome, labelled: list[Served], info: MessageInfo, now: float
) -> None:
    """Predictions that just got their label, whichever of the two came last: the policy's
    minimum labels after a drift and the performance snapshots count them."""
    for served in labelled:
        decision = deps.policy.on_label(served.model_name, now)
        if decision is not None:
            drift = deps.episode_drift(decision.drift_id)
            _decided(deps, outcome, decision, served.dataset, drift, info)
    if labelled:
        deps._since_snapshot += 1
        if deps._since_snapshot >= deps.history_every:
            deps._since_snapshot = 0
            outcome.snapshot = (now, deps.monitor.performance())
            if deps.series is not None:
                deps.series.add(*outcome.snapshot)


def observe_training(deps: Deps) -> Handler:
    """ModelTrained or TrainingFailed: the outcome of a retrain monitoring triggered."""

    def compute(event: Event[Any], info: MessageInfo) -> Outcome:
        outcome = Outcome()
        data = event.data
        now = deps.clock()
        if isinstance(data, TrainingFailed):
            retrain = deps.retrain(data.command_id, event.causationid)
            if retrain is None:
                return outcome
            why = f"{data.error}: {data.reason}"
            outcome.results.append(_result(event, retrain, data.outcome, now, detail=why))
            decision = deps.policy.on_retrain_failed(retrain.model_name, retrain.drift_id, why, now)
            if decision is not None:
                drift = deps.episode_drift(retrain.drift_id)
                _decided(deps, outcome, decision, retrain.dataset, drift, info)
            return outcome
        trained: ModelTrained = data
        retrain = deps.retrain(trained.run_id, event.causationid)
        if retrain is None:
            return outcome
        deps.policy.on_retrain_done(retrain.model_name, retrain.drift_id)
        metric = trained.evaluation.primary_metric
        value = trained.evaluation.metrics.get(metric)
        detail = f"run {trained.run_id}" + (f", {metric} {value:.4g}" if value is not None else "")
        outcome.results.append(_result(event, retrain, "trained", now, detail=detail))
        return outcome

    return _once(deps, compute)


def observe_lifecycle(deps: Deps) -> Handler:
    """The registry's verdict on a retrained version; champions mark their dataset served."""

    def compute(event: Event[Any], info: MessageInfo) -> Outcome:
        outcome = Outcome()
        data = event.data
        now = deps.clock()
        if isinstance(data, ModelPromoted | ModelRolledBack | ModelDeployed):
            deps.monitor.champion_known(data.model_name)
        if isinstance(data, ModelRegistered):
            retrain = deps.retrain(data.run_id)
            if retrain is not None:
                deps._retrain_versions[(data.model_name, data.version)] = retrain.command_id
                outcome.results.append(_result(event, retrain, "registered", now, data.version))
        elif isinstance(data, ModelPromoted | ModelRejected):
            command_id = deps._retrain_versions.get((data.model_name, data.version))
            retrain = deps.retrain(command_id)
            if retrain is not None:
                verdict = "promoted" if isinstance(data, ModelPromoted) else "rejected"
                outcome.results.append(
                    _result(event, retrain, verdict, now, data.version, data.reason)
                )
        return outcome

    return _once(deps, compute)


def _result(
    event: Event[Any],
    retrain: Retrain,
    outcome: str,
    now: float,
    version: int | None = None,
    detail: str = "",
) -> RetrainResult:
    return RetrainResult(
        result_id=event.id,
        command_id=retrain.command_id,
        model_name=retrain.model_name,
        drift_id=retrain.drift_id,
        outcome=outcome,
        at=now,
        version=version,
        detail=detail,
    )


def _once(deps: Deps, compute: Callable[[Event[Any], MessageInfo], Outcome]) -> Handler:
    """Computes a message's outcome once, writes it to SQL, and returns what to publish."""

    def handle(event: Event[Any], info: MessageInfo) -> list[Emit]:
        key = (info.topic, info.partition, info.offset)
        with deps.lock:
            outcome = deps._unsaved.get(key)
            if outcome is None:
                outcome = deps._unsaved[key] = compute(event, info)
        _save(deps.history, outcome)
        with deps.lock:
            deps._unsaved.pop(key, None)
        return outcome.emits()

    return handle


def _save(history: History, outcome: Outcome) -> None:
    for drift in outcome.drifts:
        history.record_drift(drift)
    for decision_id, decision, command in outcome.decisions:
        history.record_decision(decision_id, decision, command.id if command else None)
    if outcome.snapshot is not None:
        history.record_performance(*outcome.snapshot)
    for result in outcome.results:
        history.record_result(result)
    _count(outcome)


def _count(outcome: Outcome) -> None:
    for drift in outcome.drifts:
        metrics.DRIFTS.labels(drift.data.model_name, drift.data.signal_kind).inc()
    for _, decision, _ in outcome.decisions:
        metrics.DECISIONS.labels(decision.model_name, decision.action).inc()
        metrics.BREAKER_OPEN.labels(decision.model_name).set(int(decision.breaker_open))
    if outcome.snapshot is not None:
        for row in outcome.snapshot[1]:
            labels = (row["model_name"], str(row["model_version"]))
            if row.get("last_1000") is not None:
                metrics.ACCURACY.labels(*labels).set(row["last_1000"])
            if row.get("last_1000_mae") is not None:
                metrics.MAE.labels(*labels).set(row["last_1000_mae"])


def _on_drifts(
    deps: Deps, found: list[Found], cause: Event[Any], info: MessageInfo, outcome: Outcome
) -> Outcome:
    for item in found:
        drift = _drift_event(item, cause, info)
        log.info(
            "drift on %s/%s v%s %s at %d",
            item.dataset,
            item.model_name,
            item.model_version,
            item.drift.signal,
            item.drift.position,
        )
        outcome.drifts.append(drift)
        deps.remember_drift(drift)
        if item.model_version is None and not deps.monitor.has_served(item.dataset):
            why = "no model served yet (a data-quality signal, not a retrain trigger)"
            decision = deps.policy.ignore(item.model_name, drift.id, why, deps.clock())
        else:
            decision = deps.policy.on_drift(item.model_name, drift.id, deps.clock())
        _decided(deps, outcome, decision, item.dataset, deps.episode_drift(decision.drift_id), info)
    return outcome


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
    deps: Deps,
    outcome: Outcome,
    decision: Decision,
    dataset: str,
    drift: Event[DriftDetected] | None,
    info: MessageInfo,
) -> None:
    where = f"{info.topic}/{info.partition}/{info.offset}/decision/{len(outcome.decisions)}"
    decision_id = str(uuid.uuid5(_IDS, where))
    log.info("retrain %s for %s: %s", decision.action, decision.model_name, decision.reason)
    if decision.action != "trigger":
        outcome.decisions.append((decision_id, decision, None))
        return
    since = drift.data.event_time if drift is not None and deps.retrain_since_drift else None
    # The retrain runs in the drift's trace (DriftDetected -> training -> registry -> serving);
    # when a later message (a label completing the episode) decides it, it links to that one.
    drift_trace = deps.drift_trace(decision.drift_id)
    deciding = trace.get_current_span().get_span_context()
    links = []
    if drift_trace is not None and deciding.is_valid and deciding != drift_trace:
        links.append(Link(deciding, {"mlops.decided_by": f"{info.topic}/{info.offset}"}))
    with _tracer.start_as_current_span(
        f"retrain {decision.model_name}",
        context=set_span_in_context(NonRecordingSpan(drift_trace)) if drift_trace else None,
        links=links,
        attributes={"mlops.model": decision.model_name, "mlops.drift_id": decision.drift_id},
    ) as span:
        command = _command(decision, dataset, drift, since, decision_id)
    outcome.retrain_spans[command.id] = span.get_span_context()
    outcome.decisions.append((decision_id, decision, command))
    deps.remember_retrain(Retrain(command.id, decision.model_name, dataset, decision.drift_id))


def _command(
    decision: Decision,
    dataset: str,
    drift: Event[DriftDetected] | None,
    since: datetime | None,
    decision_id: str,
) -> Event[TrainModel]:
    command = Event[TrainModel].create(
        TrainModel(
            model_name=decision.model_name,
            dataset=dataset,
            trigger=TrainingTrigger(
                kind="drift", event_id=decision.drift_id, reason=decision.reason, since=since
            ),
        ),
        source=SOURCE,
        subject=decision.model_name,
        caused_by=drift,
    )
    return command.model_copy(update={"id": str(uuid.uuid5(_IDS, f"{decision_id}/command"))})
