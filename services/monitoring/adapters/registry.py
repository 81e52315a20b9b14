"""The registry, as monitoring reads it: a model version's lineage, for its training reference."""

from __future__ import annotations

from typing import Any

import httpx


class LineageClient:
    def __init__(self, registry_url: str, timeout_s: float = 2.0) -> None:
        self._url = registry_url.rstrip("/")
        self._timeout_s = timeout_s

    def lineage(self, model: str, version: int) -> dict[str, Any] | None:
        """The version's training lineage (ModelTrained's); None when the registry does not
        know the version; raises httpx errors when it cannot answer."""
        answer = httpx.get(
            f"{self._url}/models/{model}/versions/{version}/lineage", timeout=self._timeout_s
        )
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        return answer.json()["lineage"]
