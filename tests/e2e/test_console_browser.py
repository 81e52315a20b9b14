"""The console in a real headless Chromium (Debian's package, driven by Selenium), after the
closed loop's drift scenario: every page loads without a console error, the monitoring chart
marks the drift and the deployment at their times, the version's lineage graph names the
drift, the retraining trace spans five services, promote and rollback change the alias only
with the registry's key, and markup planted in user strings never runs.

Marked `browser`: these run last in the session (tests/e2e/conftest.py), after every other
test of the loop, since promote and rollback move its aliases."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import yaml

from infra.processes import RunningService, start_service
from shared.settings import PlatformSettings
from tests.browser import Browser, chromium
from tests.e2e.closed_loop import MODEL, DriftRetrain, Loop
from tests.integration.kafka_helpers import unique_name
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SPECS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "specs"
PLANTED = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


@pytest.fixture(scope="module")
def console(
    loop: Loop, settings: PlatformSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    """The console of the loop's namespace, reading the loop's own services."""
    urls = {name: service.url for name, service in loop.services.items()}
    env = {**os.environ, "MLOPS_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    service = start_service(
        "console",
        loop.services["registry"].namespace,
        env,
        tmp_path_factory.mktemp("console"),
        extra_env={"MLOPS_CONSOLE_SERVICE_URLS": json.dumps(urls)},
    )
    yield service
    service.stop()


@pytest.fixture(scope="module")
def browser(console: RunningService) -> Iterator[Browser]:
    with chromium(console.url) as session:
        yield session


def api_key() -> str:
    keys = json.loads(os.environ.get("MLOPS_REGISTRY_API_KEYS") or "{}")
    assert keys, "MLOPS_REGISTRY_API_KEYS is not set: run the tests with .local/stack.env loaded"
    return next(iter(keys.values()))


def champion(loop: Loop) -> int:
    answer = httpx.get(f"{loop.urls.registry}/models/{MODEL}/aliases/champion", timeout=10)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["version"]["version"])


def seconds_between(iso: str, moment: datetime) -> float:
    return abs(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() - moment.timestamp())


def test_every_page_loads_without_console_errors(
    loop: Loop, drift_retrain: DriftRetrain, browser: Browser
) -> None:
    new, first = drift_retrain.new_version, loop.first_version
    [command] = loop.watcher.drift_commands()
    pages = {
        "/": "loop",
        "/models": "models",
        f"/models/{MODEL}": "model",
        f"/models/{MODEL}/compare?a={first}&b={new}": "compare",
        f"/models/{MODEL}/versions/{new}": "version",
        "/monitoring": "monitoring",
        f"/monitoring/{MODEL}": "monitoring-model",
        "/data": "data",
        "/data/loans": "dataset",
        "/traces": "traces",
        f"/traces/{command.trace_id}": "trace",
        "/session": "session",
    }
    for path, page in pages.items():
        main = browser.open(path, page, screenshot=page)
        assert main.text.strip(), f"{path} shows nothing"
    errors = {path: found for path, found in browser.console_errors.items() if found}
    assert errors == {}, f"console errors: {errors}"
    # the loop page draws every service with its health
    browser.open("/", "loop", screenshot="loop")
    drawn = {
        g.get_attribute("data-service"): g.get_attribute("data-health")
        for g in browser.css("svg#loop-diagram g.service")
    }
    assert {
        "ingestion",
        "validation",
        "feature_store",
        "training",
        "registry",
        "serving",
        "monitoring",
    } <= set(drawn)
    assert set(drawn.values()) == {"up"}, drawn
    kinds = {li.get_attribute("data-type") for li in browser.css("#timeline li.timeline-event")}
    assert {"mlops.DriftDetected", "mlops.ModelPromoted"} <= kinds or {
        "DriftDetected",
        "ModelPromoted",
    } <= kinds, kinds


def test_the_monitoring_chart_marks_the_drift_and_the_deployment_at_their_times(
    loop: Loop, drift_retrain: DriftRetrain, browser: Browser
) -> None:
    [command] = loop.watcher.drift_commands()
    drift = loop.watcher.by_id(command.data["trigger"]["event_id"])
    assert drift is not None
    detected = datetime.fromisoformat(drift.data["detected_at"])
    [promotion] = [
        s
        for s in loop.watcher.seen("mlops.ModelPromoted")
        if s.data["version"] == drift_retrain.new_version
    ]
    promoted = datetime.fromisoformat(promotion.event["time"])
    browser.open(f"/monitoring/{MODEL}", "monitoring-model", screenshot="monitoring")
    traces = {trace["name"]: trace for trace in browser.chart("performance-chart")}
    series = traces.get(f"v{loop.first_version} accuracy")
    assert series is not None and len(series["x"]) >= 10, (
        f"no accuracy series of v{loop.first_version}: {list(traces)}"
    )
    times = [datetime.fromisoformat(x.replace("Z", "+00:00")).timestamp() for x in series["x"]]
    assert min(times) < detected.timestamp() < max(times) + 60, "the series covers the drift"
    assert all(0.0 <= y <= 1.0 for y in series["y"]), "accuracy is a share"
    assert "drift" in traces and "deployment" in traces, list(traces)
    assert min(seconds_between(x, detected) for x in traces["drift"]["x"]) < 5, traces["drift"]
    assert min(seconds_between(x, promoted) for x in traces["deployment"]["x"]) < 30, traces[
        "deployment"
    ]


def test_the_version_lineage_graph_names_the_drift_that_triggered_it(
    loop: Loop, drift_retrain: DriftRetrain, browser: Browser
) -> None:
    [command] = loop.watcher.drift_commands()
    drift = loop.watcher.by_id(command.data["trigger"]["event_id"])
    assert drift is not None
    browser.open(
        f"/models/{MODEL}/versions/{drift_retrain.new_version}", "version", screenshot="version"
    )
    kinds = {
        node.get_attribute("data-kind") for node in browser.css("svg#lineage-graph g.lineage-node")
    }
    assert {"spec", "topic", "run", "drift"} <= kinds, kinds
    [node] = browser.css('svg#lineage-graph g.lineage-node[data-kind="drift"]')
    text = node.text.lower()
    assert "drift" in text and (
        drift.data["signal"].lower() in text or drift.data["detector"].lower() in text
    ), text


def test_the_retraining_trace_shows_spans_of_five_services(
    loop: Loop, drift_retrain: DriftRetrain, browser: Browser
) -> None:
    [command] = loop.watcher.drift_commands()

    drawn: set[str] = set()

    def five_services_drawn() -> set[str] | None:
        browser.open(f"/traces/{command.trace_id}", "trace", screenshot="trace")
        drawn.update(row.get_attribute("data-service") for row in browser.css("#waterfall .span"))
        return drawn if len(drawn) >= 5 else None

    try:
        wait_until(five_services_drawn, what="the trace's spans from five services", timeout_s=60)
    except AssertionError as missing:
        raise AssertionError(f"{missing}; services drawn: {sorted(drawn)}") from None


def test_promote_and_rollback_from_the_ui_need_the_key(
    loop: Loop, drift_retrain: DriftRetrain, browser: Browser
) -> None:
    new, first = drift_retrain.new_version, loop.first_version
    assert champion(loop) == new
    browser.open(f"/models/{MODEL}", "model")
    browser.submit("form#rollback")
    flash = browser.wait_for("#flash", what="the rollback's outcome")
    assert flash.get_attribute("data-outcome") == "refused", flash.text
    assert champion(loop) == new, "refused without a key, the alias did not move"

    browser.open("/session", "session")
    browser.submit("form#session", api_key=api_key())
    browser.open(f"/models/{MODEL}", "model")
    browser.submit("form#rollback")
    flash = browser.wait_for("#flash", what="the rollback's outcome")
    assert flash.get_attribute("data-outcome") == "done", flash.text
    assert champion(loop) == first
    row = browser.css(f'#versions tr[data-version="{first}"] .aliases')
    assert row and "champion" in row[0].text

    browser.submit("form#promote", version=str(new))
    flash = browser.wait_for("#flash", what="the promotion's outcome")
    assert flash.get_attribute("data-outcome") == "done", flash.text
    assert champion(loop) == new


def test_reproduce_from_the_version_page_says_identical(
    loop: Loop, drift_retrain: DriftRetrain, browser: Browser
) -> None:
    browser.open("/session", "session")
    browser.submit("form#session", api_key=api_key())
    browser.open(f"/models/{MODEL}/versions/{drift_retrain.new_version}", "version")
    browser.submit("form#reproduce")
    running = browser.wait_for("#reproduction", what="the reproduction's state")
    assert running.get_attribute("data-status") in ("running", "identical"), running.text

    def outcome() -> str | None:
        status = browser.driver.execute_script(
            "const box = document.getElementById('reproduction');"
            "return box ? box.dataset.status : null;"
        )
        return status if status not in (None, "running") else None

    status = wait_until(
        outcome, what="the reproduction's outcome on the page", timeout_s=300, interval_s=1
    )
    assert status == "identical", browser.css("#reproduction")[0].text
    rows = browser.css("#reproduction tr.same")
    assert rows and not browser.css("#reproduction tr.differs"), "every check the same"


def test_markup_planted_in_user_strings_never_runs(loop: Loop, browser: Browser) -> None:
    spec = yaml.safe_load((SPECS / "loans.yaml").read_text())
    name = unique_name("markup").replace("-", "_")
    spec["name"] = name
    spec["description"] = f"planted {PLANTED}"
    answer = httpx.post(
        f"{loop.urls.ingestion}/datasets",
        content=yaml.safe_dump(spec),
        headers={"content-type": "application/yaml"},
        timeout=10,
    )
    assert answer.status_code in (200, 201), answer.text
    for path, page in ((f"/data/{name}", "dataset"), ("/data", "data")):
        browser.open(path, page)
        assert browser.driver.execute_script("return window.__pwned === undefined"), (
            f"markup ran on {path}"
        )
    browser.open(f"/data/{name}", "dataset")
    assert PLANTED in browser.driver.find_element("tag name", "body").text, "shown as text"
