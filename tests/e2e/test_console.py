"""After the closed loop (drift, retrain, promotion, hot-swap), the console shows it: the
monitoring chart holds the first version's accuracy with the drift and the deployment marked
on its time axis, the new version's lineage graph names the drift, its training trace shows
spans from at least five services, and the loop's timeline lists every step."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.console.bootstrap import build
from services.console.settings import SERVICES, ConsoleSettings
from shared.settings import PlatformSettings
from tests.e2e.closed_loop import MODEL, DriftRetrain, Loop
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def console(
    loop: Loop, drift_retrain: DriftRetrain, settings: PlatformSettings
) -> Iterator[TestClient]:
    namespace = next(iter(loop.services.values())).namespace
    urls = {name: loop.services[name].url for name in SERVICES}
    console = ConsoleSettings(
        _env_file=None,  # type: ignore[call-arg]
        service_urls=urls,
        session_secret="e2e-" + "x" * 40,  # type: ignore[arg-type]
        http_timeout_s=10,
    )
    scoped = settings.model_copy(update={"namespace": namespace})
    with TestClient(build(scoped, console)) as client:
        yield client


def figure(page: str, chart: str) -> dict[str, Any]:
    found = re.search(
        rf'<script type="application/json" id="{chart}-data">(.*?)</script>', page, re.S
    )
    assert found, f"no {chart} on the page"
    return json.loads(found.group(1))


def test_the_monitoring_chart_marks_the_drift_and_the_deployment_on_the_accuracy_axis(
    console: TestClient, loop: Loop, drift_retrain: DriftRetrain
) -> None:
    page = console.get(f"/monitoring/{MODEL}")
    assert page.status_code == 200 and 'data-page="monitoring-model"' in page.text
    traces = {t["name"]: t for t in figure(page.text, "performance-chart")["data"]}
    first = traces[f"v{loop.first_version} accuracy"]
    assert len(first["x"]) >= 2 and all(0 <= y <= 1 for y in first["y"])
    drifts = [datetime.fromisoformat(x) for x in traces["drift"]["x"]]
    deployments = [datetime.fromisoformat(x) for x in traces["deployment"]["x"]]
    assert drifts and deployments
    start = datetime.fromisoformat(first["x"][0])
    assert start <= min(drifts) <= max(deployments)  # promoted after the drift


def test_the_retrained_versions_lineage_graph_names_the_drift(
    console: TestClient, drift_retrain: DriftRetrain
) -> None:
    page = console.get(f"/models/{MODEL}/versions/{drift_retrain.new_version}").text
    drift = re.search(r'<g class="lineage-node" data-kind="drift"[^>]*>.*?</g>', page, re.S)
    assert drift, "no drift node in the lineage graph"
    texts = " ".join(re.findall(r"<text[^>]*>([^<]*)</text>", drift.group(0)))
    assert "drift" in texts and re.search(r"ADWIN|KSWIN|PageHinkley|holdout", texts), texts


def test_the_training_trace_shows_spans_from_at_least_five_services(
    console: TestClient, drift_retrain: DriftRetrain
) -> None:
    page = console.get(f"/models/{MODEL}/versions/{drift_retrain.new_version}").text
    link = re.search(r'<a id="version-trace" href="(/traces/[0-9a-f]+)"', page)
    assert link, "the version page links no training trace"

    seen: set[str] = set()

    def services() -> set[str]:
        trace = console.get(link.group(1)).text
        seen.update(re.findall(r'class="span[^"]*" data-service="([^"]+)"', trace))
        return seen

    try:
        found = wait_until(
            lambda: services() if len(services()) >= 5 else None,
            what="the training trace's spans from five services in Jaeger",
            timeout_s=60,
            interval_s=2,
        )
    except AssertionError as missing:
        raise AssertionError(f"{missing}; services seen: {sorted(seen)}") from None
    assert {"monitoring", "training", "registry", "serving"} <= found


def test_the_loops_timeline_lists_every_step(
    console: TestClient, drift_retrain: DriftRetrain
) -> None:
    page = console.get("/").text
    types = set(re.findall(r'<li class="timeline-event" data-type="(\w+)"', page))
    assert {"DriftDetected", "RetrainDecided", "ModelTrained", "ModelPromoted"} <= types
    assert f"/models/{MODEL}/versions/{drift_retrain.new_version}" in page
    assert 'data-service="training" data-health="up"' in page
