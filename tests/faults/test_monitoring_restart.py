"""Monitoring SIGKILLed mid-episode (issue 15, scenario 8): its detectors', join's and policy's
state come back from a checkpoint tied to the offset of monitoring.inputs it holds, so
detection after the restart is that of an uninterrupted run over the same inputs.

One fixed stream (predictions of a decision tree and their labels, River's Agrawal concept
drift in the middle) is published straight on monitoring.inputs, in one partition, so every
run sees it in the same order. A real monitoring process reads it uninterrupted in one
namespace: the error detector's DriftDetected (which input caused it, at which position),
the decisions, one retrain. In a second namespace, the same inputs in three parts: up to a
point after the drift began (a checkpoint is written there: CHECKPOINT_EVERY is that
point), then up to just after the drift was caught (published, the episode waiting for its
labels); once that is committed, the process is SIGKILLed, the rest published, and monitoring
started again. It restores the checkpoint, re-applies the inputs from it to the committed
offset without publishing or writing anything, and goes on: the same DriftDetected, once,
the same decisions, one retrain, and every detector where the uninterrupted run left it.
Without checkpoints the restarted process starts afresh: the waiting episode is lost (no
retrain) and the detectors count from the restart."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from confluent_kafka.admin import AdminClient
from sklearn.tree import DecisionTreeClassifier
from sqlalchemy import select

from services.monitoring.adapters.history import History
from services.monitoring.settings import MonitoringSettings
from shared.datasets.sources import agrawal_records
from shared.events import Event
from shared.kafka.config import producer_config
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.settings import PlatformSettings
from shared.sql import create_database_engine
from tests.faults.harness import Row, read_topic
from tests.integration.kafka_helpers import unique_name
from tests.integration.test_monitoring_service import (
    CATALOG,
    DRIFT_AT,
    NUMERIC,
    START,
    committed_everything,
    drift_view,
    performance,
    read_to_end,
    stream,
)
from tests.services import RunningService, namespace_topics, start_service
from tests.waiting import wait_until

SETTINGS = {
    "MLOPS_MONITORING_REGISTRY_URL": "http://127.0.0.1:9",  # no lineage: the holdout check idles
    "MLOPS_MONITORING_CHECKPOINT_INTERVAL_S": "3600",
    # The killed member leaves the group soon, so the restarted one gets its partitions.
    "MLOPS_KAFKA_CLIENT_EXTRA": json.dumps({"session.timeout.ms": "6000"}),
}
INPUTS = "monitoring.inputs"


def monitoring(
    namespace: str, env: dict[str, str], tmp_path: Path, **settings: str
) -> RunningService:
    """The integration tests' monitoring (a debounce longer than the run, no cooldown, 50
    labels after a drift before its retrain), given time to start on a busy machine."""
    extra = {
        "MLOPS_MONITORING_DEBOUNCE_S": "300",
        "MLOPS_MONITORING_COOLDOWN_S": "0",
        "MLOPS_MONITORING_MIN_LABELS_AFTER_DRIFT": "50",
        "MLOPS_MONITORING_MAX_RETRAINS_PER_HOUR": "3",
        "MLOPS_MONITORING_HISTORY_EVERY": "500",
        **settings,
    }
    return start_service("monitoring", namespace, env, tmp_path, timeout_s=300, extra_env=extra)


@pytest.fixture(scope="module")
def inputs() -> list[Event[Any]]:
    """Each prediction followed by its label: 6,000 inputs, the concept drift at 3,000."""
    rows = list(agrawal_records(2000, seed=7, start=START))
    frame = pd.DataFrame([record for record, _ in rows])[NUMERIC]
    model = DecisionTreeClassifier(max_depth=6, random_state=0).fit(
        frame, [label for _, label in rows]
    )
    predictions, labels = stream(model, DRIFT_AT)
    return [event for pair in zip(predictions, labels, strict=True) for event in pair]


@pytest.fixture
def namespaces(admin: AdminClient, settings: PlatformSettings) -> Iterator[list[str]]:
    made = [unique_name(f"mon{n}").replace("-", "") for n in "ab"]
    with namespace_topics(admin, made[0]), namespace_topics(admin, made[1]):
        yield made
    engine = create_database_engine(MonitoringSettings().database_url_for(settings))
    for namespace in made:
        History(engine, namespace).drop()
    engine.dispose()


class Inputs:
    """Publishes the inputs on a namespace's monitoring.inputs, keyed by their dataset."""

    def __init__(self, settings: PlatformSettings, namespace: str, events: list[Event[Any]]):
        self.topic = CATALOG.name(INPUTS, namespace)
        self.events = events
        self.group = f"{namespace}.monitoring"
        self._producer = EventProducer(producer_config(settings, "monitoring-restart-test"))

    def publish(self, start: int, end: int) -> None:
        self._producer.publish_confirmed(
            [
                OutgoingMessage.for_event(self.topic, event, key=event.data.dataset)
                for event in self.events[start:end]
            ],
            timeout=60,
        )

    def close(self) -> None:
        self._producer.close()


