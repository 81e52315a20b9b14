"""Monitoring's per-event work does not grow with the number of monitored model versions
(bench-scale part 3): an absent registry is tried once per retry window, not once per
version, through one HTTP client; a dataset's detector configuration is built once, by the
settings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.monitoring.adapters.registry import BackgroundLineages, LineageClient
from services.monitoring.domain.join import LabelJoin
from services.monitoring.domain.monitor import DatasetDetectors, Monitor, Served
from services.monitoring.settings import DatasetDetectorSettings, MonitoringSettings

LINEAGE = {"data_quality": {"numeric": {}}}
VERSIONS = [(f"model_{n:03d}", 1) for n in range(200)]


class Registry:
    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []
        self.down = True

    def lineage(self, model: str, version: int) -> dict[str, Any] | None:
        self.asked.append((model, version))
        if self.down:
            raise ConnectionError("registry unreachable")
        return LINEAGE


def drain(lineages: BackgroundLineages) -> None:
    while lineages.fetch_next(timeout_s=0):
        pass


def test_an_absent_registry_is_tried_once_per_retry_window_whatever_the_versions() -> None:
    registry, now = Registry(), [0.0]
    lineages = BackgroundLineages(registry.lineage, retry_s=30, clock=lambda: now[0])
    for second in range(60):  # every version asked for every second, as each event asks
        now[0] = float(second)
        for model, version in VERSIONS:
            assert lineages.lineage(model, version) is None
        drain(lineages)
    assert len(registry.asked) == 2  # at 0 s and at 30 s, not 2 x 200
    assert lineages.fetches == 2

    registry.down, now[0] = False, 61.0  # back: every version is fetched once
    for model, version in VERSIONS:
        lineages.lineage(model, version)
    drain(lineages)
    assert all(lineages.lineage(model, version) == LINEAGE for model, version in VERSIONS)
    assert len(registry.asked) == 2 + len(VERSIONS)


def test_the_lineage_client_asks_through_one_http_client() -> None:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path.endswith("/2"):
            return httpx.Response(404)
        return httpx.Response(200, json={"lineage": LINEAGE, "evaluation": {"metrics": {}}})

    client = LineageClient(
        "http://registry/", client=httpx.Client(transport=httpx.MockTransport(answer))
    )
    assert client.lineage("loans", 1) == {**LINEAGE, "evaluation": {"metrics": {}}}
    assert client.lineage("loans", 2) is None
    assert asked == ["/models/loans/versions/1", "/models/loans/versions/2"]
    client.close()


def test_a_datasets_detector_configuration_is_built_once_not_per_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []
    build = DatasetDetectorSettings.detectors

    def counted(self: DatasetDetectorSettings) -> DatasetDetectors:
        built.append("built")
        return build(self)

    monkeypatch.setattr(DatasetDetectorSettings, "detectors", counted)
    settings = MonitoringSettings(
        _env_file=None,  # type: ignore[call-arg]
        detectors={"loans": {}, "friedman": {"features": ["x"]}},
    )
    monitor = Monitor(
        settings.detectors_for,
        lambda dataset: dataset,
        LabelJoin[Served](3600),
        task_for=lambda dataset: "regression" if dataset == "friedman" else "classification",
    )
    datasets = ("loans", "friedman", "phishing")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for index in range(2000):
        model = index % 200
        dataset = datasets[model % 3]
        served = Served(dataset, f"m{model}", 1, f"r{index}", 1, False, at)
        monitor.observe_prediction(served, now=float(index))
        monitor.observe_label(dataset, f"r{index}", 1, now=float(index))
        monitor.observe_record(dataset, {"x": float(index)}, at)
        monitor.observe_rejected(dataset, at)
    assert len(built) == 3  # the two configured datasets' and the default (phishing's)
    assert sum(row["labelled"] for row in monitor.performance()) == 2000
