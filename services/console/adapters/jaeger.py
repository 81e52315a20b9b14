"""Jaeger's query API (the one its UI uses): /api/services, /api/traces."""

from __future__ import annotations

from typing import Any

from services.console.adapters.services import Answer, Services

JAEGER = "jaeger"


class Jaeger:
    def __init__(self, services: Services) -> None:
        self.services = services

    def service_names(self) -> Answer:
        return self.services.get(JAEGER, "/api/services")

    def traces(
        self, service: str, limit: int = 20, lookback: str = "2h", tags: str | None = None
    ) -> Answer:
        params: dict[str, Any] = {"service": service, "limit": limit, "lookback": lookback}
        if tags:
            params["tags"] = tags
        return self.services.get(JAEGER, "/api/traces", params)

    def trace(self, trace_id: str) -> Answer:
        return self.services.get(JAEGER, f"/api/traces/{trace_id}")
