"""The checks every service's HTTP layer makes before a route (shared/http_limits.py), on a tiny
app: the body limit, 415 for an undeclared content type, 422 for text that cannot be text, and
validation errors that name the problem without echoing the input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field
from starlette.types import Message

from shared.http_limits import (
    MAX_LISTED_ERRORS,
    BodyLimit,
    BodyLimitMiddleware,
    concise_errors,
    install_http_limits,
)
from shared.service import ServiceRuntime, create_app
from shared.settings import PlatformSettings

LIMIT = 4096
YAML = {"application/json": {"schema": {"type": "object"}}, "application/yaml": {}}


class Item(BaseModel):
    name: str = Field(max_length=20)
    count: int = Field(ge=0)


def tiny_app(refusals: list[str]) -> FastAPI:
    app = FastAPI()
    seen: dict[str, Any] = {}
    app.state.seen = seen

    @app.post("/items")
    def create(item: Item) -> dict[str, Any]:
        seen["item"] = item
        return {"name": item.name}

    @app.post("/free/{name}", openapi_extra={"requestBody": {"content": YAML}})
    async def free(name: str, request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.post("/files/{name}", openapi_extra={"requestBody": {"content": {"text/csv": {}}}})
    async def files(name: str, request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.post("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    limit = BodyLimit(
        LIMIT, "MLOPS_TINY_MAX_BODY_BYTES", ("/files/{name}",), "send less", refusals.append
    )
    install_http_limits(app, limit)
    return app


@pytest.fixture
def refusals() -> list[str]:
    return []


@pytest.fixture
def client(refusals: list[str]) -> Iterator[TestClient]:
    with TestClient(tiny_app(refusals)) as test_client:
        yield test_client


JSON = {"content-type": "application/json"}


def test_a_body_over_the_limit_is_413_with_a_short_reason_naming_the_setting(
    client: TestClient, refusals: list[str]
) -> None:
    body = json.dumps({"name": "x" * LIMIT, "count": 1})
    answer = client.post("/items", content=body, headers=JSON)
    assert answer.status_code == 413
    assert answer.json() == {
        "detail": f"the body is over the limit of {LIMIT} bytes (MLOPS_TINY_MAX_BODY_BYTES): "
        "send less",
        "reason": "too_large",
        "limit": LIMIT,
    }
    assert refusals == ["too_large"]
    assert "item" not in client.app.state.seen  # type: ignore[attr-defined]


def test_a_streamed_body_is_refused_once_past_the_limit(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(100):
            yield b"x" * 1000

    answer = client.post("/free/a", content=chunks(), headers=JSON)
    assert answer.status_code == 413 and answer.json()["reason"] == "too_large"


def test_the_limit_stops_reading_at_the_first_chunk_past_it() -> None:
    """At the ASGI level: of a 100 KB body sent in 1 KB chunks, no chunk after the one that
    passes the limit is asked for, and the answer is the 413."""
    received: list[int] = []
    sent: list[Message] = []

    async def receive() -> Message:
        received.append(1)
        return {"type": "http.request", "body": b"x" * 1000, "more_body": len(received) < 100}

    async def send(message: Message) -> None:
        sent.append(message)

    async def reads_everything(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass

    limit = BodyLimit(LIMIT, "MLOPS_TINY_MAX_BODY_BYTES")
    scope = {"type": "http", "method": "POST", "path": "/x", "headers": []}
    asyncio.run(BodyLimitMiddleware(reads_everything, limit)(scope, receive, send))
    assert len(received) == LIMIT // 1000 + 1
    assert sent[0]["status"] == 413


def test_a_route_without_a_limit_takes_any_size(client: TestClient) -> None:
    big = b"a,b\n" + b"1,2\n" * 10_000
    answer = client.post("/files/a", content=big, headers={"content-type": "text/csv"})
    assert answer.status_code == 200 and answer.json() == {"bytes": len(big)}


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/items", "text/plain"),
        ("/items", "application/x-www-form-urlencoded"),
        ("/items", None),
        ("/items", "multipart/form-data; boundary=x"),
        ("/free/a", "text/csv"),
        ("/files/a", "application/json"),
    ],
)
def test_a_content_type_the_operation_does_not_declare_is_415(
    client: TestClient, refusals: list[str], path: str, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    answer = client.post(path, content=b'{"name": "a", "count": 1}', headers=headers)
    assert answer.status_code == 415, answer.text
    assert answer.json()["reason"] == "unsupported_media_type"
    assert "not accepted here; send one of" in answer.json()["detail"]
    assert refusals == ["unsupported_media_type"]


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/items", "application/json"),
        ("/items", "Application/JSON; charset=utf-8"),
        ("/items", "application/merge-patch+json"),
        ("/free/a", "application/yaml"),
    ],
)
def test_a_declared_content_type_goes_through(
    client: TestClient, path: str, content_type: str
) -> None:
    answer = client.post(
        path, content=b'{"name": "a", "count": 1}', headers={"content-type": content_type}
    )
    assert answer.status_code == 200, answer.text


def test_a_request_without_a_body_is_not_asked_for_a_content_type(client: TestClient) -> None:
    assert client.post("/ping").status_code == 200


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"name": "a\\ud800", "count": 1}', "body.name"),
        (b'{"name": "a", "count": 1, "x": ["\\udfff"]}', "body.x[0]"),
        (b'{"name": "a\\u0000b", "count": 1}', "body.name"),
        (b'{"\\udc00": 1}', "body (a key)"),
        (b'{"name": "\xed\xa0\x80", "count": 1}', "body.name"),
    ],
)
def test_a_lone_surrogate_or_nul_in_a_json_body_is_422_naming_where(
    client: TestClient, body: bytes, where: str
) -> None:
    answer = client.post("/items", content=body, headers=JSON)
    assert answer.status_code == 422, answer.text
    assert answer.json()["reason"] == "invalid_text"
    assert answer.json()["where"] == where
    assert "lone surrogate" in answer.json()["detail"] or "NUL" in answer.json()["detail"]


@pytest.mark.parametrize(
    "name", ["\\ud83d\\ude00", "\\\\ud800 is text", "caf\\u00e9", "u0000 is text"]
)
def test_escaped_pairs_and_look_alikes_are_text(client: TestClient, name: str) -> None:
    body = b'{"name": "' + name.encode() + b'", "count": 1}'
    answer = client.post("/items", content=body, headers=JSON)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("url", ["/free/a%00b", "/free/a?x=%00", "/free/%00?y=1"])
def test_a_nul_in_the_url_is_422(client: TestClient, url: str) -> None:
    answer = client.post(url, content=b"{}", headers=JSON)
    assert answer.status_code == 422
    assert answer.json()["reason"] == "invalid_text" and answer.json()["where"] == "url"


def test_a_validation_error_names_the_problem_without_echoing_the_input(
    client: TestClient,
) -> None:
    body = json.dumps({"name": "y" * 3000, "count": "z" * 1000})
    answer = client.post("/items", content=body, headers=JSON)
    assert answer.status_code == 422
    assert len(answer.content) < 1000
    assert "yyyy" not in answer.text and "zzzz" not in answer.text
    errors = answer.json()["detail"]
    assert [e["loc"] for e in errors] == [["body", "name"], ["body", "count"]]
    assert errors[0]["type"] == "string_too_long" and errors[0]["ctx"] == {"max_length": 20}
    assert all("input" not in e for e in errors)


def test_long_or_unencodable_texts_in_an_error_are_cut_and_escaped() -> None:
    error = RequestValidationError(
        [{"type": "x" * 500, "loc": ("body", "\ud800" * 3, "k" * 500), "msg": "m" * 5000}]
    )
    [item] = concise_errors(error.errors())
    assert item["loc"][1] == "\\ud800" * 3
    assert len(item["loc"][2]) == 100 and len(item["type"]) == 100 and len(item["msg"]) == 200
    json.dumps(item, ensure_ascii=False).encode()


def test_many_errors_in_a_request_answer_the_first_ones_and_their_count() -> None:
    app = FastAPI()

    @app.post("/many")
    def many(items: list[Annotated[int, Field(ge=0)]]) -> int:
        return len(items)

    install_http_limits(app, BodyLimit(10 * 1024 * 1024, "MLOPS_X_MAX_BODY_BYTES"))
    with TestClient(app) as client:
        answer = client.post("/many", json=[-1] * 50_000)
    assert answer.status_code == 422
    assert len(answer.json()["detail"]) == MAX_LISTED_ERRORS
    assert answer.json()["error_count"] == 50_000
    assert len(answer.content) < 5000


def test_every_service_app_has_the_checks_with_a_default_limit() -> None:
    runtime = ServiceRuntime(name="tiny", settings=PlatformSettings())
    app = create_app(runtime)

    @app.post("/echo")
    def echo(item: Item) -> str:
        return item.name

    with TestClient(app) as client:
        big = client.post("/echo", content=b"x" * (1024 * 1024 + 1), headers=JSON)
        plain = client.post("/echo", content=b"{}", headers={"content-type": "text/plain"})
    assert big.status_code == 413
    assert "1 MiB (MLOPS_TINY_MAX_BODY_BYTES)" in big.json()["detail"]
    assert plain.status_code == 415
