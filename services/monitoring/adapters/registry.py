"""The registry, as monitoring reads it: a model version's lineage, for its training reference,
fetched off the consumer thread so a slow or absent registry never holds up consumption."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

log = logging.getLogger(__name__)

Version = tuple[str, int]


class LineageClient:
    """One HTTP client for every lookup: a client per request builds its TLS context each
    time (about 25 ms of CPU), which with many model versions and an absent registry was
    most of monitoring's CPU."""

    def __init__(
        self, registry_url: str, timeout_s: float = 2.0, client: httpx.Client | None = None
    ) -> None:
        self._url = registry_url.rstrip("/")
        self._client = client or httpx.Client(timeout=timeout_s)

    def lineage(self, model: str, version: int) -> dict[str, Any] | None:
        """The version's training lineage (ModelTrained's), with its holdout `evaluation`
        (metrics, primary metric) beside it; None when the registry does not know the
        version; raises httpx errors when it cannot answer."""
        answer = self._client.get(f"{self._url}/models/{model}/versions/{version}")
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        detail = answer.json()
        return {**detail["lineage"], "evaluation": detail.get("evaluation") or {}}

    def close(self) -> None:
        self._client.close()


class BackgroundLineages:
    """Lineages fetched in the background. `lineage` never waits: it answers with a version's
    lineage once fetched, None until then, and asks for it at most once every `retry_s` (when
    the registry did not know the version or could not answer). A registry that could not
    answer is left alone for `retry_s`, whatever version is asked meanwhile: one failed fetch
    per `retry_s`, not one per model version. `run` is the loop that fetches what was asked,
    one at a time; the service runs it beside its consumers (a BackgroundLoop)."""

    group_id = "lineage-fetch"

    def __init__(
        self,
        fetch: Callable[[str, int], Mapping[str, Any] | None],
        retry_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._retry_s = retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._fetched: dict[Version, Mapping[str, Any]] = {}
        self._asked_at: dict[Version, float] = {}
        self._down_until = -math.inf
        self.fetches = 0
        """Fetches tried (answered or not)."""
        self._wanted: queue.SimpleQueue[Version] = queue.SimpleQueue()

    def lineage(self, model: str, version: int) -> Mapping[str, Any] | None:
        key = (model, version)
        with self._lock:
            found = self._fetched.get(key)
            if found is not None:
                return found
            now = self._clock()
            if now < self._down_until:
                return None
            asked = self._asked_at.get(key)
            if asked is not None and now - asked < self._retry_s:
                return None
            self._asked_at[key] = now
        self._wanted.put(key)
        return None

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.fetch_next(timeout_s=0.5)

    def fetch_next(self, timeout_s: float) -> bool:
        """Fetches the next lineage asked for, waiting up to `timeout_s` for one to be asked;
        False when none was."""
        try:
            model, version = self._wanted.get(timeout=timeout_s)
        except queue.Empty:
            return False
        with self._lock:
            if self._clock() < self._down_until:  # asked again once the registry may answer
                self._asked_at.pop((model, version), None)
                return True
            self.fetches += 1
        try:
            lineage = self._fetch(model, version)
        except Exception as error:  # the registry is down: asked again retry_s after asking
            with self._lock:
                self._down_until = self._clock() + self._retry_s
            log.warning(
                "no lineage of %s v%d yet (registry left alone for %.0f s): %s",
                model,
                version,
                self._retry_s,
                error,
            )
            return True
        if lineage is not None:
            with self._lock:
                self._fetched[(model, version)] = lineage
        return True