def run_through(service: RunningService, bootstrap: str, inputs: Inputs) -> None:
    wait_until(
        lambda: committed_everything(bootstrap, inputs.group, inputs.topic),
        what="monitoring to read and commit every input published",
        timeout_s=240,
        interval_s=1,
    )


def outcome(service: RunningService, bootstrap: str, namespace: str) -> dict[str, Any]:
    drifts = [d for _, d in read_to_end(bootstrap, CATALOG.name("monitoring.drift", namespace))]
    view = drift_view(service)
    return {
        "drifts": [
            (
                d["data"]["signal"],
                d["data"]["position"],
                d["causationid"],
                d["data"]["model_version"],
            )
            for d in drifts
        ],
        "drift_ids": [d["id"] for d in drifts],
        "commands": read_to_end(bootstrap, CATALOG.name("training.requests", namespace)),
        "decisions": [d["action"] for d in reversed(view["decisions"])],
        "detectors": sorted(
            (d["signal"], d["model_version"], d["position"], d["drifts"]) for d in view["detectors"]
        ),
        "labelled": sum(row["labelled"] for row in performance(service)["models"]),
    }


def checkpoint_of(settings: PlatformSettings, namespace: str, inputs: Inputs) -> int | None:
    """The offset of the checkpoint of the inputs' partition (the one their dataset keys)."""
    engine = create_database_engine(MonitoringSettings().database_url_for(settings))
    try:
        table = History(engine, namespace).checkpoints
        query = select(table.c.next_offset).where(
            (table.c.consumer_group == inputs.group) & (table.c.topic == inputs.topic)
        )
        with engine.connect() as connection:
            offsets = list(connection.execute(query).scalars())
    finally:
        engine.dispose()
    assert len(offsets) <= 1, "one dataset: one partition"
    return offsets[0] if offsets else None


