"""The console against real services: the seven of them in a namespace of this module's own
(tests/integration/platform.py), the console app in-process pointed at them, at Kafka and at
Jaeger. Every page on an empty and on a populated platform, a service that cannot be reached,
CSRF, promote and rollback with and without the key, and markup planted in every kind of
user-provided string coming back only escaped."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient
from fastapi.testclient import TestClient
from markupsafe import escape

from services.console.bootstrap import build
from services.console.settings import SERVICES, ConsoleSettings
from shared.datasets.sources import agrawal_records
from shared.datasets.spec import SHIPPED_SPECS, DatasetSpec
from shared.events import Event
from shared.events.models import ModelTrained, TrainingTrigger
from shared.kafka.config import producer_config
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.settings import PlatformSettings
from tests.integration.platform import API_KEY, Platform, running_platform
from tests.integration.test_registry_service import trained
from tests.services import free_port
from tests.waiting import wait_until

MARKUP = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'
RAW = ("<script>alert", "<img src=x")
SECRET = "console-test-" + uuid.uuid4().hex * 2
PAGE = re.compile(r'<main id="page" data-page="([a-z-]+)"')


def console_for(platform: Platform, settings: PlatformSettings, **urls: str) -> TestClient:
    service_urls = {name: platform.url(name) for name in SERVICES}
    service_urls.update(urls)
    console = ConsoleSettings(
        _env_file=None,  # type: ignore[call-arg]
        service_urls=service_urls,
        session_secret=SECRET,  # type: ignore[arg-type]
        http_timeout_s=5,
    )
    scoped = settings.model_copy(update={"namespace": platform.namespace})
    return TestClient(build(scoped, console))


def page_of(response: httpx.Response) -> str | None:
    found = PAGE.search(response.text)
    return found.group(1) if found else None


def csrf_of(response: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
    assert found, "no csrf_token input on the page"
    return found.group(1)


def publish_trained(platform: Platform, model: str, score: float, reason: str) -> None:
    """A ModelTrained as training publishes it, for `model`, triggered for `reason`."""
    base = trained(score, namespace=platform.namespace, run=f"run-{uuid.uuid4().hex[:8]}")
    lineage = base.data.lineage.model_copy(
        update={"trigger": TrainingTrigger(kind="manual", requested_by="tester", reason=reason)}
    )
    payload = base.data.model_copy(update={"model_name": model, "lineage": lineage})
    event = Event[ModelTrained].create(payload, source="training", subject=model)
    producer = EventProducer(producer_config(PlatformSettings(), "console-tests"))
    topic = f"{platform.namespace}.models.trained"
    producer.publish_confirmed([OutgoingMessage.for_event(topic, event, key=model)])
    producer.close()


def versions_of(platform: Platform, model: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{platform.url('registry')}/models/{model}/versions", timeout=10)
    return answer.json() if answer.status_code == 200 else []


def champion_of(platform: Platform, model: str) -> int | None:
    answer = httpx.get(f"{platform.url('registry')}/models/{model}", timeout=10)
    return answer.json()["aliases"].get("champion") if answer.status_code == 200 else None


EMPTY_PAGES = {
    "/": "loop",
    "/models": "models",
    "/models/nothing": "model",
    "/models/nothing/compare?a=1&b=2": "compare",
    "/models/nothing/versions/1": "version",
    "/monitoring": "monitoring",
    "/monitoring/nothing": "monitoring-model",
    "/data": "data",
    "/data/nothing": "dataset",
    "/traces": "traces",
    "/traces/0123456789abcdef0123456789abcdef": "trace",
    "/session": "session",
}


@pytest.fixture(scope="module")
def platform(
    admin: AdminClient, settings: PlatformSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    logs: Path = tmp_path_factory.mktemp("console")
    with running_platform(admin, settings, logs, "cons") as running:
        yield running


@pytest.fixture(scope="module")
def empty_pages(platform: Platform, settings: PlatformSettings) -> dict[str, httpx.Response]:
    """Every page as the console renders it before anything was registered or sent."""
    with console_for(platform, settings) as client:
        return {path: client.get(path) for path in EMPTY_PAGES}


@pytest.fixture(scope="module")
def populated(
    platform: Platform, settings: PlatformSettings, empty_pages: dict[str, httpx.Response]
) -> dict[str, str]:
    """Markup planted in a spec description, a training trigger's reason and a record value;
    two versions of a model (the second worse: rejected, the first stays champion)."""
    model = f"console-{uuid.uuid4().hex[:8]}"
    dataset = f"console_{uuid.uuid4().hex[:8]}"
    spec = DatasetSpec.from_file(SHIPPED_SPECS / "loans.yaml").model_dump(mode="json")
    ingestion = platform.url("ingestion")
    created = httpx.post(
        f"{ingestion}/datasets", json={**spec, "name": dataset, "description": MARKUP}
    )
    assert created.status_code == 201, created.text
    wait_until(
        lambda: httpx.get(f"{platform.url('validation')}/stats/{dataset}").status_code == 200,
        what=f"validation to know {dataset}",
        timeout_s=60,
        interval_s=0.5,
    )
    start = datetime.now(UTC) - timedelta(minutes=5)
    ((record, _),) = agrawal_records(1, seed=3, start=start, entities=10)
    bad = {**record, "car": MARKUP, "application_id": f"bad-{uuid.uuid4().hex[:8]}"}
    sent = httpx.post(f"{ingestion}/datasets/{dataset}/records", json={"records": [bad]})
    assert sent.status_code == 202, sent.text

    def rejected() -> list[dict[str, Any]]:
        url = f"{platform.url('validation')}/rejections/{dataset}"
        return httpx.get(url).json().get("rejections", [])

    wait_until(rejected, what="the planted record among validation's rejections", timeout_s=60)
    publish_trained(platform, model, 0.8, reason=MARKUP)
    wait_until(lambda: champion_of(platform, model) == 1, what=f"{model} v1 champion")
    publish_trained(platform, model, 0.7, reason="second")
    wait_until(lambda: len(versions_of(platform, model)) == 2, what=f"{model} v2 registered")
    return {"model": model, "dataset": dataset}


def test_every_page_answers_on_an_empty_platform(empty_pages: dict[str, httpx.Response]) -> None:
    for path, page in EMPTY_PAGES.items():
        response = empty_pages[path]
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:500]}"
        assert page_of(response) == page, path
        assert 'id="unavailable"' not in response.text, f"{path} names a service unavailable"
    assert "No models yet" in empty_pages["/models"].text
    assert "No events yet" in empty_pages["/"].text
    assert "knows no model" in empty_pages["/models/nothing"].text
    loop = empty_pages["/"].text
    for service in ("registry", "monitoring", "training", "serving", "validation"):
        assert f'data-service="{service}" data-health="up"' in loop


def test_every_page_answers_on_a_populated_platform(
    platform: Platform, settings: PlatformSettings, populated: dict[str, str]
) -> None:
    model, dataset = populated["model"], populated["dataset"]
    pages = {
        "/": "loop",
        "/models": "models",
        f"/models/{model}": "model",
        f"/models/{model}/compare?a=1&b=2": "compare",
        f"/models/{model}/versions/1": "version",
        "/monitoring": "monitoring",
        f"/monitoring/{model}": "monitoring-model",
        "/data": "data",
        f"/data/{dataset}": "dataset",
        f"/data/{dataset}?a=1&b=1": "dataset",
        "/traces": "traces",
        "/session": "session",
    }
    with console_for(platform, settings) as client:
        for path, page in pages.items():
            response = client.get(path)
            assert response.status_code == 200, f"{path}: {response.text[:500]}"
            assert page_of(response) == page, path
        model_page = client.get(f"/models/{model}").text
        assert 'tr data-version="1"' in model_page and 'tr data-version="2"' in model_page
        assert re.search(r'data-version="1">.*?class="aliases">champion<', model_page, re.S)
        assert 'id="metric-chart-data"' in model_page
        version_page = client.get(f"/models/{model}/versions/1").text
        assert 'id="lineage-graph"' in version_page
        for kind in ("spec", "topic", "run", "trigger", "decision"):
            assert f'class="lineage-node" data-kind="{kind}"' in version_page, kind
        loop = client.get("/").text
        assert 'li class="timeline-event" data-type="ModelTrained"' in loop
        assert 'data-type="ModelPromoted"' in loop and f"/models/{model}/versions/1" in loop
        assert 'data-type="ModelRejected"' in loop
        monitoring = client.get(f"/monitoring/{model}").text
        assert 'id="performance-chart"' in monitoring and '"name": "drift"' in monitoring
        assert "No rejected record" not in client.get(f"/data/{dataset}").text


def test_a_page_names_the_service_it_could_not_reach(
    platform: Platform, settings: PlatformSettings, populated: dict[str, str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with console_for(platform, settings, registry=dead, training=dead) as client:
        for path in ("/", "/models", f"/models/{populated['model']}", "/monitoring/x"):
            response = client.get(path)
            assert response.status_code == 200, path
            assert 'id="unavailable"' in response.text, path
            assert "registry unavailable" in response.text, path
        loop = client.get("/").text
        assert 'data-service="registry" data-health="down"' in loop
        assert 'data-service="monitoring" data-health="up"' in loop
        assert client.get("/api/loop").json()["health"]["training"] == "down"


def test_a_post_without_the_sessions_csrf_token_is_refused(
    platform: Platform, settings: PlatformSettings, populated: dict[str, str]
) -> None:
    model = populated["model"]
    with console_for(platform, settings) as client:
        token = csrf_of(client.get("/session"))
        posts = {
            f"/models/{model}/promote": {"version": "2"},
            f"/models/{model}/rollback": {"reason": "r"},
            f"/models/{model}/versions/1/reproduce": {},
            "/session": {"api_key": API_KEY},
            "/session/logout": {},
        }
        for path, form in posts.items():
            assert client.post(path, data=form).status_code == 403, path
            wrong = {**form, "csrf_token": token[::-1]}
            assert client.post(path, data=wrong).status_code == 403, path
        with console_for(platform, settings) as other:  # another session's token
            other.get("/session")
            answer = other.post("/session", data={"api_key": API_KEY, "csrf_token": token})
            assert answer.status_code == 403
    assert champion_of(platform, model) == 1


def test_promote_and_rollback_are_refused_without_the_key_and_done_with_it(
    platform: Platform, settings: PlatformSettings, populated: dict[str, str]
) -> None:
    model = populated["model"]
    with console_for(platform, settings) as client:
        token = csrf_of(client.get(f"/models/{model}"))
        form = {"version": "2", "alias": "champion", "reason": MARKUP, "csrf_token": token}
        refused = client.post(f"/models/{model}/promote", data=form)
        assert refused.status_code == 200  # after the redirect to the model page
        assert 'id="flash" data-outcome="refused"' in refused.text
        assert "changes need an API key" in refused.text
        assert champion_of(platform, model) == 1

        signed = client.post("/session", data={"api_key": "not-" + API_KEY, "csrf_token": token})
        assert 'data-outcome="done"' in signed.text
        wrong_key = client.post(f"/models/{model}/promote", data=form)
        assert 'data-outcome="refused"' in wrong_key.text and "not allowed" in wrong_key.text
        assert champion_of(platform, model) == 1

        client.post("/session", data={"api_key": API_KEY, "csrf_token": token})
        done = client.post(f"/models/{model}/promote", data=form)
        assert 'id="flash" data-outcome="done"' in done.text, done.text[-3000:]
        assert champion_of(platform, model) == 2
        assert re.search(r'data-version="2">.*?class="aliases">champion<', done.text, re.S)

        back = client.post(
            f"/models/{model}/rollback", data={"reason": "back", "csrf_token": token}
        )
        assert 'data-outcome="done"' in back.text
        assert champion_of(platform, model) == 1

        client.post("/session/logout", data={"csrf_token": token})
        again = client.post(f"/models/{model}/promote", data=form)
        assert 'data-outcome="refused"' in again.text
        assert champion_of(platform, model) == 1


def test_the_session_cookie_is_http_only_and_same_site_strict(
    platform: Platform, settings: PlatformSettings
) -> None:
    with console_for(platform, settings) as client:
        header = client.get("/session").headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=strict" in header
    assert API_KEY.lower() not in header


def test_reproduce_says_when_the_training_service_offers_no_reproduction(
    platform: Platform, settings: PlatformSettings, populated: dict[str, str]
) -> None:
    model = populated["model"]
    with console_for(platform, settings) as client:
        token = csrf_of(client.get("/session"))
        client.post("/session", data={"api_key": API_KEY, "csrf_token": token})
        answer = client.post(f"/models/{model}/versions/1/reproduce", data={"csrf_token": token})
        assert answer.status_code == 200
        outcome = re.search(r'id="flash" data-outcome="(\w+)"', answer.text)
        running = re.search(r'id="reproduction" data-status="(\w+)"', answer.text)
        # The training service's POST /reproductions is being built beside this: until it is
        # there the page says reproduction is unavailable; once it is, a reproduction runs.
        assert (outcome and "reproduction is unavailable" in answer.text) or running, answer.text


def test_user_provided_strings_come_back_only_escaped(
    platform: Platform, settings: PlatformSettings, populated: dict[str, str]
) -> None:
    model, dataset = populated["model"], populated["dataset"]
    escaped = str(escape(MARKUP))  # as Jinja2's autoescape writes it
    with console_for(platform, settings) as client:
        token = csrf_of(client.get("/session"))
        client.post("/session", data={"api_key": API_KEY, "csrf_token": token})
        promoted = client.post(
            f"/models/{model}/promote",
            data={"version": "1", "alias": "challenger", "reason": MARKUP, "csrf_token": token},
        )
        assert 'data-outcome="done"' in promoted.text
        pages = {
            f"/data/{dataset}": "spec description, rejected record value",
            "/data": "dataset list",
            f"/models/{model}": "promotion reason in the audit trail",
            f"/models/{model}/versions/1": "training trigger reason",
            f"/models/{model}/compare?a=1&b=2": "lineage differences",
            "/": "timeline texts",
        }
        seen_escaped = set()
        for path, what in pages.items():
            text = client.get(path).text
            for raw in RAW:
                assert raw not in text, f"{path} ({what}) holds {raw!r} unescaped"
            if "&lt;script&gt;" in text or "\\u003cscript\\u003e" in text:
                seen_escaped.add(path)
        assert escaped in client.get(f"/data/{dataset}").text  # the spec's description
        assert escaped in client.get(f"/models/{model}").text  # the promotion's reason
        assert escaped in client.get(f"/models/{model}/versions/1").text  # trigger reason
        assert seen_escaped >= {f"/data/{dataset}", f"/models/{model}", "/"}
        refused = client.get("/models/%3Cscript%3E")  # no model name can hold markup
        assert refused.status_code == 422
        assert refused.headers["content-type"].startswith("application/json")
