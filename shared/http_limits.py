"""What every service's HTTP layer refuses before a route sees the request, and how it says so.

- A body over the service's limit: 413, decided from Content-Length when it is sent, otherwise
  as soon as the bytes read pass the limit (the rest is never read).
- A body whose content type the route does not declare in the OpenAPI document: 415.
- A JSON body holding a lone surrogate or a NUL character in any string, or a URL holding a
  NUL: 422 naming where; no store, topic or response encoder downstream can take them (a
  URL's path and query are decoded with replacement characters, so no surrogate gets in).
- Request validation errors: 422 with the first errors, each naming the problem and where,
  never echoing the input (a 50 MB body must not come back as a 50 MB answer).

Every refusal is a short JSON object {"detail": ..., "reason": ...}. Starlette and FastAPI have
a body limit of their own (max_body_size), but its 413 is plain "Content Too Large" and a route
cannot lift it (ingestion's file uploads must stay unbounded), hence this module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.settings import ServiceSettings
from shared.text import first_text_problem, shown

MIB = 1024 * 1024
MAX_LISTED_ERRORS = 20
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

HTTP_REFUSALS = Counter(
    "mlops_http_refusals_total",
    "Requests refused before a route (too_large, unsupported_media_type, invalid_text).",
    ["reason"],
)


def _count(reason: str) -> None:
    HTTP_REFUSALS.labels(reason).inc()


@dataclass(frozen=True)
class BodyLimit:
    """A service's largest request body, the setting that sets it (named in the 413), the
    routes it does not apply to (path templates such as "/datasets/{name}/files"), a hint for
    the client, and how a refusal is counted."""

    max_bytes: int
    setting: str
    unbounded_paths: tuple[str, ...] = ()
    hint: str = ""
    count: Callable[[str], None] = field(default=_count, compare=False)

    @classmethod
    def of(
        cls,
        settings: ServiceSettings,
        *,
        unbounded_paths: Sequence[str] = (),
        hint: str = "",
        count: Callable[[str], None] = _count,
    ) -> BodyLimit:
        prefix = str(settings.model_config.get("env_prefix", "MLOPS_"))
        setting = f"{prefix}MAX_BODY_BYTES".upper()
        return cls(settings.max_body_bytes, setting, tuple(unbounded_paths), hint, count)

    @classmethod
    def default(cls, service: str) -> BodyLimit:
        return cls(MIB, f"MLOPS_{service.upper()}_MAX_BODY_BYTES")

    def body(self) -> dict[str, Any]:
        size = self.max_bytes
        mib = f" = {size / MIB:g} MiB" if size % MIB == 0 else ""
        hint = f": {self.hint}" if self.hint else ""
        detail = f"the body is over the limit of {size} bytes{mib} ({self.setting}){hint}"
        return {"detail": detail, "reason": "too_large", "limit": size}


class BodyTooLarge(HTTPException):
    """Raised by the limited `receive`: a route reading the body ends with the 413."""

    def __init__(self, limit: BodyLimit) -> None:
        super().__init__(413, limit.body()["detail"])
        self.limit = limit


def refusal(status: int, detail: str, reason: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, "reason": reason, **extra}, status)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: BodyLimit) -> None:
        self.app, self.limit = app, limit
        self.unbounded = [compile_path(path)[0] for path in limit.unbounded_paths]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(p.match(scope["path"]) for p in self.unbounded):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (
            not declared.isdigit() or int(declared) > self.limit.max_bytes
        ):
            await self._refuse(scope, receive, send)
            return
        received, started = 0, False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit.max_bytes:
                raise BodyTooLarge(self.limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.limit.count("too_large")
        await JSONResponse(self.limit.body(), 413)(scope, receive, send)


def media_type(content_type: str | None) -> str:
    """'Application/JSON; charset=utf-8' -> 'application/json'; none is octet-stream (RFC 9110
    8.3: a recipient may assume it)."""
    value = (content_type or "").split(";", 1)[0].strip().lower()
    return value or "application/octet-stream"


def _is_json(media: str) -> bool:
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def accepts(declared: Sequence[str], media: str) -> bool:
    return media in declared or (_is_json(media) and "application/json" in declared)


# Where a lone surrogate or NUL can hide in JSON bytes: an escape (\ud800, \u0000) or the
# surrogate's raw bytes (json.loads decodes bytes with surrogatepass). Only a body with one of
# these is parsed here; the others go to the route untouched.
_SUSPECT = re.compile(rb"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)|\xed[\xa0-\xbf]")


def json_text_problem(body: bytes) -> tuple[str, str] | None:
    """The first string of a JSON body that cannot be text, as (where, why), or None."""
    if not _SUSPECT.search(body):
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON: the route says so
    try:
        return first_text_problem(document, "body")
    except RecursionError:
        return "body", "nested too deeply to be checked"


class RequestChecks:
    """422 for a URL with a NUL, 415 for a content type the route does not declare, 422 for a
    JSON body whose text cannot be text. Declared types are the operation's requestBody in the
    app's OpenAPI document, the one clients and schemathesis read."""

    def __init__(self, app: ASGIApp, api: FastAPI, count: Callable[[str], None]) -> None:
        self.app, self.api, self.count = app, api, count
        self.operations: list[tuple[re.Pattern[str], dict[str, list[str]]]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            self.count("invalid_text")
            detail = "the URL holds a NUL character (%00), which no name or value can hold"
            await refusal(422, detail, "invalid_text", where="url")(scope, receive, send)
            return
        if scope["method"] not in BODY_METHODS or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        declared = self._declared_media_types(scope)
        sent = Headers(scope=scope).get("content-type")
        media = media_type(sent)
        if declared is not None and not accepts(declared, media):
            self.count("unsupported_media_type")
            named = (
                f"content type {shown(media, 100)!r}" if sent else "a body without a content type"
            )
            detail = f"{named} is not accepted here; send one of: {', '.join(declared)}"
            response = refusal(415, detail, "unsupported_media_type", accepted=list(declared))
            await response(scope, receive, send)
            return
        if not _is_json(media):
            await self.app(scope, receive, send)
            return
        body = await _read_all(receive)
        problem = json_text_problem(body)
        if problem is not None:
            self.count("invalid_text")
            where, why = problem
            await refusal(422, f"{where}: {why}", "invalid_text", where=where)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _declared_media_types(self, scope: Scope) -> list[str] | None:
        """The media types the operation declares, or None (no such operation, no body)."""
        if self.operations is None:
            self.operations = _operations(self.api.openapi())
        for pattern, methods in self.operations:
            if pattern.match(scope["path"]):
                declared = methods.get(scope["method"].lower())
                if declared is not None:
                    return declared
        return None


def _operations(document: dict[str, Any]) -> list[tuple[re.Pattern[str], dict[str, list[str]]]]:
    """Each OpenAPI path as a pattern, with the media types of each method's request body."""
    operations = []
    for path, methods in document.get("paths", {}).items():
        declared = {
            method: sorted(operation["requestBody"].get("content", {}))
            for method, operation in methods.items()
            if isinstance(operation, dict) and "requestBody" in operation
        }
        operations.append((compile_path(path)[0], declared))
    return operations


def _has_body(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers


async def _read_all(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def concise_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """FastAPI's validation errors without the input, their texts cut short, the first few."""
    return [_concise(error) for error in errors[:MAX_LISTED_ERRORS]]


def _concise(error: Any) -> dict[str, Any]:
    loc = [part if isinstance(part, int) else shown(str(part), 100) for part in error["loc"]]
    item: dict[str, Any] = {
        "type": shown(str(error.get("type", "")), 100),
        "loc": loc[:10],
        "msg": shown(str(error.get("msg", ""))),
    }
    context = error.get("ctx")
    if isinstance(context, dict):
        item["ctx"] = {shown(str(k), 100): _scalar(v) for k, v in list(context.items())[:10]}
    return item


def _scalar(value: Any) -> Any:
    if isinstance(value, bool | int) and abs(value) < 2**53:
        return value
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return value
    return shown(str(value))


async def validation_refused(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = error.errors()
    body: dict[str, Any] = {"detail": concise_errors(errors)}
    if len(errors) > MAX_LISTED_ERRORS:
        body["error_count"] = len(errors)
    return JSONResponse(body, 422)


def install_http_limits(app: FastAPI, limit: BodyLimit) -> None:
    """The body limit, the content type and text checks, and concise validation errors."""

    async def too_large(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, BodyTooLarge)
        error.limit.count("too_large")
        return JSONResponse(error.limit.body(), 413)

    app.add_exception_handler(RequestValidationError, validation_refused)
    app.add_exception_handler(BodyTooLarge, too_large)
    app.add_middleware(RequestChecks, api=app, count=limit.count)
    app.add_middleware(BodyLimitMiddleware, limit=limit)
