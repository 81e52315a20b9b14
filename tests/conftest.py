"""Fixtures for the tests that talk to the real stack, and folder-based markers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from shared.settings import PlatformSettings

_MARK_BY_FOLDER = {"integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for folder, mark in _MARK_BY_FOLDER.items():
            if folder in Path(str(item.fspath)).parts:
                item.add_marker(mark)
    # Browser tests look at what the loop's other tests left (and move its aliases): last.
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture(scope="session")
def settings() -> PlatformSettings:
    return PlatformSettings()


@pytest.fixture(scope="session")
def bootstrap(settings: PlatformSettings) -> str:
    return settings.kafka_bootstrap_servers


@pytest.fixture(scope="session")
def admin(bootstrap: str) -> AdminClient:
    client = AdminClient({"bootstrap.servers": bootstrap})
    try:
        client.list_topics(timeout=10)
    except Exception as error:
        pytest.fail(f"Kafka at {bootstrap} is not reachable ({error}); start the stack: make up")
    return client


@pytest.fixture
def subprocess_env(settings: PlatformSettings) -> dict[str, str]:
    """The environment child processes get: this test run's MLOPS_* settings."""
    env = dict(os.environ)
    env["MLOPS_KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    env["PYTHONUNBUFFERED"] = "1"
    return env
