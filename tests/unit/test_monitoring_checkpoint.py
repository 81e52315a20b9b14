"""Checkpoints of monitoring's partition state: a state exported mid-stream and imported
elsewhere goes on exactly as the uninterrupted one; a restore re-applies the inputs between
the checkpoint and the committed offset without writing or publishing anything again."""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.monitoring.checkpoints import (
    Checkpoints,
    UnreadableCheckpoint,
    dumps,
    export_state,
    import_state,
    loads,
)
from services.monitoring.domain.join import LabelJoin
from services.monitoring.domain.monitor import Monitor, Served
from services.monitoring.domain.policy import PolicyConfig, RetrainPolicy
from services.monitoring.handlers import Deps, routes
from services.monitoring.settings import MonitoringSettings
from shared.events.envelope import Event
from shared.events.models import PredictionServed
from shared.events.records import LabelRecorded, RecordValidated, SourcePosition
from shared.failures import TransientError
from shared.kafka.consumer import MessageInfo
from tests.unit.test_monitoring_handlers import InMemoryHistory

START = datetime(2026, 1, 1, tzinfo=UTC)
TOPIC = "ns.monitoring.inputs"
DRIFT, COMMANDS = "monitoring.drift", "training.requests"
ROWS, DRIFT_ROW = 850, 600
Input = tuple[Event[Any], MessageInfo]
Output = tuple[int, str, str, Any]


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[Deps, InMemoryHistory, Clock]:
    config = MonitoringSettings(_env_file=None)  # type: ignore[call-arg]
    history, clock = InMemoryHistory(), Clock()
    deps = Deps(
        monitor=Monitor(config.detectors_for, config.model_name_for, LabelJoin[Served](600)),
        policy=RetrainPolicy(PolicyConfig(debounce_s=300, cooldown_s=0, min_labels_after_drift=20)),
        history=history,
        clock=clock,
    )
    return deps, history, clock


def inputs() -> list[Input]:
    """Per row a record, its prediction and its label, in one partition: from DRIFT_ROW on,
    salary shifts and the model is wrong far more often."""
    rng = random.Random(5)
    events: list[Event[Any]] = []
    for row in range(ROWS):
        drifted = row >= DRIFT_ROW
        at = START + timedelta(seconds=row)
        salary = rng.gauss(50_000 + (15_000 if drifted else 0), 10_000)
        predicted = rng.randint(0, 1)
        wrong = rng.random() < (0.45 if drifted else 0.1)
        record = RecordValidated(
            dataset="loans",
            spec_version=1,
            record_id=f"r{row}",
            entity="e",
            event_time=at,
            values={"salary": salary},
            source=SourcePosition(topic="raw", partition=0, offset=row),
        )
        served = PredictionServed(
            request_id=f"q{row}",
            model_name="loans",
            version=1,
            dataset="loans",
            record_id=f"r{row}",
            features={"salary": salary},
            prediction=predicted,
            latency_ms=1,
            served_at=at,
        )
        label = LabelRecorded(
            dataset="loans",
            record_id=f"r{row}",
            label=1 - predicted if wrong else predicted,
            labelled_at=at,
        )
        events += [Event.create(p, source="test") for p in (record, served, label)]
    return [(event, MessageInfo(TOPIC, 0, n, b"loans", None)) for n, event in enumerate(events)]


def feed(
    deps: Deps, clock: Clock, stream: list[Input], checkpoints: Checkpoints | None = None
) -> list[Output]:
    """The inputs through monitoring.inputs' handler, stored in batches of 50 as the runner
    does; what they published: (input offset, topic, event id, drift position)."""
    [route] = routes(deps)
    published: list[Output] = []
    for n, (event, info) in enumerate(stream, start=1):
        clock.now = 1000.0 + info.offset * 0.01
        for emit in route.handler(event, info) or ():
            position = getattr(emit.event.data, "position", None)
            published.append((info.offset, emit.topic, emit.event.id, position))
        if checkpoints is not None and (n % 50 == 0 or n == len(stream)):
            checkpoints.stored({(TOPIC, 0): info.offset + 1})
    return published


