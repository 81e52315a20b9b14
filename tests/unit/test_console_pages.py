"""The console's pages over fake services (httpx.MockTransport): the reproduce flow against
training's contract, refusals shown as the registry words them, and pages that still render
when a service answers errors or nothing usable."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from services.console.bootstrap import build
from services.console.settings import ConsoleSettings
from shared.settings import PlatformSettings

Handler = Callable[[httpx.Request], httpx.Response]
KEY = "k" * 40


def console(handler: Handler) -> TestClient:
    settings = ConsoleSettings(
        _env_file=None,  # type: ignore[call-arg]
        session_secret="s" * 40,  # type: ignore[arg-type]
        service_urls={name: f"http://{name}" for name in ("training", "registry", "monitoring")},
    )
    platform = PlatformSettings(_env_file=None, jaeger_query_url="http://jaeger")  # type: ignore[call-arg]
    app = build(platform, settings, with_kafka=False, transport=httpx.MockTransport(handler))
    return TestClient(app)


def token(client: TestClient) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/session").text)
    assert found
    return found.group(1)


def signed_in(client: TestClient) -> str:
    csrf = token(client)
    client.post("/session", data={"api_key": KEY, "csrf_token": csrf})
    return csrf


class FakeTraining:
    """Training's reproduce API as the contract says: 202 running, then an outcome."""

    def __init__(self, outcome: dict[str, Any], polls_running: int = 1) -> None:
        self.outcome = outcome
        self.polls_running = polls_running
        self.started: list[dict[str, Any]] = []
        self.keys: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != "training":
            return httpx.Response(404, json={"detail": "Not Found"})
        if request.method == "POST" and request.url.path == "/reproductions":
            self.started.append(json.loads(request.content))
            self.keys.append(request.headers.get("x-api-key"))
            body = {"id": "r1", "status": "running", "started_at": "2026-12-06T02:00:00Z"}
            return httpx.Response(202, json={**self.started[-1], **body})
        if request.url.path == "/reproductions/r1":
            if self.polls_running > 0:
                self.polls_running -= 1
                return httpx.Response(200, json={"id": "r1", "status": "running", "checks": []})
            return httpx.Response(200, json={"id": "r1", **self.outcome})
        return httpx.Response(404, json={"detail": "Not Found"})


def test_a_reproduction_runs_is_polled_and_shows_identical() -> None:
    training = FakeTraining({"status": "identical", "checks": [
        {"name": "artifact sha256", "recorded": "ab", "reproduced": "ab", "same": True,
         "difference": None}], "reason": None})  # fmt: skip
    with console(training) as client:
        csrf = signed_in(client)
        running = client.post("/models/loans/versions/3/reproduce", data={"csrf_token": csrf})
        assert training.started == [{"model": "loans", "version": 3}] and training.keys == [KEY]
        assert "/models/loans/versions/3?reproduction=r1" in str(running.url)
        assert 'id="reproduction" data-status="running"' in running.text
        assert 'data-poll="/api/reproductions/r1"' in running.text
        assert client.get("/api/reproductions/r1").json()["status"] == "identical"
        done = client.get("/models/loans/versions/3?reproduction=r1").text
        assert 'id="reproduction" data-status="identical"' in done
        assert "artifact sha256" in done


def test_a_reproduction_that_differs_or_failed_says_what_and_why() -> None:
    differs = FakeTraining({"status": "differs", "polls_running": 0, "checks": [
        {"name": "metrics.roc_auc", "recorded": 0.91, "reproduced": 0.88, "same": False,
         "difference": "-0.03"}]}, polls_running=0)  # fmt: skip
    with console(differs) as client:
        page = client.get("/models/loans/versions/3?reproduction=r1").text
        assert 'data-status="differs"' in page and "metrics.roc_auc" in page and "-0.03" in page
    failed = FakeTraining({"status": "failed", "reason": "offsets deleted", "checks": []}, 0)
    with console(failed) as client:
        page = client.get("/models/loans/versions/3?reproduction=r1").text
        assert 'data-status="failed"' in page and "offsets deleted" in page


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(404, json={"detail": "Not Found"}),
        httpx.Response(405, json={"detail": "Method Not Allowed"}),
        None,  # unreachable
    ],
)
def test_without_trainings_reproduce_api_the_page_says_it_is_unavailable(
    answer: httpx.Response | None,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "training":
            if answer is None:
                raise httpx.ConnectError("connection refused", request=request)
            return answer
        return httpx.Response(404, json={"detail": "Not Found"})

    with console(handler) as client:
        csrf = signed_in(client)
        page = client.post("/models/loans/versions/3/reproduce", data={"csrf_token": csrf})
        assert 'id="flash" data-outcome="refused"' in page.text
        assert "reproduction is unavailable" in page.text
        shown = client.get("/models/loans/versions/3?reproduction=r1").text
        assert 'data-status="unavailable"' in shown


def test_an_unknown_version_is_a_refusal_in_trainings_words() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "loans has no version 9"})

    with console(handler) as client:
        csrf = signed_in(client)
        page = client.post("/models/loans/versions/9/reproduce", data={"csrf_token": csrf}).text
        assert 'data-outcome="refused"' in page and "loans has no version 9" in page


def test_reproducing_needs_a_key_in_the_session() -> None:
    training = FakeTraining({"status": "identical"})
    with console(training) as client:
        csrf = token(client)
        page = client.post("/models/loans/versions/3/reproduce", data={"csrf_token": csrf}).text
        assert 'data-outcome="refused"' in page and "/session" in page
        assert training.started == []


