"""Training as several replicas on one database (the stack's PostgreSQL, and a SQLite file two
processes on one host would share).

Two replicas with engines of their own run training's real command handler on commands for
the same model at once: one fit at a time, and a command handed to both (a rebalance) is fitted
once; a replica that died holding a model's lease holds it no longer than the lease. The fit
itself is a stand-in that takes its time and records when it ran (the lease, not the fit, is
under test). Then reproductions: one asked of a training process is read through another, and
one whose replica stopped beating ends failed.
"""

# ruff: noqa: F811 (fixtures imported from the training tests and asked for by name)
from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine, select

from services.training.adapters.database import create_training_engine
from services.training.adapters.labels import SqlLabelCounter
from services.training.adapters.leases import SqlLeases, training_leases
from services.training.adapters.reproductions import SqlReproductions
from services.training.adapters.runs import SqlRuns
from services.training.exclusive import ExclusionConfig, ModelExclusion
from services.training.handlers import Deps, train_model
from shared.events import Event
from shared.events.models import ModelTrained, TrainModel
from shared.kafka.consumer import MessageInfo
from tests.integration.conftest import Database
from tests.integration.kafka_helpers import stable_members
from tests.integration.test_registry_replicas import all_at_once
from tests.integration.test_registry_service import trained as model_trained
from tests.integration.test_training_service import (  # noqa: F401 (fixtures)
    Stack,
    minio,
    stack,
    train_command,
)
from tests.services import RunningService
from tests.unit.test_training_handlers import trained
from tests.waiting import wait_until

FIT_S = 0.4


@pytest.fixture
def database(sql_database: Database) -> tuple[str, str]:
    """(url, schema) of one test's training database."""
    return sql_database.url, sql_database.schema or "training"


@pytest.fixture
def database_url(postgresql_database: Database) -> dict[str, str]:
    """Training processes as replicas: on one PostgreSQL schema, as on several hosts."""
    return {
        "database_url": postgresql_database.url,
        "database_schema": postgresql_database.schema or "training",
    }


@dataclass
class Fits:
    """When each fit ran, across replicas, and how many ran at once at most."""

    intervals: list[tuple[str, float, float]] = field(default_factory=list)
    running: int = 0
    most_at_once: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def train(self, command: Event[TrainModel]) -> ModelTrained:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        started = time.monotonic()
        time.sleep(FIT_S)
        with self._lock:
            self.running -= 1
            self.intervals.append((command.id, started, time.monotonic()))
        return trained(f"run-{command.id[:8]}")


@dataclass
class Replica:
    engine: Engine
    deps: Deps

    def handle(self, command: Event[TrainModel]) -> Event[Any]:
        info = MessageInfo("ns.training.requests", 0, 0, b"loans", None)
        [emit] = train_model(self.deps)(command, info)
        return emit.event


@pytest.fixture
def replicas(database: tuple[str, str]) -> Iterator[tuple[list[Replica], Fits]]:
    fits = Fits()
    replicas = [replica(database, fits, ttl_s=30) for _ in range(2)]
    try:
        yield replicas, fits
    finally:
        for each in replicas:
            each.engine.dispose()


def replica(database: tuple[str, str], fits: Fits, ttl_s: float) -> Replica:
    engine = create_training_engine(*database)
    exclusion = ModelExclusion(
        SqlLeases(engine, "ns", ttl_s), ExclusionConfig(ttl_s=ttl_s, wait_s=60, poll_s=0.05)
    )
    deps = Deps(fits, SqlRuns(engine, "ns"), SqlLabelCounter(engine, "ns"), exclusion)
    return Replica(engine, deps)


def test_two_replicas_handed_commands_of_one_model_fit_one_at_a_time(
    replicas: tuple[list[Replica], Fits],
) -> None:
    (a, b), fits = replicas
    commands = [train_command(seed=i) for i in range(6)]
    outcomes = all_at_once(
        [lambda r=(a if i % 2 else b), c=c: r.handle(c) for i, c in enumerate(commands)]
    )
    assert all(isinstance(outcome.data, ModelTrained) for outcome in outcomes)
    assert fits.most_at_once == 1, f"{fits.most_at_once} fits of one model ran at once"
    spans = sorted((start, end) for _, start, end in fits.intervals)
    assert len(spans) == len(commands)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))


def test_a_command_handed_to_both_replicas_at_once_is_fitted_once(
    replicas: tuple[list[Replica], Fits],
) -> None:
    (a, b), fits = replicas
    command = train_command()
    first, second = all_at_once([lambda: a.handle(command), lambda: b.handle(command)])
    assert [command_id for command_id, _, _ in fits.intervals] == [command.id]
    assert first.id == second.id and first.to_json_bytes() == second.to_json_bytes()


def test_a_lease_left_by_a_dead_replica_is_free_once_it_expired(
    database: tuple[str, str],
) -> None:
    ttl_s = 3.0
    dead_engine = create_training_engine(*database)
    SqlLeases(dead_engine, "ns", ttl_s).acquire("loans", "dead-replica", "command-0")
    dead_engine.dispose()  # it never renews nor releases
    fits = Fits()
    survivor = replica(database, fits, ttl_s)
    try:
        started = time.monotonic()
        outcome = survivor.handle(train_command())
        waited = time.monotonic() - started - FIT_S
    finally:
        survivor.engine.dispose()
    assert isinstance(outcome.data, ModelTrained)
    assert ttl_s - 1.5 <= waited <= ttl_s + 10, f"waited {waited:.1f}s for a {ttl_s}s lease"