class MemoryStore:
    def __init__(self) -> None:
        self.kept: dict[tuple[str, str, int], tuple[int, bytes]] = {}

    def load_checkpoint(self, group: str, topic: str, partition: int) -> tuple[int, bytes] | None:
        return self.kept.get((group, topic, partition))

    def save_checkpoint(
        self, group: str, topic: str, partition: int, next_offset: int, state: bytes
    ) -> None:
        self.kept[(group, topic, partition)] = (next_offset, state)

    @property
    def offset(self) -> int:
        [(offset, _)] = self.kept.values()
        return offset


def checkpoints(deps: Deps, store: MemoryStore, log: list[Input], every: int) -> Checkpoints:
    def replay(partition: int, start: int, end: int) -> Iterator[Input]:
        return iter(
            [(e, i) for e, i in log if i.partition == partition and start <= i.offset < end]
        )

    gate = Checkpoints(deps, store, replay, "ns.monitoring", TOPIC, every, interval_s=1e9)
    deps.gate = gate
    return gate


@pytest.fixture(scope="module")
def stream() -> list[Input]:
    return inputs()


@pytest.fixture(scope="module")
def uninterrupted(stream: list[Input]) -> tuple[list[Output], InMemoryHistory, int]:
    """What one run publishes and writes, and a cut mid-episode: after the drift began in
    the inputs, before any detector caught it."""
    deps, history, clock = make()
    published = feed(deps, clock, stream)
    first_caught = min(offset for offset, topic, _, _ in published if topic == DRIFT)
    drift_begins = 3 * DRIFT_ROW
    assert first_caught > drift_begins + 30, "the detectors catch the drift a while after it"
    assert sum(1 for _, topic, _, _ in published if topic == COMMANDS) == 1
    return published, history, (drift_begins + first_caught) // 2


Run = tuple[list[Output], InMemoryHistory, int]


def test_an_exported_state_imported_elsewhere_goes_on_as_the_uninterrupted_one(
    stream: list[Input], uninterrupted: Run
) -> None:
    published, _, cut = uninterrupted
    first, _, clock = make()
    before = feed(first, clock, stream[:cut])
    blob = dumps(export_state(first, frozenset({"loans"})))
    second, _, clock = make()
    import_state(second, loads(blob))
    after = feed(second, clock, stream[cut:])
    assert before + after == published
    fresh, _, clock = make()
    assert before + feed(fresh, clock, stream[cut:]) != published, "the state matters"


def test_a_restore_reapplies_the_inputs_after_the_checkpoint_without_outputs(
    stream: list[Input], uninterrupted: Run
) -> None:
    published, history, cut = uninterrupted
    store = MemoryStore()
    first, first_history, clock = make()
    before = feed(first, clock, stream[:cut], checkpoints(first, store, stream, every=200))
    checkpointed = store.offset
    assert checkpointed < cut, "the crash comes after inputs the checkpoint does not hold"
    replayed = REGISTRY.get_sample_value("mlops_monitoring_checkpoint_replayed_total") or 0
    second, second_history, clock = make()
    after = feed(second, clock, stream[cut:], checkpoints(second, store, stream, every=200))
    assert before + after == published, "every output once, at the same place"
    replayed_now = REGISTRY.get_sample_value("mlops_monitoring_checkpoint_replayed_total")
    assert replayed_now == replayed + cut - checkpointed
    written = first_history.drifts + second_history.drifts
    assert [d.id for d in written] == [d.id for d in history.drifts], "nothing written twice"
    decisions = first_history.decisions + second_history.decisions
    assert [(d.action, d.drift_id, c) for d, c in decisions] == [
        (d.action, d.drift_id, c) for d, c in history.decisions
    ]


