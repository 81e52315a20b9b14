"""A service's other replicas, found through Kafka: every replica names its HTTP address in
the client id of its consumer (Kafka Streams' `application.server` idea), so a replica asked
about state it does not hold (monitoring's datasets, validation's statistics) can ask the
others for theirs (`?scope=local`) and answer for all."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)


def client_id_for(service: str, url: str) -> str:
    """`http://10.0.0.7:8007` -> `monitoring-at-http-10.0.0.7-8007` (Kafka-safe characters)."""
    scheme, _, rest = url.partition("://")
    host, _, port = rest.rstrip("/").rpartition(":")
    return f"{service}-at-{scheme}-{host}-{port}"


def url_of(service: str, client_id: str) -> str | None:
    prefix = f"{service}-at-"
    if not client_id.startswith(prefix):
        return None
    scheme, _, rest = client_id.removeprefix(prefix).partition("-")
    host, _, port = rest.rpartition("-")
    return f"{scheme}://{host}:{port}" if host and port.isdigit() else None


class Peers:
    """The HTTP addresses of the group's other members, read at most every `refresh_s`."""

    def __init__(
        self,
        service: str,
        describe: Callable[[], list[str]],
        own_url: str,
        timeout_s: float = 2.0,
        refresh_s: float = 2.0,
    ) -> None:
        self._service = service
        self._describe = describe
        self._own = own_url.rstrip("/")
        self._timeout_s = timeout_s
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._urls: list[str] = []
        self._read_at = float("-inf")

    def urls(self) -> list[str]:
        with self._lock:
            if time.monotonic() - self._read_at >= self._refresh_s:
                try:
                    found = {url_of(self._service, c) for c in self._describe()}
                except Exception as failure:  # a broker hiccup: keep the last view, say why
                    log.warning(
                        "%s peers: could not describe the group: %s", self._service, failure
                    )
                else:
                    self._urls = sorted(u for u in found if u and u != self._own)
                    self._read_at = time.monotonic()
            return list(self._urls)

    def gather(
        self, path: str, params: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Each other replica's local answer to `path`, and the ones that did not answer
        (a 404 is an answer: that replica holds nothing for it)."""
        answers, missing = [], []
        for url in self.urls():
            try:
                response = httpx.get(
                    f"{url}{path}",
                    params={**(params or {}), "scope": "local"},
                    timeout=self._timeout_s,
                )
                if response.status_code == 404:
                    continue
                response.raise_for_status()
                answers.append(response.json())
            except (httpx.HTTPError, ValueError) as failure:
                missing.append(f"{url}: {failure}")
        return answers, missing


def group_members(
    admin: AdminClient, group: str, timeout_s: float = 5.0
) -> Callable[[], list[str]]:
    def describe() -> list[str]:
        described = admin.describe_consumer_groups([group], request_timeout=timeout_s)
        return [member.client_id for member in described[group].result(timeout=timeout_s).members]

    return describe
