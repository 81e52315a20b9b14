"""The other services' HTTP APIs, as the console reads them: every call answers, never raises.

An `Answer` says what the service said (status and JSON) or why it could not be asked
(`error`, status None), so a page can render what it has and name what is missing."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Answer:
    service: str
    path: str
    status: int | None
    data: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def unreachable(self) -> bool:
        return self.status is None

    def detail(self) -> str:
        """Why it failed, in words a page can show."""
        if self.error:
            return self.error
        if isinstance(self.data, dict) and "detail" in self.data:
            detail = self.data["detail"]
            return detail if isinstance(detail, str) else str(detail)
        return f"HTTP {self.status}"

    def json_or(self, default: Any) -> Any:
        """The JSON answered, or `default` when the call failed or answered another shape
        (a list where a mapping was expected...)."""
        if not self.ok or self.data is None:
            return default
        if default is not None and not isinstance(self.data, type(default)):
            return default
        return self.data


class Services:
    """One HTTP client for every service; base URLs by service name."""

    def __init__(
        self,
        urls: Mapping[str, str],
        timeout_s: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.urls = {name: url.rstrip("/") for name, url in urls.items()}
        self._client = httpx.Client(timeout=timeout_s, transport=transport)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="console-http")

    def close(self) -> None:
        self._client.close()
        self._pool.shutdown(wait=False)

    def get(self, service: str, path: str, params: Mapping[str, Any] | None = None) -> Answer:
        return self.call("GET", service, path, params=params)

    def call(
        self,
        method: str,
        service: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        api_key: str | None = None,
    ) -> Answer:
        base = self.urls.get(service)
        if base is None:
            return Answer(service, path, None, error=f"{service}: no URL configured")
        headers = {"X-API-Key": api_key} if api_key else {}
        try:
            response = self._client.request(
                method, f"{base}{path}", params=params, json=json, headers=headers
            )
        except httpx.HTTPError as error:
            reason = str(error) or type(error).__name__
            return Answer(service, path, None, error=f"{service} unavailable ({reason})")
        try:
            data = response.json()
        except ValueError:
            data = None
        return Answer(service, path, response.status_code, data)

    def gather(self, calls: Sequence[Callable[[], Answer]]) -> list[Answer]:
        """Several calls at once (a page's reads are independent)."""
        return list(self._pool.map(lambda call: call(), calls))

    def ready(self, names: Sequence[str]) -> dict[str, Answer]:
        """Each named service's GET /ready."""
        answers = self.gather([lambda n=name: self.get(n, "/ready") for name in names])
        return dict(zip(names, answers, strict=True))