def test_inputs_a_checkpoint_holds_beyond_the_committed_offset_are_skipped(
    stream: list[Input], uninterrupted: Run
) -> None:
    """Offsets stored, checkpoint written, the commit not yet made: the consumer starts
    before the checkpoint, whose state already holds (and published) what lies between."""
    published, _, cut = uninterrupted
    store = MemoryStore()
    first, _, clock = make()
    before = feed(first, clock, stream[:cut], checkpoints(first, store, stream, every=1))
    assert store.offset == cut
    committed = cut - 120
    second, _, clock = make()
    after = feed(second, clock, stream[committed:], checkpoints(second, store, stream, every=1))
    assert before + after == published


def test_an_unreadable_checkpoint_starts_the_partition_afresh(stream: list[Input]) -> None:
    counted = (
        REGISTRY.get_sample_value("mlops_monitoring_checkpoints_total", {"outcome": "unreadable"})
        or 0
    )
    for blob in (b"not a pickle", pickle.dumps({"format": 0, "state": None})):
        store = MemoryStore()
        store.save_checkpoint("ns.monitoring", TOPIC, 0, 500, blob)
        deps, _, clock = make()
        feed(deps, clock, stream[600:900], checkpoints(deps, store, stream, every=10_000))
        positions = {d["signal"]: d["position"] for d in deps.monitor.detector_states()}
        assert positions["salary"] == 100, "started afresh from the consumer's offset"
    assert (
        REGISTRY.get_sample_value("mlops_monitoring_checkpoints_total", {"outcome": "unreadable"})
        == counted + 2
    )
    with pytest.raises(UnreadableCheckpoint):
        loads(b"\x80\x05junk")


def test_a_revoked_partition_is_checkpointed_and_its_state_dropped(stream: list[Input]) -> None:
    store = MemoryStore()
    deps, _, clock = make()
    gate = checkpoints(deps, store, stream, every=10_000)
    feed(deps, clock, stream[:300], gate)
    assert deps.monitor.detector_states() and not store.kept
    gate.revoked([(TOPIC, 0)])
    assert store.offset == 300 and deps.monitor.detector_states() == []
    again, _, clock = make()
    feed(again, clock, stream[300:303], checkpoints(again, store, stream, every=10_000))
    positions = {d["signal"]: d["position"] for d in again.monitor.detector_states()}
    assert positions["salary"] == 101


def test_no_checkpoint_holds_an_input_whose_outputs_are_not_confirmed(
    stream: list[Input],
) -> None:
    store = MemoryStore()
    deps, _, _ = make()
    gate = checkpoints(deps, store, stream, every=1)
    [route] = routes(deps)
    for event, info in stream[:100]:
        route.handler(event, info)
    gate.stored({(TOPIC, 0): 60})  # the runner stored less than was applied
    gate.revoked([(TOPIC, 0)])
    assert not store.kept


def test_a_replay_the_broker_cannot_serve_waits_and_one_that_fails_for_good_starts_afresh(
    stream: list[Input],
) -> None:
    store = MemoryStore()
    first, _, clock = make()
    feed(first, clock, stream[:400], checkpoints(first, store, stream, every=200))
    assert store.offset == 400

    def broker_down(partition: int, start: int, end: int) -> Iterator[Input]:
        raise TransientError("broker down")

    def broken(partition: int, start: int, end: int) -> Iterator[Input]:
        yield from iter(stream[start : start + 5])
        raise ValueError("a bug")

    deps, _, _ = make()
    gate = Checkpoints(deps, store, broker_down, "ns.monitoring", TOPIC, 200, interval_s=1e9)
    with pytest.raises(TransientError):
        gate.admit(*stream[450])
    assert deps.monitor.detector_states() == [], "nothing half restored"
    gate = Checkpoints(deps, store, broken, "ns.monitoring", TOPIC, 200, interval_s=1e9)
    assert gate.admit(*stream[450])
    assert deps.monitor.detector_states() == [], "started afresh"
