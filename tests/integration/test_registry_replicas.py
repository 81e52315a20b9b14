"""The registry as several replicas on one database (the stack's PostgreSQL, and a SQLite file
two processes on one host would share): registries with engines of their own racing on the
same ModelTrained register one version, never hand out a version number twice, and racing
promotions all land in the audit in the order their alias moved; then two registry processes
whose consumer groups both deliver every ModelTrained (the worst a rebalance can do)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import pytest
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine

from services.registry.adapters.database import create_registry_engine, migrate
from services.registry.domain.policy import PromotionPolicy
from services.registry.lifecycle import Registry
from shared.events import Event
from shared.events.models import ModelTrained
from shared.kafka.topics import TopicCatalog
from tests.integration.conftest import Database
from tests.integration.kafka_helpers import committed_total, read_all, stable_members
from tests.integration.test_registry_service import (
    ALICE,
    MODEL,
    Platform,
    decode,
    get_json,
    platform,  # noqa: F401 (fixture)
    trained,
)
from tests.waiting import wait_until

REPLICAS = 2
T = TypeVar("T")


@pytest.fixture
def database(sql_database: Database) -> tuple[str, str]:
    """(url, schema) of one test's registry database."""
    return sql_database.url, sql_database.schema or "registry"


@pytest.fixture
def database_env(postgresql_database: Database) -> dict[str, str]:
    """Registry processes as replicas: on one PostgreSQL schema, as on several hosts."""
    return {
        "MLOPS_REGISTRY_DATABASE_URL": postgresql_database.url,
        "MLOPS_REGISTRY_DATABASE_SCHEMA": postgresql_database.schema or "registry",
    }


@pytest.fixture
def replicas(database: tuple[str, str]) -> Iterator[list[Registry]]:
    """Registries on engines (connection pools) of their own, as separate processes have."""
    engines: list[Engine] = [create_registry_engine(*database) for _ in range(REPLICAS)]
    migrate(engines[0])
    try:
        yield [Registry(engine, PromotionPolicy()) for engine in engines]
    finally:
        for engine in engines:
            engine.dispose()


def all_at_once(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Runs the calls in threads released together; their results, in the calls' order."""
    barrier = threading.Barrier(len(calls))

    def released(call: Callable[[], T]) -> T:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(released, calls))


def register_on(registry: Registry, event: Event[ModelTrained]) -> Callable[[], list[str]]:
    return lambda: [emitted.id for emitted in registry.register_trained(event)]


def versions_of(registry: Registry, model: str) -> list[tuple[int, str]]:
    with registry.reading() as repo:
        found = repo.model(model)
        assert found is not None, f"{model} was not registered"
        return [(v.version, v.source_event_id) for v in repo.versions(found)]


def test_the_same_model_trained_on_every_replica_at_once_registers_one_version(
    replicas: list[Registry],
) -> None:
    events = [trained(0.7 + i / 100, run=f"run-{i}") for i in range(6)]
    for event in events:  # the first one also races to create the model
        emitted = all_at_once([register_on(registry, event) for registry in replicas])
        assert all(ids == emitted[0] for ids in emitted), "replicas emitted different events"
        assert len(emitted[0]) == 2
    versions = versions_of(replicas[0], MODEL)
    assert versions == [(i + 1, event.id) for i, event in enumerate(events)]


def test_different_models_trained_racing_on_replicas_get_distinct_consecutive_versions(
    replicas: list[Registry],
) -> None:
    events = [trained(0.8, run=f"run-{i}") for i in range(8)]
    calls = [register_on(replicas[i % REPLICAS], event) for i, event in enumerate(events)]
    all_at_once(calls)
    versions = versions_of(replicas[1], MODEL)
    assert sorted(number for number, _ in versions) == list(range(1, len(events) + 1))
    assert {event_id for _, event_id in versions} == {event.id for event in events}


class Published:
    """Lifecycle events in the order they were published (inside each change's transaction)."""

    def __init__(self) -> None:
        self.events: list[Event[Any]] = []
        self._lock = threading.Lock()

    def __call__(self, events: Sequence[Event[Any]]) -> None:
        with self._lock:
            self.events.extend(events)


def test_racing_promotions_are_all_audited_in_order_and_the_alias_ends_at_the_last(
    replicas: list[Registry],
) -> None:
    for i in range(7):
        replicas[0].register_trained(trained(0.5, run=f"run-{i}"))  # v1 stays the champion
    published = Published()
    targets = list(range(2, 8))
    calls = [
        lambda r=replicas[n % REPLICAS], v=v: r.set_alias(
            MODEL, "champion", v, f"to v{v}", f"user-{v}", published
        )
        for n, v in enumerate(targets)
    ]
    answers = all_at_once(calls)
    assert all(answer["changed"] for answer in answers)

    with replicas[1].reading() as repo:
        model = repo.model(MODEL)
        assert model is not None
        entries = [e for e in repo.audit(model, 0, 1000) if e.action == "alias_set"]
        champion = repo.alias_holder(model, "champion")
    audited = [entry.to_version for entry in entries]
    assert sorted(audited) == targets, "a promotion was lost"
    assert [entry.event_id for entry in entries] == [event.id for event in published.events]
    chain = [(entry.from_version, entry.to_version) for entry in entries]
    assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(chain)), chain
    assert champion is not None and champion.version == audited[-1]


