"""A service finds the others where the local stack put them (MLOPS_<NAME>_HOST/PORT, which
follow SERVICE_PORT_BASE), unless its own *_URL setting says otherwise."""

from __future__ import annotations

import pytest

from services.monitoring.settings import MonitoringSettings
from services.serving.settings import ServingSettings
from services.training.settings import TrainingSettings

MOVED = {"MLOPS_REGISTRY_PORT": "28005", "MLOPS_FEATURE_STORE_PORT": "28003"}


@pytest.fixture
def moved_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in MOVED.items():
        monkeypatch.setenv(variable, value)


@pytest.mark.usefixtures("moved_stack")
def test_the_services_follow_a_moved_stack() -> None:
    serving = ServingSettings(_env_file=None)  # type: ignore[call-arg]
    training = TrainingSettings(_env_file=None)  # type: ignore[call-arg]
    monitoring = MonitoringSettings(_env_file=None)  # type: ignore[call-arg]
    assert serving.registry_url == training.registry_url == "http://127.0.0.1:28005"
    assert monitoring.registry_url == "http://127.0.0.1:28005"
    assert serving.feature_store_url == training.feature_store_url == "http://127.0.0.1:28003"


@pytest.mark.usefixtures("moved_stack")
def test_a_url_setting_of_the_service_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_SERVING_REGISTRY_URL", "http://registry:8005")
    assert ServingSettings(_env_file=None).registry_url == "http://registry:8005"  # type: ignore[call-arg]


def test_without_the_stack_s_addresses_the_default_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in MOVED:
        monkeypatch.delenv(variable, raising=False)
    training = TrainingSettings(_env_file=None)  # type: ignore[call-arg]
    assert training.registry_url == "http://127.0.0.1:8005"
    assert training.feature_store_url == "http://127.0.0.1:8003"
