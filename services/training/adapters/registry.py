"""The model registry over HTTP: the current champion of a model, and a version's record
(for reproductions).

GET /models/{name}/aliases/champion -> {"model_name", "alias", "version": {"version",
    "artifact": {...}, "lineage": {"feature_columns": [...], ...}, ...}}   (404: none)
GET /models/{name}                  -> {"name", "latest_version", ...}    (404: unknown)
GET /models/{name}/versions/{n}     -> {"version", "estimator", "params", "seed",
    "evaluation": {...}, "artifact": {...}, "lineage": {...}, ...}         (404: unknown)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from services.training.adapters.errors import DependencyRefused, DependencyUnavailable
from shared.events.models import ArtifactRef
from shared.telemetry import inject_http_trace_headers

CHAMPION = "champion"


@dataclass(frozen=True)
class Champion:
    version: int
    artifact: ArtifactRef
    feature_columns: list[str]


def champion_of(answer: Any) -> Champion:
    try:
        version = answer["version"]
        return Champion(
            version=int(version["version"]),
            artifact=ArtifactRef.model_validate(version["artifact"]),
            feature_columns=[str(c) for c in version["lineage"]["feature_columns"]],
        )
    except (KeyError, TypeError, ValueError, ValidationError) as error:
        raise DependencyRefused(
            f"unreadable champion record ({type(error).__name__}: {error}): {str(answer)[:300]}"
        ) from None


class UnknownVersion(LookupError):
    """The registry knows no such model or version (its 404, with its reason)."""


class RegistryClient:
    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_s,
            event_hooks={"request": [inject_http_trace_headers]},
        )

    def champion(self, model_name: str) -> Champion | None:
        """The version holding "champion", or None when the model has none (or is unknown)."""
        path = f"/models/{model_name}/aliases/{CHAMPION}"
        try:
            response = self._client.get(path)
        except httpx.HTTPError as error:
            raise DependencyUnavailable(
                f"registry at {self.base_url}: {type(error).__name__}: {error}"
            ) from None
        if response.status_code == 404:
            return None
        if response.status_code >= 500:
            raise DependencyUnavailable(f"{self.base_url}{path} answered {response.status_code}")
        if response.status_code != 200:
            raise DependencyRefused(
                f"{self.base_url}{path} answered {response.status_code}: {response.text[:300]}"
            )
        return champion_of(response.json())

    def latest_version(self, model_name: str) -> int:
        """The model's newest version number (UnknownVersion when it has none)."""
        answer = self._get(f"/models/{model_name}")
        latest = answer.get("latest_version") if isinstance(answer, dict) else None
        if latest is None:
            raise UnknownVersion(f"model {model_name!r} has no version yet")
        return int(latest)

    def version(self, model_name: str, version: int) -> dict[str, Any]:
        """The registry's record of a version: run, evaluation, artifact, lineage."""
        answer = self._get(f"/models/{model_name}/versions/{version}")
        if not isinstance(answer, dict):
            raise DependencyRefused(f"unreadable version record: {str(answer)[:300]}")
        return answer

    def _get(self, path: str) -> Any:
        try:
            response = self._client.get(path)
        except httpx.HTTPError as error:
            raise DependencyUnavailable(
                f"registry at {self.base_url}: {type(error).__name__}: {error}"
            ) from None
        if response.status_code == 404:
            raise UnknownVersion(_detail(response))
        if response.status_code >= 500:
            raise DependencyUnavailable(
                f"registry at {self.base_url}: {path} answered {response.status_code}"
            )
        if response.status_code != 200:
            raise DependencyRefused(
                f"registry at {self.base_url}: {path} answered {response.status_code}: "
                f"{_detail(response)}"
            )
        return response.json()

    def ping(self) -> None:
        self._client.get("/live", timeout=2.0).raise_for_status()

    def close(self) -> None:
        self._client.close()


def _detail(response: httpx.Response) -> str:
    """A FastAPI refusal's reason ({"detail": ...}), else the start of the body."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else response.text[:300]