def test_monitoring_killed_mid_episode_resumes_from_its_checkpoint_as_if_uninterrupted(
    inputs: list[Event[Any]],
    namespaces: list[str],
    settings: PlatformSettings,
    subprocess_env: dict[str, str],
    bootstrap: str,
    tmp_path: Path,
    matrix: list[Row],
) -> None:
    whole, interrupted = namespaces
    by_id = {event.id: n for n, event in enumerate(inputs)}

    feed = Inputs(settings, whole, inputs)
    service = monitoring(whole, subprocess_env, tmp_path, **SETTINGS)
    try:
        feed.publish(0, len(inputs))
        run_through(service, bootstrap, feed)
        expected = outcome(service, bootstrap, whole)
    finally:
        service.stop()
        feed.close()
    caught = next(by_id[c] for signal_, _, c, _ in expected["drifts"] if signal_ == "error")
    drift_begins = 2 * DRIFT_AT
    assert caught > drift_begins + 10, "the drift is caught a while after it begins"
    assert [c for c in expected["decisions"] if c == "trigger"] == ["trigger"]
    assert len(expected["commands"]) == 1 and expected["labelled"] == len(inputs) // 2
    # A checkpoint mid-episode, before the drift is caught; the kill after it is caught, with
    # 10 of the 50 labels the episode waits for applied.
    checkpointed, killed_at = (drift_begins + caught) // 2, caught + 20

    feed = Inputs(settings, interrupted, inputs)
    every = {**SETTINGS, "MLOPS_MONITORING_CHECKPOINT_EVERY": str(checkpointed)}
    service = monitoring(interrupted, subprocess_env, tmp_path, **every)
    try:
        feed.publish(0, checkpointed)
        run_through(service, bootstrap, feed)
        wait_until(
            lambda: checkpoint_of(settings, interrupted, feed) == checkpointed,
            what="the checkpoint of the inputs read so far",
            timeout_s=30,
        )
        feed.publish(checkpointed, killed_at)
        run_through(service, bootstrap, feed)
        before_kill = len(read_to_end(bootstrap, CATALOG.name("monitoring.drift", interrupted)))
        os.kill(service.process.pid, signal.SIGKILL)
        service.process.wait(10)
        assert checkpoint_of(settings, interrupted, feed) == checkpointed, "none written since"
        feed.publish(killed_at, len(inputs))
        restarted = time.monotonic()
        service = monitoring(interrupted, subprocess_env, tmp_path, **every)
        run_through(service, bootstrap, feed)
        recovery_s = time.monotonic() - restarted
        found = outcome(service, bootstrap, interrupted)
        dead_lettered = len(read_topic(bootstrap, CATALOG.name("bus.dead-letter", interrupted)))
    finally:
        service.stop()
        feed.close()

    twice = len(found["drift_ids"]) - len(set(found["drift_ids"]))
    matrix.append(
        Row(
            scenario="monitoring SIGKILLed mid-drift-episode, restarted from its checkpoint",
            records_in=len(inputs),
            records_out=found["labelled"] * 2,
            lost=len(inputs) - found["labelled"] * 2,
            twice=twice + max(len(found["commands"]) - 1, 0),
            dead_lettered=dead_lettered,
            predict_ok=0,
            predict_failed=0,
            recovery_s=recovery_s,
        )
    )
    assert before_kill >= 1, "the drift was published before the kill"
    assert found["drifts"] == expected["drifts"], "each DriftDetected once, at the same input"
    assert twice == 0
    assert found["decisions"] == expected["decisions"]
    assert len(found["commands"]) == 1, "exactly one retrain"
    assert found["detectors"] == expected["detectors"], "every detector where it would be"
    assert found["labelled"] == expected["labelled"] and dead_lettered == 0


def test_a_clean_stop_checkpoints_where_it_stopped_and_the_restart_goes_on_from_there(
    inputs: list[Event[Any]],
    namespaces: list[str],
    settings: PlatformSettings,
    subprocess_env: dict[str, str],
    bootstrap: str,
    tmp_path: Path,
) -> None:
    """Stopped (SIGTERM) before its first periodic checkpoint: the partition's state is
    checkpointed as it leaves, and the next process's detectors count on from there."""
    namespace = namespaces[0]
    feed = Inputs(settings, namespace, inputs)
    rarely = {**SETTINGS, "MLOPS_MONITORING_CHECKPOINT_EVERY": "100000"}
    service = monitoring(namespace, subprocess_env, tmp_path, **rarely)
    try:
        feed.publish(0, 1000)
        run_through(service, bootstrap, feed)
        assert checkpoint_of(settings, namespace, feed) is None
        assert service.stop() == 0
        assert checkpoint_of(settings, namespace, feed) == 1000
        service = monitoring(namespace, subprocess_env, tmp_path, **rarely)
        feed.publish(1000, 1002)
        run_through(service, bootstrap, feed)
        positions = {d["signal"]: d["position"] for d in drift_view(service)["detectors"]}
    finally:
        service.stop()
        feed.close()
    assert positions == {"prediction": 501, "error": 501}