def test_two_registry_processes_both_handed_every_model_trained_register_each_once(
    platform: Platform,  # noqa: F811
) -> None:
    first = platform.start(group_id=f"{platform.namespace}.registry-a")
    platform.start(group_id=f"{platform.namespace}.registry-b")
    events = [
        trained(0.8 + i / 100, run=f"run-{i}", namespace=platform.namespace) for i in range(5)
    ]
    platform.publish(*events)
    for group in ("registry-a", "registry-b"):
        platform.wait_handled(len(events), group=f"{platform.namespace}.{group}")

    versions = get_json(first, f"/models/{MODEL}/versions")
    assert [v["version"] for v in versions] == [1, 2, 3, 4, 5]
    assert [v["run_id"] for v in versions] == [event.data.run_id for event in events]
    lifecycle = platform.lifecycle(4 * len(events))  # each process emits each event's two
    ids = [message.event.id for message in lifecycle]
    assert len(set(ids)) == 2 * len(events), "a re-emitted event got a new id"
    audit = get_json(first, f"/models/{MODEL}/audit")
    assert len(audit) == 2 * len(events)

    promote = httpx.put(
        f"{first.url}/models/{MODEL}/aliases/champion",
        json={"version": 2, "reason": "back to v2"},
        headers=ALICE,
        timeout=30,
    )
    assert promote.status_code == 200, promote.text
    wait_until(
        lambda: get_json(platform.services[1], f"/models/{MODEL}")["aliases"]["champion"] == 2,
        what="the other registry to answer the promotion made through the first",
    )


KILL_MODELS = [f"credit-{n}" for n in range(12)]
KILL_VERSIONS = 5


def test_a_registry_replica_killed_mid_stream_hands_over_and_registers_each_version_once(
    platform: Platform,  # noqa: F811
    admin: AdminClient,
) -> None:
    """Two registry processes in one consumer group on one PostgreSQL, ModelTrained for twelve
    models keyed by model, each better than the last; one replica SIGKILLed mid-stream. Its
    partitions go to the other: every version registered once and in order, every lifecycle
    event once (a re-emission keeps its id), every promotion audited, the last one champion."""
    platform.env["MLOPS_KAFKA_CLIENT_EXTRA"] = json.dumps({"session.timeout.ms": "6000"})
    replicas = [platform.start(), platform.start()]
    group = f"{platform.namespace}.registry"
    wait_until(
        lambda: stable_members(admin, group, with_partitions=True) == 2,
        what="both registry replicas to get partitions of models.trained",
        timeout_s=60,
    )
    events = {
        model: [
            trained(
                0.5 + v / 20,
                baseline=(v, 0.5 + (v - 1) / 20) if v else None,  # scored against v's champion
                run=f"{model}-{v}",
                namespace=platform.namespace,
                model=model,
            )
            for v in range(KILL_VERSIONS)
        ]
        for model in KILL_MODELS
    }
    in_order = [events[model][v] for v in range(KILL_VERSIONS) for model in KILL_MODELS]
    half = len(in_order) // 2
    platform.publish(*in_order[:half])
    topic = platform.topic("models.trained")
    partitions = TopicCatalog.load()["models.trained"].partitions
    wait_until(
        lambda: committed_total(platform.bootstrap, group, topic, partitions) >= half // 3,
        what="the replicas to register part of the stream",
        interval_s=0.05,
    )
    os.kill(replicas[0].process.pid, signal.SIGKILL)
    platform.publish(*in_order[half:])
    platform.wait_handled(len(in_order))

    survivor = replicas[1]
    for model, published in events.items():
        versions = get_json(survivor, f"/models/{model}/versions")
        assert [(v["version"], v["run_id"]) for v in versions] == [
            (n + 1, event.data.run_id) for n, event in enumerate(published)
        ], f"{model}: a version lost, twice or out of order"
        assert get_json(survivor, f"/models/{model}")["aliases"]["champion"] == KILL_VERSIONS
        audit = get_json(survivor, f"/models/{model}/audit")
        promoted = [e["to_version"] for e in audit if e["action"] == "promoted"]
        assert promoted == list(range(1, KILL_VERSIONS + 1)), f"{model}: {promoted}"
    lifecycle = read_all(
        platform.bootstrap, platform.topic("models.lifecycle"), platform.lifecycle_end()
    )
    ids = [decode(message.value()).id for message in lifecycle]
    assert len(set(ids)) == 2 * len(in_order), "a lifecycle event lost or re-emitted anew"