def test_a_reproduction_whose_replica_stopped_is_failed_by_another_and_a_live_one_is_not(
    database: tuple[str, str],
) -> None:
    lease_s = 2.0
    engines = [create_training_engine(*database) for _ in range(2)]
    try:
        dead, alive = (
            SqlReproductions(engine, "ns", 50, 600, lease_s, replica=name)
            for engine, name in zip(engines, ("dead", "alive"), strict=True)
        )
        orphan, kept = dead.start("loans", 1), alive.start("loans", 2)
        deadline = time.monotonic() + 30
        while alive.get(orphan.id).status == "running":  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the orphan stayed running"
            alive.beat()
            time.sleep(0.2)
        failed = dead.get(orphan.id)
        assert failed is not None and failed.status == "failed"
        assert failed.reason is not None and "replica dead stopped" in failed.reason
        assert alive.get(kept.id).status == "running"  # type: ignore[union-attr]
    finally:
        for engine in engines:
            engine.dispose()


def test_a_reproduction_asked_of_one_training_process_is_read_through_another(
    stack: Stack, database_url: dict[str, str]
) -> None:
    registry = stack.start_registry()
    stack.register_specs()
    version = model_trained(0.8, namespace=stack.namespace)
    stack.publish("models.trained", version, key="loans")
    wait_until(
        lambda: httpx.get(f"{registry.url}/models/loans/versions/1", timeout=10).status_code == 200,
        what="v1 of loans in the registry",
    )
    first = stack.start_training(registry, **database_url)
    second = stack.start_training(registry, **database_url)

    asked = httpx.post(
        f"{first.url}/reproductions", json={"model": "loans", "version": 1}, timeout=60
    )
    assert asked.status_code == 202, asked.text
    reproduction_id = asked.json()["id"]
    seen = httpx.get(f"{second.url}/reproductions/{reproduction_id}", timeout=10)
    assert seen.status_code == 200, seen.text
    assert (seen.json()["model"], seen.json()["version"]) == ("loans", 1)

    def finished_on(service: Any) -> dict[str, Any] | None:
        answer = httpx.get(f"{service.url}/reproductions/{reproduction_id}", timeout=10).json()
        return answer if answer["status"] != "running" else None

    wait_until(lambda: finished_on(second) is not None, what="the outcome, read on the second")
    assert finished_on(first) == finished_on(second)
    listed = httpx.get(f"{second.url}/reproductions", params={"model": "loans"}, timeout=10)
    assert [item["id"] for item in listed.json()] == [reproduction_id]


SHORT_SESSION = {"MLOPS_KAFKA_CLIENT_EXTRA": json.dumps({"session.timeout.ms": "6000"})}
KILL_MODELS = [f"credit-{n}" for n in range(4)]


def command_for(model: str, seed: int) -> Event[TrainModel]:
    payload = train_command(seed=seed).data.model_copy(update={"model_name": model})
    return Event.create(payload, source="test", subject=model)


def lease_holders(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(select(training_leases.c.holder)).scalars())


def test_a_training_replica_killed_mid_fit_hands_its_commands_over_and_fits_none_twice(
    stack: Stack, database_url: dict[str, str], admin: AdminClient
) -> None:
    """Two training processes in one consumer group on one PostgreSQL: commands for four
    models keyed by model, one replica SIGKILLed while it holds a model's lease (mid-run).
    Its partitions and, once expired, its lease go to the other: every command ends in one
    ModelTrained (a re-emission keeps its id), none fails, the registry holds each once."""
    registry = stack.start_registry()
    settings = {
        "feature_store_url": stack.feature_store.url,
        "registry_url": registry.url,
        "models_bucket": stack.models_bucket,
        "lease_ttl_s": "3",
        **database_url,
    }
    replicas = [stack.start("training", extra_env=SHORT_SESSION, **settings) for _ in range(2)]
    wait_until(
        lambda: stable_members(admin, f"{stack.namespace}.training", with_partitions=True) == 2,
        what="both training replicas to get partitions of training.requests",
        timeout_s=60,
    )
    commands = [command_for(model, seed) for seed in range(2) for model in KILL_MODELS]
    for command in commands:
        stack.publish("training.requests", command, key=command.data.model_name)

    engine = create_training_engine(database_url["database_url"], database_url["database_schema"])
    try:

        def holding_a_lease() -> tuple[RunningService, RunningService] | None:
            if stack.end_offsets("models.trained") < 2:
                return None
            holders = lease_holders(engine)
            for replica, other in (replicas, replicas[::-1]):
                if any(f":{replica.process.pid}:" in holder for holder in holders):
                    return replica, other
            return None

        victim, survivor = wait_until(
            holding_a_lease,
            what="a replica holding a model's lease after two models were trained",
            timeout_s=120,
            interval_s=0.02,
        )
        os.kill(victim.process.pid, signal.SIGKILL)
        trained_at_kill = stack.end_offsets("models.trained")
        emitted = wait_until(
            lambda: (
                (events := stack.read("models.trained", stack.end_offsets("models.trained")))
                and {e.causationid for e in events} >= {c.id for c in commands}
                and events
            ),
            what="a ModelTrained for every command",
            timeout_s=180,
            interval_s=1,
        )
    finally:
        engine.dispose()
    assert trained_at_kill < len(commands), "the replica must be killed mid-stream"
    ids_by_command: dict[str, set[str]] = defaultdict(set)
    for event in emitted:
        assert isinstance(event.data, ModelTrained), f"a command failed: {event.data}"
        ids_by_command[event.causationid].add(event.id)
    assert all(len(ids) == 1 for ids in ids_by_command.values()), "a command trained twice"
    for model in KILL_MODELS:
        wait_until(
            lambda m=model: len(httpx.get(f"{registry.url}/models/{m}/versions").json()) == 2,
            what=f"two versions of {model}",
        )
    assert survivor.process.poll() is None