def test_pages_render_when_services_answer_errors_or_junk() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "registry":
            return httpx.Response(500, text="<html>oops</html>")
        if request.url.host == "monitoring":
            shape: Any = ["a", "list"] if "drift" in request.url.path else {"unexpected": 1}
            return httpx.Response(200, json=shape)
        return httpx.Response(503, json={"detail": "not ready"})

    with console(handler) as client:
        for path in ("/", "/models", "/models/loans", "/models/loans/versions/1", "/monitoring",
                     "/monitoring/loans", "/data", "/data/loans", "/traces", "/traces/abc"):  # fmt: skip
            page = client.get(path)
            assert page.status_code == 200, f"{path}: {page.text[:300]}"
            if path != "/monitoring":  # monitoring answered, only in an unexpected shape
                assert 'id="unavailable"' in page.text, path
        assert "registry: HTTP 500" in client.get("/models").text


def test_compare_shows_both_versions_on_the_newer_ones_holdout_when_it_scored_the_older() -> None:
    comparison = {"model_name": "loans", "a": 1, "b": 2, "primary_metric": {"name": "roc_auc"},
                  "metrics": {"roc_auc": {"a": 0.7, "b": 0.9, "b_minus_a": 0.2}},
                  "params": {"max_depth": {"a": 3, "b": 4}}, "lineage": {}}  # fmt: skip
    lineage = {"dataset": "loans", "offsets": [], "trigger": {"kind": "drift"},
               "training": {"evaluation": {"metrics": {"roc_auc": 0.9}},
                            "baseline": {"version": 1, "metrics": {"roc_auc": 0.55}}}}  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/models/loans/compare":
            return httpx.Response(200, json=comparison)
        if request.url.path == "/lineage/loans/2":
            return httpx.Response(200, json=lineage)
        return httpx.Response(200, json={"dataset": "loans", "offsets": [], "training": {}})

    with console(handler) as client:
        page = client.get("/models/loans/compare", params={"a": 1, "b": 2}).text
    assert 'data-page="compare"' in page and "max_depth" in page
    same = page[page.index('id="same-holdout"') :]
    assert "On v2&#39;s holdout" in page or "On v2's holdout" in page
    assert re.search(r"roc_auc</td><td>0.55</td><td>0.9</td>", same)


@pytest.mark.parametrize("junk", [["a", "list"], "a string", 42, None])
def test_pages_render_when_every_service_answers_json_of_another_shape(junk: Any) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=junk)

    paths = ["/", "/api/loop", "/api/timeline", "/models", "/models/loans",
             "/models/loans/compare?a=1&b=2", "/models/loans/versions/1",
             "/models/loans/versions/1?reproduction=r1", "/monitoring", "/monitoring/loans",
             "/api/monitoring/loans/chart", "/data", "/data/loans?a=1&b=2&entity=e1", "/traces",
             "/traces/abc", "/api/reproductions/r1"]  # fmt: skip
    with console(handler) as client:
        for path in paths:
            assert client.get(path).status_code == 200, path


def test_a_models_traces_are_asked_of_every_service_and_listed_once() -> None:
    asked: list[tuple[str, str | None]] = []

    def trace(trace_id: str, service: str) -> dict[str, Any]:
        span = {"spanID": "s", "operationName": "op", "processID": "p", "startTime": 1_000_000,
                "duration": 5}  # fmt: skip
        return {"traceID": trace_id, "spans": [span], "processes": {"p": {"serviceName": service}}}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/services":
            return httpx.Response(200, json={"data": ["monitoring", "registry"]})
        service = request.url.params["service"]
        asked.append((service, request.url.params.get("tags")))
        return httpx.Response(200, json={"data": [trace("t1", service), trace(service, service)]})

    with console(handler) as client:
        page = client.get("/traces", params={"service": "", "model": "loans"}).text
        assert sorted(asked) == [
            ("monitoring", '{"mlops.model": "loans"}'), ("registry", '{"mlops.model": "loans"}')
        ]  # fmt: skip
        assert page.count('href="/traces/t1"') == 1
        assert 'href="/traces/monitoring"' in page and 'href="/traces/registry"' in page
        asked.clear()
        client.get("/traces")
        assert asked == [("monitoring", None)]


def test_a_challenger_waiting_for_approval_is_approved_with_the_key_or_refused() -> None:
    approvals: list[tuple[str, str | None, bytes]] = []
    model = {"name": "loans", "created_at": "2026-12-06T02:00:00Z", "versions": 2,
             "latest_version": 2, "aliases": {"champion": 1, "challenger": 2}, "tags": {}}  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            approvals.append((request.url.path, request.headers.get("x-api-key"), request.content))
            if request.headers.get("x-api-key") != KEY:
                return httpx.Response(401, json={"detail": "changes need an API key"})
            return httpx.Response(200, json={"model_name": "loans", "changed": True})
        if request.url.path == "/models/loans":
            return httpx.Response(200, json=model)
        return httpx.Response(200, json=[])

    with console(handler) as client:
        page = client.get("/models/loans").text
        assert 'form id="approve"' in page and 'name="version" value="2"' in page
        csrf = token(client)
        form = {"version": "2", "reason": "looks right", "csrf_token": csrf}
        refused = client.post("/models/loans/approve", data=form).text
        assert 'data-outcome="refused"' in refused and "changes need an API key" in refused
        client.post("/session", data={"api_key": KEY, "csrf_token": csrf})
        done = client.post("/models/loans/approve", data=form).text
        assert 'data-outcome="done"' in done and "v2 approved" in done
        assert approvals[-1] == (
            "/models/loans/versions/2/approve",
            KEY,
            b'{"reason":"looks right"}',
        )
        assert client.post("/models/loans/approve", data={"version": "2"}).status_code == 403
