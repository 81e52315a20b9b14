"""GET /models: every model's summary from a fixed number of queries, however many models there
are, and the same summary GET /models/{name} and a model's own versions give."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import event

from services.registry.http import RegistryApi, install
from services.registry.lifecycle import Registry
from tests.unit.test_registry_http import ALICE_KEY, FakePublisher, make_registry, trained


def client_for(registry: Registry) -> TestClient:
    app = FastAPI()
    install(app, RegistryApi(registry, FakePublisher(), {"alice": SecretStr(ALICE_KEY)}))
    return TestClient(app)


def register(registry: Registry, models: int, versions: int, first: int = 0) -> None:
    for n in range(first, first + models):
        for v in range(1, versions + 1):
            registry.register_trained(trained(0.5 + v / 100, run=f"run-{v}", model=f"m{n:03d}"))


@contextmanager
def counted_statements(registry: Registry) -> Iterator[list[str]]:
    """The SQL statements run on the registry's engine (its read-only sessions too)."""
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(registry.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(registry.engine, "before_cursor_execute", record)


def listing_statements(registry: Registry, client: TestClient) -> tuple[int, list[dict[str, Any]]]:
    with counted_statements(registry) as statements:
        answer = client.get("/models")
    answer.raise_for_status()
    return len(statements), answer.json()


def test_listing_models_takes_as_many_queries_for_thirty_models_as_for_three() -> None:
    registry = make_registry()
    client = client_for(registry)
    register(registry, models=3, versions=2)
    few, listed = listing_statements(registry, client)
    assert len(listed) == 3
    register(registry, models=27, versions=2, first=3)
    many, listed = listing_statements(registry, client)
    assert len(listed) == 30
    assert many == few, f"GET /models ran {few} statements for 3 models but {many} for 30"
    assert few <= 3, f"GET /models ran {few} statements, expected at most 3"


@pytest.mark.parametrize("versions", [1, 3])
def test_each_listed_model_is_what_its_own_routes_say(versions: int) -> None:
    registry = make_registry()
    client = client_for(registry)
    register(registry, models=4, versions=versions)
    client.put(
        "/models/m002/aliases/challenger",
        json={"version": 1, "reason": "try it"},
        headers={"X-API-Key": ALICE_KEY},
    ).raise_for_status()
    listed = client.get("/models").json()
    assert [m["name"] for m in listed] == ["m000", "m001", "m002", "m003"]
    for summary in listed:
        detail = client.get(f"/models/{summary['name']}").json()
        assert summary == {key: value for key, value in detail.items() if key != "tags"}
        own = client.get(f"/models/{summary['name']}/versions").json()
        assert summary["versions"] == len(own) == versions
        assert summary["latest_version"] == max(v["version"] for v in own)
        assert summary["aliases"] == {a: v["version"] for v in own for a in v["aliases"]}
        assert list(summary["aliases"]) == sorted(summary["aliases"])
    assert listed[2]["aliases"]["challenger"] == 1
    assert all("champion" in m["aliases"] for m in listed)


def test_a_model_without_versions_is_listed_with_none_of_them() -> None:
    registry = make_registry()
    client = client_for(registry)
    register(registry, models=1, versions=2)
    with registry.unit() as repo:
        repo.add_model("empty", datetime.now(UTC))
    listed = {m["name"]: m for m in client.get("/models").json()}
    assert listed["empty"]["versions"] == 0
    assert listed["empty"]["latest_version"] is None
    assert listed["empty"]["aliases"] == {}
    assert listed["m000"]["versions"] == 2
    assert listed["m000"]["latest_version"] == 2
    detail = client.get("/models/empty").json()
    assert (detail["versions"], detail["latest_version"], detail["aliases"]) == (0, None, {})
